// DeviceMapCache::for_database, in its own file: code that uses the cache without a database
// (the GPU tests, which travel to a machine without Faiss) does not link the database.
#include <algorithm>
#include <cstring>
#include <memory>
#include <string>

#include "attncache/kernels/cuda/runtime.h"
#include "attncache/memo/device_map_cache.h"
#include "attncache/memo/map_database.h"
#include "core/error.h"

namespace attncache::memo {
namespace {

// The database's entries file in page-locked memory: registered where it is mapped, or a copy.
struct PinnedEntries {
  cuda::HostRegistration registration;
  cuda::PinnedHostBuffer copy;
  const std::byte* file = nullptr;  // the mapping
  const std::byte* base = nullptr;  // where its bytes are read: the mapping or the copy
  std::string note;

  explicit PinnedEntries(std::span<const std::byte> mapped) : file(mapped.data()) {
    const double mib = mapped.size() / 1048576.0;
    try {
      registration = cuda::HostRegistration(mapped.data(), mapped.size(), "map database");
      base = file;
      note =
          "map database page-locked in place (" + std::to_string(static_cast<int>(mib)) + " MiB)";
    } catch (const core::Error& refused) {
      copy = cuda::PinnedHostBuffer(mapped.size(), "a page-locked copy of the map database");
      const size_t part = (mapped.size() + 63) / 64;
#pragma omp parallel for
      for (int c = 0; c < 64; ++c) {
        const size_t from = std::min(mapped.size(), c * part);
        std::memcpy(static_cast<std::byte*>(copy.data()) + from, mapped.data() + from,
                    std::min(part, mapped.size() - from));
      }
      base = static_cast<const std::byte*>(copy.data());
      note = "map database copied into page-locked memory (" +
             std::to_string(static_cast<int>(mib)) + " MiB; " + refused.what() + ")";
    }
  }
};

}  // namespace

std::unique_ptr<DeviceMapCache> DeviceMapCache::for_database(const MapDatabase& db,
                                                             size_t capacity_bytes, bool p4,
                                                             bool pin_host) {
  std::shared_ptr<PinnedEntries> pinned;
  if (pin_host) pinned = std::make_shared<PinnedEntries>(db.entries_file());
  auto source = [&db, pinned](int64_t i) {
    if (i < 0 || static_cast<size_t>(i) >= db.size()) {
      core::throw_bad_input("map database entry ", i, " does not exist (", db.size(), " entries)");
    }
    const MapEntry e = db.entry(static_cast<size_t>(i));
    const void* maps = e.maps;
    if (pinned) maps = pinned->base + (static_cast<const std::byte*>(e.maps) - pinned->file);
    return HostMaps{e.n_tokens, maps, db.map_dtype()};
  };
  auto cache = std::make_unique<DeviceMapCache>(source, db.layers(), db.heads(), db.causal(),
                                                capacity_bytes, p4);
  if (pinned) cache->source_note_ = pinned->note;
  return cache;
}

}  // namespace attncache::memo
