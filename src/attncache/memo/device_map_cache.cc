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

// Staging buffers in turn: entry k converts into buffer k % 2 once that buffer's last copy is
// done, so conversion on the host overlaps the previous entry's copy.
constexpr int kStaging = 2;
// An entry is staged and copied in this many pieces (runs of layers): each piece's copy runs
// while the host stages the next. P4 rows, which staging only copies, go in one piece: in
// pieces their loads were slower on the H100 (bench/results/map_cache/pieces_h100).
constexpr int kPieces = 8;

}  // namespace

struct DeviceMapCache::Impl {
  Source source;
  int layers = 0, heads = 0;
  bool causal = false, p4 = false;
  core::LruBudget lru;
  cudaStream_t stream = nullptr;

  struct Resident {
    cuda::DeviceBuffer maps;
    cudaEvent_t ready = nullptr;
    bool copied = false;  // `ready` has been waited for
    int n_tokens = 0;
    core::DType dtype = core::DType::kBF16;
  };
  std::map<int64_t, Resident> resident;
  cuda::PinnedHostBuffer staging[kStaging];
  // One staged layer on the device, converted from there to P4 (used on `stream` only).
  cuda::DeviceBuffer p4_source;
  cudaEvent_t staged[kStaging] = {};
  int next_staging = 0;
  Stats counts;

  Impl(Source s, int l, int h, bool c, size_t capacity, bool p)
      : source(std::move(s)), layers(l), heads(h), causal(c), p4(p), lru(capacity) {}
  ~Impl() {
    for (auto& [entry, r] : resident) {
      if (r.ready != nullptr) cudaEventDestroy(r.ready);
    }
    for (cudaEvent_t e : staged) {
      if (e != nullptr) cudaEventDestroy(e);
    }
    if (stream != nullptr) cudaStreamDestroy(stream);
  }

  size_t head_elements(int n) const {
    return causal ? cuda::causal_map_elements(n) : static_cast<size_t>(n) * n;
  }
  // One layer's maps on the device as `dtype` (the kernels' layout), padded to 256 bytes: every
  // layer's maps start aligned for the kernels.
  size_t tile_layer_bytes(int n, core::DType dtype) const {
    return pad256(dtype == core::DType::kP4
                      ? cuda::p4_map_bytes(n, heads)
                      : static_cast<size_t>(heads) * head_elements(n) * core::dtype_size(dtype));
  }
  size_t layer_bytes(int n, core::DType source) const {
    return tile_layer_bytes(n, device_dtype(source, p4));
  }
  size_t bytes(int n, core::DType source) const { return layers * layer_bytes(n, source); }
  // One layer as it is staged and copied: the device layout, except that P4 is made on the
  // device from P4 rows (a P4 source) or from the source's own device layout.
  size_t staged_layer_bytes(int n, core::DType source) const {
    if (source == core::DType::kP4) return pad256(p4_layer_bytes(n, heads));
    return tile_layer_bytes(n, device_dtype(source, false));
  }

  // Layers [l0, l1) of the entry's maps as staged_layer_bytes lays them out, written into `out`
  // (which holds the whole entry).
  void stage(const HostMaps& host, void* out, int l0, int l1) const {
    const int n = host.n_tokens;
    const size_t stride = staged_layer_bytes(n, host.dtype);
    if (host.dtype == core::DType::kP4) {
      // Copies of kCopyParts parts a layer keep every thread busy whatever the piece's layers.
      constexpr int kCopyParts = 16;
      const size_t layer = p4_layer_bytes(n, heads), part = (layer + kCopyParts - 1) / kCopyParts;
#pragma omp parallel for
      for (int c = l0 * kCopyParts; c < l1 * kCopyParts; ++c) {
        const int l = c / kCopyParts;
        const size_t from = (c % kCopyParts) * part,
                     bytes = std::min(part, layer - std::min(layer, from));
        std::memcpy(static_cast<unsigned char*>(out) + l * stride + from,
                    static_cast<const unsigned char*>(host.maps) + l * layer + from, bytes);
      }
      return;
    }
    const size_t in_elements =
        causal ? static_cast<size_t>(n) * (n + 1) / 2 : static_cast<size_t>(n) * n;
    const size_t in_bytes = core::dtype_size(host.dtype);
    const core::DType dtype = device_dtype(host.dtype, false);
    const int out_bytes = static_cast<int>(core::dtype_size(dtype));
    const size_t used = static_cast<size_t>(heads) * head_elements(n) * out_bytes;
    for (int l = l0; l < l1; ++l) {  // the padding: staging is reused, so clear it
      std::memset(static_cast<unsigned char*>(out) + l * stride + used, 0, stride - used);
    }
    // A 512-token entry of MiniLM is 38 MB of fp16: its heads convert in parallel.
#pragma omp parallel for schedule(dynamic)
    for (int m = l0 * heads; m < l1 * heads; ++m) {
      std::vector<float> f32;
      std::vector<uint8_t> converted;
      const auto* src = static_cast<const unsigned char*>(host.maps) + m * in_elements * in_bytes;
      unsigned char* head = static_cast<unsigned char*>(out) + (m / heads) * stride +
                            (m % heads) * head_elements(n) * out_bytes;
      if (host.dtype == core::DType::kF16) {  // → bf16
        f32.resize(in_elements);
        converted.resize(in_elements * 2);
        core::convert_to_f32(host.dtype, src, in_elements, f32.data());
        core::convert_from_f32(core::DType::kBF16, f32.data(), in_elements, converted.data());
        src = converted.data();
      }
      if (causal) {
        cuda::causal_map_to_tiles(src, n, out_bytes, head);
      } else {
        std::copy(src, src + in_elements * out_bytes, head);
      }
    }
  }

  // Queues the copy of staged layers [l0, l1) into `device` (the entry's maps) on the cache's
  // stream: as they are, or layer by layer through p4_source and converted to P4 there.
  void upload(const HostMaps& host, const void* staged, void* device, int l0, int l1) {
    const int n = host.n_tokens;
    const size_t stride = staged_layer_bytes(n, host.dtype);
    if (device_dtype(host.dtype, p4) != core::DType::kP4) {
      cuda::check(cudaMemcpyAsync(static_cast<char*>(device) + l0 * stride,
                                  static_cast<const char*>(staged) + l0 * stride,
                                  (l1 - l0) * stride, cudaMemcpyHostToDevice, stream),
                  "cudaMemcpyAsync (map cache)");
      return;
    }
    if (p4_source.size() < stride) {
      cuda::check(cudaStreamSynchronize(stream), "cudaStreamSynchronize (map cache)");
      p4_source = {};
      p4_source = cuda::DeviceBuffer(stride, "map cache conversion buffer");
    }
    const size_t out_stride = layer_bytes(n, host.dtype);
    for (int l = l0; l < l1; ++l) {
      cuda::check(cudaMemcpyAsync(p4_source.data(), static_cast<const char*>(staged) + l * stride,
                                  stride, cudaMemcpyHostToDevice, stream),
                  "cudaMemcpyAsync (map cache)");
      void* to = static_cast<char*>(device) + l * out_stride;
      if (host.dtype == core::DType::kP4) {
        cuda::p4_rows_to_tiles(p4_source.data(), n, heads, to, stream);
      } else {
        cuda::maps_to_p4(p4_source.data(),
                         cuda_forward::map_format(device_dtype(host.dtype, false)), n, heads, to,
                         stream);
      }
    }
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
    for (int64_t gone : lru.admit(entry, size)) {
      Resident& r = resident.at(gone);
      cuda::check(cudaEventSynchronize(r.ready), "cudaEventSynchronize (map cache)");
      cudaEventDestroy(r.ready);
      resident.erase(gone);
      ++counts.evictions;
    }
    try {
      Resident r;
      r.n_tokens = host.n_tokens;
      r.dtype = device_dtype(host.dtype, p4);
      r.maps = cuda::DeviceBuffer(size, "cached attention maps");
      const int k = next_staging;
      next_staging = (next_staging + 1) % kStaging;
      cuda::check(cudaEventSynchronize(staged[k]), "cudaEventSynchronize (map staging)");
      const size_t staged_size = layers * staged_layer_bytes(host.n_tokens, host.dtype);
      if (staging[k].size() < staged_size) {
        staging[k] = {};
        staging[k] = cuda::PinnedHostBuffer(staged_size, "map cache staging");
      }
      const int pieces = host.dtype == core::DType::kP4 ? 1 : kPieces;
      const int piece = (layers + pieces - 1) / pieces;
      for (int l0 = 0; l0 < layers; l0 += piece) {
        const int l1 = std::min(layers, l0 + piece);
        stage(host, staging[k].data(), l0, l1);
        upload(host, staging[k].data(), r.maps.data(), l0, l1);
      }
      cuda::check(cudaEventRecord(staged[k], stream), "cudaEventRecord");
      cuda::check(cudaEventCreateWithFlags(&r.ready, cudaEventDisableTiming), "cudaEventCreate");
      cuda::check(cudaEventRecord(r.ready, stream), "cudaEventRecord");
      return resident.emplace(entry, std::move(r)).first->second;
    } catch (...) {
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
  cuda::check(cudaStreamCreateWithFlags(&impl_->stream, cudaStreamNonBlocking), "cudaStreamCreate");
  for (cudaEvent_t& e : impl_->staged) {
    cuda::check(cudaEventCreateWithFlags(&e, cudaEventDisableTiming), "cudaEventCreate");
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
  return s;
}

}  // namespace attncache::memo
