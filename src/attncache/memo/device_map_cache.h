// AttnCache's stored maps in GPU memory, for the GPU models' DeviceMapPlans. An entry (one stored
// input: every layer's maps) is copied to the device on first use and kept, least recently used
// out, within a byte budget. The source holds maps as the map database does (fp16, bf16, P8, FP8;
// causal maps as packed lower triangles, or P4 rows); the device holds what the kernels read
// (bf16 for fp16/bf16 sources, P8 and FP8 as they are; causal maps as block triangles; P4 as P4
// block triangles; or, when asked, causal maps of any source as P4, a quarter of bf16's bytes).
// The host only copies bytes: an entry is transferred as stored and laid out on the device
// (fp16 → bf16, packed triangles or P4 rows → block triangles, encoding to P4 when asked), layer
// by layer through two device buffers of one stored layer each (and one layer of block
// triangles when encoding to P4), which the byte budget does not count: 0.4 GB for a
// 3B-shaped P8 entry of 4096 tokens. A source in page-locked memory (for_database's `pin_host`)
// is transferred from where it lies; any other is first copied into page-locked staging, in
// pieces of layers so that each piece's transfer runs while the host copies the next, through
// three buffers of one piece each (an eighth of the entry, at most 64 MiB unless one layer is
// larger: 0.6 GB for that 3B entry, which is 5.6 GB).
//
// prefetch() queues copies ahead of need, e.g. the next batch's hits while this batch computes
// (a GPU model's forward blocks the calling thread, so: prefetch(next), forward(this),
// plan(next)). plan() makes a batch's entries resident, pins them until the next plan() and
// returns once their copies are done.
//
// This header needs no CUDA headers. Errors are core::Error: bad input for an entry larger than
// the budget or a batch whose entries do not fit it together; internal for a CUDA failure.
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "attncache/kernels/cuda/runtime.h"
#include "attncache/model/cuda_model.h"
#include "core/dtype.h"

namespace attncache::memo {

class MapDatabase;

// One entry's maps in host memory: `layers` layers back to back, each `heads` maps of n_tokens
// (N×N, or packed lower triangles of N(N+1)/2 when causal; attncache/kernels/stored_maps.h).
// Page-locked maps are transferred after the source returns them (a prefetched entry's until it
// is planned or evicted): they must stay in place as long as the cache.
struct HostMaps {
  int n_tokens = 0;
  const void* maps = nullptr;
  core::DType dtype = core::DType::kF16;  // kF16, kBF16, kP8, kFP8 or (causal) kP4
};

// `bytes` of host memory copied into page-locked memory, in parts over the OpenMP threads as the
// cache stages entries: what for_database's `pin_host` makes of a database. A copy, not the
// database's file mapping registered in place: on the H100 machines (driver 580.159)
// cudaHostRegister of a 235 MB read-only file mapping spent over 60 s in the kernel without
// returning. Bad input when the page-locked memory cannot be allocated.
cuda::PinnedHostBuffer page_locked_copy(const void* data, size_t bytes, const char* what);

class DeviceMapCache {
 public:
  using Source = std::function<HostMaps(int64_t entry)>;

  // `p4`: hold causal maps as P4 (attncache/kernels/cuda/attention.h) whatever the source's type
  // (a P4 source is held as P4 either way); bad input for bidirectional maps.
  DeviceMapCache(Source source, int layers, int heads, bool causal, size_t capacity_bytes,
                 bool p4 = false);
  // Entries of a map database (entry i: its i-th stored input). `pin_host`: copy the database's
  // entries into page-locked memory first (as much host memory again), so that misses transfer
  // from them with no staging copy; source_note() says so.
  static std::unique_ptr<DeviceMapCache> for_database(const MapDatabase& db, size_t capacity_bytes,
                                                      bool p4 = false, bool pin_host = false);
  ~DeviceMapCache();

  // Starts copying the entries (−1: none) that are not resident, as far as they fit beside the
  // entries the last plan() pinned.
  void prefetch(const std::vector<int64_t>& entries);
  // Sequence s of a batch reuses entries[s] (−1: runs exactly) at every layer and head: the
  // plan's slots [layer · batch + s] point at its device maps.
  DeviceMapPlan plan(const std::vector<int64_t>& entries);

  struct Stats {
    uint64_t hits = 0, misses = 0, evictions = 0;
    size_t resident_bytes = 0, resident_entries = 0;
    // Memory the byte budget does not count: the page-locked host staging, and the device
    // buffers that layers arrive in and are converted through.
    size_t staging_bytes = 0, scratch_bytes = 0;
  };
  Stats stats() const;
  // How for_database holds the source (empty when it did not pin it).
  const std::string& source_note() const { return source_note_; }
  // Device bytes of an entry of n tokens from a source of `dtype`.
  size_t entry_bytes(int n_tokens, core::DType dtype) const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
  std::string source_note_;
};

}  // namespace attncache::memo
