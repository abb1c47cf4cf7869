// Per-tenant map namespaces: which attention-map database (if any) serves a tenant's inputs, so
// that one tenant's stored maps never lend attention to another tenant's input unless the
// operator shares them.
//
//   no --db                  every tenant runs the exact path
//   --db DIR, no API keys    the single (anonymous) tenant uses DIR
//   --db DIR, API keys       tenant T uses DIR/T/ when it holds a database, else runs exactly
//   --db DIR --share-db      every tenant uses DIR
//
// A namespace is an immutable snapshot (an opened MapDatabase) held by shared_ptr: a batch keeps
// the snapshot it started with, so reload() can publish rebuilt databases (attncache build
// writes new files and swaps db.json atomically) without stopping or blocking readers. The old
// mapping stays valid until its last batch ends, even after the build unlinks its files.
#pragma once

#include <map>
#include <memory>
#include <mutex>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "attncache/memo/map_database.h"

namespace attncache::serve {

struct Namespace {
  std::string name;  // the tenant, or "shared"
  std::string dir;
  std::unique_ptr<memo::MapDatabase> db;
};

class TenantNamespaces {
 public:
  // Opens every database the layout above names, checking each against `fingerprint` and every
  // record's CRC-32. Throws core::Error (bad input) for a --db that is not a directory or a
  // database that does not open. `tenants` empty: no API keys.
  TenantNamespaces(std::string db_dir, bool share, std::vector<std::string> tenants,
                   nlohmann::json fingerprint);

  // The snapshot serving `tenant` ("" without API keys), or null for the exact path.
  std::shared_ptr<const Namespace> get(const std::string& tenant) const;
  // Reopens every namespace's directory and publishes what opens; a directory that fails keeps
  // its previous snapshot. Returns one line per namespace saying what happened.
  std::vector<std::string> reload();
  // Every current snapshot (for metrics).
  std::vector<std::shared_ptr<const Namespace>> all() const;

 private:
  std::shared_ptr<const Namespace> open(const std::string& name, const std::string& dir) const;
  // The directory serving a tenant, or "" for none.
  std::string dir_of(const std::string& tenant) const;
  std::shared_ptr<const Namespace> get_dir(const std::string& dir) const;

  std::string db_dir_;
  bool share_;
  std::vector<std::string> tenants_;
  nlohmann::json fingerprint_;
  mutable std::mutex mu_;
  std::map<std::string, std::shared_ptr<const Namespace>> by_dir_;  // tenants may share one
};

}  // namespace attncache::serve
