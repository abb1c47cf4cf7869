// DeviceMapCache::for_database, in its own file: code that uses the cache without a database
// (the GPU tests, which travel to a machine without Faiss) does not link the database.
#include "attncache/memo/device_map_cache.h"
#include "attncache/memo/map_database.h"
#include "core/error.h"

namespace attncache::memo {

std::unique_ptr<DeviceMapCache> DeviceMapCache::for_database(const MapDatabase& db,
                                                             size_t capacity_bytes, bool p4) {
  auto source = [&db](int64_t i) {
    if (i < 0 || static_cast<size_t>(i) >= db.size()) {
      core::throw_bad_input("map database entry ", i, " does not exist (", db.size(), " entries)");
    }
    const MapEntry e = db.entry(static_cast<size_t>(i));
    return HostMaps{e.n_tokens, e.maps, db.map_dtype()};
  };
  return std::make_unique<DeviceMapCache>(source, db.layers(), db.heads(), db.causal(),
                                          capacity_bytes, p4);
}

}  // namespace attncache::memo
