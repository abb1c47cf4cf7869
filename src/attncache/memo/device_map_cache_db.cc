// DeviceMapCache::for_database, in its own file: code that uses the cache without a database
// (the GPU tests, which travel to a machine without Faiss) does not link the database.
#include <cmath>
#include <memory>
#include <string>

#include "attncache/kernels/cuda/runtime.h"
#include "attncache/memo/device_map_cache.h"
#include "attncache/memo/map_database.h"
#include "core/error.h"

namespace attncache::memo {

std::unique_ptr<DeviceMapCache> DeviceMapCache::for_database(const MapDatabase& db,
                                                             size_t capacity_bytes, bool p4,
                                                             bool pin_host) {
  const std::span<const std::byte> file = db.entries_file();
  std::shared_ptr<cuda::PinnedHostBuffer> pinned;
  if (pin_host) {
    pinned = std::make_shared<cuda::PinnedHostBuffer>(
        page_locked_copy(file.data(), file.size(), "the map database"));
  }
  auto source = [&db, pinned, file](int64_t i) {
    if (i < 0 || static_cast<size_t>(i) >= db.size()) {
      core::throw_bad_input("map database entry ", i, " does not exist (", db.size(), " entries)");
    }
    const MapEntry e = db.entry(static_cast<size_t>(i));
    const void* maps = e.maps;
    if (pinned) maps = static_cast<const std::byte*>(pinned->data()) + (e.maps - file.data());
    return HostMaps{e.n_tokens, maps, db.map_dtype()};
  };
  auto cache = std::make_unique<DeviceMapCache>(source, db.layers(), db.heads(), db.causal(),
                                                capacity_bytes, p4);
  if (pinned) {
    // Tenths of a MiB, so that a small database does not read as "0 MiB".
    cache->source_note_ = core::cat("the map database copied into page-locked memory (",
                                    std::round(file.size() / 104857.6) / 10, " MiB)");
  }
  return cache;
}

}  // namespace attncache::memo
