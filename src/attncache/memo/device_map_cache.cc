#include "attncache/memo/device_map_cache.h"

#include <cuda_runtime.h>

#include <algorithm>
#include <cstring>
#include <map>
#include <vector>

#include "attncache/kernels/cuda/attention.h"
#include "attncache/kernels/cuda/check.h"
#include "attncache/kernels/cuda/runtime.h"
#include "attncache/kernels/stored_maps.h"
#include "attncache/model/cuda_forward.h"
#include "core/error.h"
#include "core/lru_budget.h"

namespace attncache::memo {
namespace {

// One-byte formats and P4 go to the device as they are; fp16 becomes bf16, which the kernels
// read; with `p4` every source becomes P4.
core::DType device_dtype(core::DType source, bool p4) {
  if (p4 || source == core::DType::kP4) return core::DType::kP4;
  return source == core::DType::kP8 || source == core::DType::kFP8 ? source : core::DType::kBF16;
}

size_t pad256(size_t bytes) { return (bytes + 255) / 256 * 256; }

// A source that is not page-locked is staged in pieces (runs of whole layers) through a ring of
// page-locked buffers of one piece each: piece k goes into buffer k % kStaging once that
// buffer's last transfer is done, so the host copies a piece while the previous one transfers,
// within an entry and from one entry into the next. A piece is an eighth of the entry's layers,
// or fewer layers where that passes kPieceBytes (one layer at least): the staging holds a few
// pieces, not whole entries (a 3B-shaped P8 entry of 4096 tokens is 5.6 GB). Each layer's host
// copy is split in kCopyParts parts, so that every OpenMP thread has work.
constexpr int kStaging = 3;
constexpr int kPieces = 8;
constexpr size_t kPieceBytes = size_t{64} << 20;
constexpr int kCopyParts = 16;

// `bytes` from `from` to `to` in `parts` memcpy's over the OpenMP threads.
void copy_in_parts(void* to, const void* from, size_t bytes, size_t parts) {
  const size_t part = (bytes + parts - 1) / parts;
#pragma omp parallel for
  for (size_t c = 0; c < parts; ++c) {
    const size_t at = std::min(bytes, c * part);
    std::memcpy(static_cast<unsigned char*>(to) + at, static_cast<const unsigned char*>(from) + at,
                std::min(part, bytes - at));
  }
}

}  // namespace

cuda::PinnedHostBuffer page_locked_copy(const void* data, size_t bytes, const char* what) {
  cuda::PinnedHostBuffer copy(bytes, what);
  if (bytes > 0) copy_in_parts(copy.data(), data, bytes, (bytes >> 24) + 1);  // 16 MiB or less
  return copy;
}

struct DeviceMapCache::Impl {
  Source source;
  int layers = 0, heads = 0;
  bool causal = false, p4 = false;
  core::LruBudget lru;
  // Transfers run on `stream`, conversions on `convert`, so that layer l converts while layer
  // l + 1 arrives (in arrival[(l + 1) % 2]); `stream` ends each entry's work.
  cudaStream_t stream = nullptr, convert = nullptr;

  struct Resident {
    cuda::DeviceBuffer maps;
    cudaEvent_t ready = nullptr;
    bool copied = false;  // `ready` has been waited for
    int n_tokens = 0;
    core::DType dtype = core::DType::kBF16;
  };
  std::map<int64_t, Resident> resident;
  cuda::PinnedHostBuffer staging[kStaging];
  cudaEvent_t staged[kStaging] = {};
  int next_staging = 0;
  // Layers as stored, where they land on the device before their conversion (in turn), and
  // one layer of block triangles that are encoded to P4 from there.
  cuda::DeviceBuffer arrival[2], tiles;
  cudaEvent_t arrived[2] = {}, converted[2] = {};
  int next_arrival = 0;
  Stats counts;

  Impl(Source s, int l, int h, bool c, size_t capacity, bool p)
      : source(std::move(s)), layers(l), heads(h), causal(c), p4(p), lru(capacity) {}
  ~Impl() {
    // Transfers may still read the source's memory or the staging: let them finish first.
    if (stream != nullptr) cudaStreamSynchronize(stream);
    if (convert != nullptr) cudaStreamSynchronize(convert);
    for (auto& [entry, r] : resident) {
      if (r.ready != nullptr) cudaEventDestroy(r.ready);
    }
    for (cudaEvent_t* e : event_slots()) {
      if (*e != nullptr) cudaEventDestroy(*e);
    }
    if (stream != nullptr) cudaStreamDestroy(stream);
    if (convert != nullptr) cudaStreamDestroy(convert);
  }
  std::vector<cudaEvent_t*> event_slots() {
    std::vector<cudaEvent_t*> slots = {&arrived[0], &arrived[1], &converted[0], &converted[1]};
    for (cudaEvent_t& e : staged) slots.push_back(&e);
    return slots;
  }

  // One layer's maps on the device as `dtype` (the kernels' layout), padded to 256 bytes: every
  // layer's maps start aligned for the kernels.
  size_t tile_layer_bytes(int n, core::DType dtype) const {
    if (dtype == core::DType::kP4) return pad256(cuda::p4_map_bytes(n, heads));
    const size_t head = causal ? cuda::causal_map_elements(n) : static_cast<size_t>(n) * n;
    return pad256(heads * head * core::dtype_size(dtype));
  }
  size_t layer_bytes(int n, core::DType source) const {
    return tile_layer_bytes(n, device_dtype(source, p4));
  }
  size_t bytes(int n, core::DType source) const { return layers * layer_bytes(n, source); }
  size_t stored_bytes(int n, core::DType source) const {
    return stored_layer_bytes(n, heads, causal, source);
  }

  // Layers of the entry as stored in each staged piece.
  int piece_layers(size_t stored_layer) const {
    const size_t by_bytes = std::max<size_t>(1, kPieceBytes / std::max<size_t>(1, stored_layer));
    return static_cast<int>(std::min<size_t>((layers + kPieces - 1) / kPieces, by_bytes));
  }

  void reserve(cuda::DeviceBuffer& buffer, size_t bytes, const char* what) {
    if (buffer.size() >= bytes) return;
    cuda::check(cudaStreamSynchronize(stream), "cudaStreamSynchronize (map cache)");
    cuda::check(cudaStreamSynchronize(convert), "cudaStreamSynchronize (map cache)");
    buffer = {};
    buffer = cuda::DeviceBuffer(bytes, what);
  }

  // Queues the transfer of layers [l0, l1) of the entry as stored, layer l0 at `from`
  // (page-locked), into `device` (the entry's maps), and their conversion there to the kernels'
  // layout: straight into place when the stored layout is the kernels', else layer by layer
  // through `arrival`.
  void upload(const HostMaps& host, const void* from, void* device, int l0, int l1) {
    const int n = host.n_tokens;
    const size_t stored = stored_bytes(n, host.dtype), held = layer_bytes(n, host.dtype);
    const core::DType held_dtype = device_dtype(host.dtype, p4);
    const auto* src = static_cast<const char*>(from);
    auto* dst = static_cast<char*>(device);
    auto transfer = [&](void* to, int l) {
      cuda::check(
          cudaMemcpyAsync(to, src + (l - l0) * stored, stored, cudaMemcpyHostToDevice, stream),
          "cudaMemcpyAsync (map cache)");
    };
    if (!causal && held_dtype == host.dtype) {
      for (int l = l0; l < l1; ++l) transfer(dst + l * held, l);
      return;
    }
    for (cuda::DeviceBuffer& buffer : arrival) reserve(buffer, stored, "map cache arrival buffer");
    const core::DType tile_dtype = device_dtype(host.dtype, false);
    const bool encode = held_dtype == core::DType::kP4 && host.dtype != core::DType::kP4;
    if (encode) reserve(tiles, tile_layer_bytes(n, tile_dtype), "map cache conversion buffer");
    for (int l = l0; l < l1; ++l) {
      const int b = next_arrival;
      next_arrival ^= 1;
      const void* in = arrival[b].data();
      cuda::check(cudaStreamWaitEvent(stream, converted[b]), "cudaStreamWaitEvent");
      transfer(arrival[b].data(), l);
      cuda::check(cudaEventRecord(arrived[b], stream), "cudaEventRecord");
      cuda::check(cudaStreamWaitEvent(convert, arrived[b]), "cudaStreamWaitEvent");
      void* to = dst + l * held;
      if (host.dtype == core::DType::kP4) {
        cuda::p4_rows_to_tiles(in, n, heads, to, convert);
      } else {
        cuda::stored_maps_to_tiles(
            in, n, heads, causal, static_cast<int>(core::dtype_size(host.dtype)),
            host.dtype == core::DType::kF16, encode ? tiles.data() : to, convert);
        if (encode) {
          cuda::maps_to_p4(tiles.data(), cuda_forward::map_format(tile_dtype), n, heads, to,
                           convert);
        }
      }
      cuda::check(cudaEventRecord(converted[b], convert), "cudaEventRecord");
    }
  }

  // Frees an evicted entry's maps, if still resident, once no work uses them.
  void drop(int64_t gone) {
    const auto it = resident.find(gone);
    if (it == resident.end()) return;
    cudaEventDestroy(it->second.ready);
    resident.erase(it);
    ++counts.evictions;
  }

  // Makes `entry` resident (evicting others), its copy queued; returns it.
  Resident& load(int64_t entry) {
    if (lru.touch(entry)) {
      ++counts.hits;
      return resident.at(entry);
    }
    ++counts.misses;
    const HostMaps host = source(entry);
    if (host.dtype != core::DType::kF16 && host.dtype != core::DType::kBF16 &&
        host.dtype != core::DType::kP8 && host.dtype != core::DType::kFP8 &&
        host.dtype != core::DType::kP4) {
      core::throw_bad_input("the device map cache takes F16, BF16, P8, FP8 or P4 maps, not ",
                            core::dtype_name(host.dtype));
    }
    if (host.dtype == core::DType::kP4 && !causal) {
      core::throw_bad_input("P4 maps are for causal decoders only");
    }
    const size_t size = bytes(host.n_tokens, host.dtype);
    // The LRU has dropped `evicted` and holds `entry` from here on: a failure below must leave
    // neither in `resident` nor `entry` in the LRU.
    const std::vector<int64_t> evicted = lru.admit(entry, size);
    try {
      for (int64_t gone : evicted) {
        cuda::check(cudaEventSynchronize(resident.at(gone).ready),
                    "cudaEventSynchronize (map cache)");
        drop(gone);
      }
      Resident r;
      r.n_tokens = host.n_tokens;
      r.dtype = device_dtype(host.dtype, p4);
      r.maps = cuda::DeviceBuffer(size, "cached attention maps");
      if (cuda::page_locked(host.maps)) {
        upload(host, host.maps, r.maps.data(), 0, layers);
      } else {
        const size_t layer = stored_bytes(host.n_tokens, host.dtype);
        const int piece = piece_layers(layer);
        for (int l0 = 0; l0 < layers; l0 += piece) {
          const int l1 = std::min(layers, l0 + piece);
          const int k = next_staging;
          next_staging = (next_staging + 1) % kStaging;
          cuda::check(cudaEventSynchronize(staged[k]), "cudaEventSynchronize (map staging)");
          if (staging[k].size() < piece * layer) {
            staging[k] = {};
            staging[k] = cuda::PinnedHostBuffer(piece * layer, "map cache staging");
          }
          copy_in_parts(staging[k].data(), static_cast<const char*>(host.maps) + l0 * layer,
                        (l1 - l0) * layer, static_cast<size_t>(l1 - l0) * kCopyParts);
          upload(host, staging[k].data(), r.maps.data(), l0, l1);
          cuda::check(cudaEventRecord(staged[k], stream), "cudaEventRecord");
        }
      }
      for (cudaEvent_t done : converted) {
        cuda::check(cudaStreamWaitEvent(stream, done), "cudaStreamWaitEvent");
      }
      cuda::check(cudaEventCreateWithFlags(&r.ready, cudaEventDisableTiming), "cudaEventCreate");
      const cudaError_t recorded = cudaEventRecord(r.ready, stream);
      if (recorded != cudaSuccess) cudaEventDestroy(r.ready);
      cuda::check(recorded, "cudaEventRecord");
      return resident.emplace(entry, std::move(r)).first->second;
    } catch (...) {
      // Work queued before the failure may still use the entry's buffer or an evicted one's:
      // let it finish.
      cudaStreamSynchronize(stream);
      cudaStreamSynchronize(convert);
      for (int64_t gone : evicted) drop(gone);
      lru.erase(entry);  // keep the books straight
      throw;
    }
  }
};

DeviceMapCache::DeviceMapCache(Source source, int layers, int heads, bool causal,
                               size_t capacity_bytes, bool p4)
    : impl_(std::make_unique<Impl>(std::move(source), layers, heads, causal, capacity_bytes, p4)) {
  if (heads > 64) core::throw_bad_input("the device map cache supports at most 64 heads");
  if (p4 && !causal) core::throw_bad_input("P4 maps are for causal decoders only");
  for (cudaStream_t* s : {&impl_->stream, &impl_->convert}) {
    cuda::check(cudaStreamCreateWithFlags(s, cudaStreamNonBlocking), "cudaStreamCreate");
  }
  for (cudaEvent_t* e : impl_->event_slots()) {
    cuda::check(cudaEventCreateWithFlags(e, cudaEventDisableTiming), "cudaEventCreate");
  }
}

DeviceMapCache::~DeviceMapCache() = default;

size_t DeviceMapCache::entry_bytes(int n_tokens, core::DType dtype) const {
  return impl_->bytes(n_tokens, dtype);
}

void DeviceMapCache::prefetch(const std::vector<int64_t>& entries) {
  for (int64_t e : entries) {
    if (e < 0) continue;
    try {
      impl_->load(e);
    } catch (const core::Error& error) {
      // No room beside the entries in use: a hint, not a request; plan() will load it.
      if (error.kind() != core::ErrorKind::kBadInput) throw;
      return;
    }
  }
}

DeviceMapPlan DeviceMapCache::plan(const std::vector<int64_t>& entries) {
  Impl& m = *impl_;
  m.lru.unpin_all();
  std::vector<Impl::Resident*> batch(entries.size(), nullptr);
  for (size_t s = 0; s < entries.size(); ++s) {
    if (entries[s] < 0) continue;
    batch[s] = &m.load(entries[s]);
    m.lru.pin(entries[s]);
  }
  DeviceMapPlan plan;
  plan.slots.resize(static_cast<size_t>(m.layers) * entries.size());
  for (size_t s = 0; s < entries.size(); ++s) {
    Impl::Resident* r = batch[s];
    if (r == nullptr) continue;
    if (!r->copied) {
      cuda::check(cudaEventSynchronize(r->ready), "the map cache's copies");
      r->copied = true;
    }
    const size_t layer_bytes = r->maps.size() / m.layers;
    for (int l = 0; l < m.layers; ++l) {
      plan.slots[l * entries.size() + s] = {
          static_cast<const char*>(r->maps.data()) + l * layer_bytes, nullptr, ~0ull, r->dtype};
    }
  }
  return plan;
}

DeviceMapCache::Stats DeviceMapCache::stats() const {
  Stats s = impl_->counts;
  s.resident_bytes = impl_->lru.used();
  s.resident_entries = impl_->lru.size();
  for (const cuda::PinnedHostBuffer& b : impl_->staging) s.staging_bytes += b.size();
  for (const cuda::DeviceBuffer* b : {&impl_->arrival[0], &impl_->arrival[1], &impl_->tiles}) {
    s.scratch_bytes += b->size();
  }
  return s;
}

}  // namespace attncache::memo
