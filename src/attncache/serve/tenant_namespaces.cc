#include "attncache/serve/tenant_namespaces.h"

#include <filesystem>

#include "core/error.h"

namespace attncache::serve {
namespace fs = std::filesystem;

TenantNamespaces::TenantNamespaces(std::string db_dir, bool share, std::vector<std::string> tenants,
                                   nlohmann::json fingerprint)
    : db_dir_(std::move(db_dir)),
      share_(share),
      tenants_(std::move(tenants)),
      fingerprint_(std::move(fingerprint)) {
  if (db_dir_.empty()) return;
  std::error_code ec;
  if (!fs::is_directory(db_dir_, ec)) {
    core::throw_bad_input("--db ", db_dir_, ": not a directory");
  }
  if (tenants_.empty()) tenants_.push_back("");
  for (const std::string& tenant : tenants_) {
    const std::string dir = dir_of(tenant);
    if (by_dir_.count(dir) != 0) continue;
    // Per-tenant directories are optional; the shared or anonymous database is not.
    const bool optional = !share_ && !tenant.empty();
    if (optional && !fs::exists(fs::path(dir) / "db.json", ec)) continue;
    try {
      by_dir_[dir] = open(share_ || tenant.empty() ? "shared" : tenant, dir);
    } catch (const core::Error& e) {
      core::throw_bad_input("--db: ", dir, ": ", e.what());
    }
  }
}

std::string TenantNamespaces::dir_of(const std::string& tenant) const {
  if (db_dir_.empty()) return "";
  if (share_ || tenant.empty()) return db_dir_;
  return (fs::path(db_dir_) / tenant).string();
}

std::shared_ptr<const Namespace> TenantNamespaces::open(const std::string& name,
                                                        const std::string& dir) const {
  auto ns = std::make_shared<Namespace>();
  ns->name = name;
  ns->dir = dir;
  ns->db = std::make_unique<memo::MapDatabase>(memo::MapDatabase::open(dir, fingerprint_, true));
  return ns;
}

std::shared_ptr<const Namespace> TenantNamespaces::get(const std::string& tenant) const {
  const std::string dir = dir_of(tenant);
  return dir.empty() ? nullptr : get_dir(dir);
}

std::vector<std::string> TenantNamespaces::reload() {
  std::vector<std::string> report;
  if (db_dir_.empty()) return report;
  std::map<std::string, std::string> dirs;  // dir → namespace name
  for (const std::string& tenant : tenants_) {
    dirs[dir_of(tenant)] = share_ || tenant.empty() ? "shared" : tenant;
  }
  for (const auto& [dir, name] : dirs) {
    std::error_code ec;
    if (!fs::exists(fs::path(dir) / "db.json", ec)) {
      report.push_back(name + ": no database in " + dir +
                       (get_dir(dir) ? ", kept the old one" : ""));
      continue;
    }
    try {
      std::shared_ptr<const Namespace> fresh = open(name, dir);  // outside the lock: slow
      const size_t entries = fresh->db->size();
      {
        std::lock_guard lock(mu_);
        by_dir_[dir] = std::move(fresh);
      }
      report.push_back(name + ": " + std::to_string(entries) + " entries from " + dir);
    } catch (const core::Error& e) {
      report.push_back(name + ": " + dir + ": " + e.what() + "; kept the old snapshot");
    }
  }
  return report;
}

std::shared_ptr<const Namespace> TenantNamespaces::get_dir(const std::string& dir) const {
  std::lock_guard lock(mu_);
  auto it = by_dir_.find(dir);
  return it == by_dir_.end() ? nullptr : it->second;
}

std::vector<std::shared_ptr<const Namespace>> TenantNamespaces::all() const {
  std::lock_guard lock(mu_);
  std::vector<std::shared_ptr<const Namespace>> out;
  for (const auto& [dir, ns] : by_dir_) out.push_back(ns);
  return out;
}

}  // namespace attncache::serve
