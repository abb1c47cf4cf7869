#include "attncache/serve/api_keys.h"

#include <fstream>
#include <set>
#include <sstream>

#include "core/error.h"

namespace attncache::serve {

bool ApiKeys::valid_tenant(std::string_view name) {
  if (name.empty() || name.size() > 128 || name == "." || name == "..") return false;
  for (char c : name) {
    const bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                    c == '.' || c == '_' || c == '-';
    if (!ok) return false;
  }
  return true;
}

ApiKeys ApiKeys::load(const std::string& path) {
  std::ifstream in(path);
  if (!in) core::throw_bad_input("--api-key-file ", path, ": cannot open it");
  ApiKeys keys;
  std::string line;
  for (int number = 1; std::getline(in, line); ++number) {
    if (!line.empty() && line.back() == '\r') line.pop_back();
    std::istringstream fields(line);
    std::string key, tenant, extra;
    if (!(fields >> key) || key[0] == '#') continue;
    for (char c : key) {
      if (c < 0x21 || c > 0x7e) {
        core::throw_bad_input(path, ": line ", number,
                              ": a key must be printable ASCII without spaces");
      }
    }
    if (!(fields >> tenant)) tenant = "key-" + std::to_string(number);
    if (fields >> extra) {
      core::throw_bad_input(path, ": line ", number, ": expected '<key> [tenant]', found more");
    }
    if (!valid_tenant(tenant)) {
      core::throw_bad_input(path, ": line ", number, ": tenant '", tenant,
                            "' must be letters, digits, '.', '_' or '-'");
    }
    if (!keys.tenant_by_key_.emplace(key, tenant).second) {
      core::throw_bad_input(path, ": line ", number, ": duplicate key");
    }
  }
  if (in.bad()) core::throw_bad_input("--api-key-file ", path, ": read error");
  if (keys.tenant_by_key_.empty()) core::throw_bad_input("--api-key-file ", path, ": no keys");
  return keys;
}

std::optional<std::string> ApiKeys::tenant_of(std::string_view authorization) const {
  constexpr std::string_view kBearer = "Bearer ";
  if (authorization.substr(0, kBearer.size()) != kBearer) return std::nullopt;
  auto it = tenant_by_key_.find(authorization.substr(kBearer.size()));
  if (it == tenant_by_key_.end()) return std::nullopt;
  return it->second;
}

std::vector<std::string> ApiKeys::tenants() const {
  std::set<std::string> names;
  for (const auto& [key, tenant] : tenant_by_key_) names.insert(tenant);
  return {names.begin(), names.end()};
}

}  // namespace attncache::serve
