// API keys: who may call the server, and which tenant each caller is.
//
// The key file has one key per line, optionally followed by whitespace and a tenant name:
//     sk-team-a-1   team-a
//     sk-team-a-2   team-a
//     sk-team-b     team-b
//     sk-solo                 (tenant: the key's own line number, "key-3")
// Blank lines and lines starting with '#' are skipped. Keys are opaque printable ASCII without
// spaces; tenant names are [A-Za-z0-9._-] (they name a map-database directory). Requests carry
// the key as "Authorization: Bearer <key>", as the OpenAI clients send it.
#pragma once

#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace attncache::serve {

class ApiKeys {
 public:
  // Reads and checks a key file; throws core::Error (bad input) naming the line at fault: an
  // unreadable file, no keys, a duplicate key, a bad tenant name.
  static ApiKeys load(const std::string& path);

  // The tenant of an Authorization header's value, or nullopt when it names no known key.
  std::optional<std::string> tenant_of(std::string_view authorization) const;
  // Every tenant named in the file, sorted, each once.
  std::vector<std::string> tenants() const;
  size_t size() const { return tenant_by_key_.size(); }

  // Whether a tenant name is safe as a directory name.
  static bool valid_tenant(std::string_view name);

 private:
  std::map<std::string, std::string, std::less<>> tenant_by_key_;
};

}  // namespace attncache::serve
