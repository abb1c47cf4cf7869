// What the GPU models (the BERT encoder, the Llama decoder) share around their kernels: the
// host image of the device weights, pinned staging memory, the CUDA graph of each batch shape,
// and the phase timer behind CudaProfile. Included by their .cc files only (needs CUDA headers).
#pragma once

#include <cuda_runtime.h>

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "attncache/kernels/cuda/attention.h"
#include "attncache/kernels/cuda/runtime.h"
#include "attncache/model/cuda_model.h"

namespace attncache::cuda_forward {

constexpr size_t kMiB = 1u << 20;
constexpr size_t kGemmWorkspace = 32 * kMiB;  // cuBLASLt's workspace, per model

inline size_t align_up(size_t n, size_t a) { return (n + a - 1) / a * a; }

// Makes `device` current and returns its description. Throws core::Error (bad input) when no
// CUDA device is usable or the index does not exist.
std::string open_device(int device);

// Throws core::Error (bad input), with the numbers, when a model's weights, its activations for
// `tokens` tokens and the GEMM workspace do not fit in the device's free memory less a reserve
// for the CUDA context (or in `limit` when that is set and smaller). `who`: "the encoder".
void check_fits(int device, const std::string& device_name, size_t limit, size_t weights,
                size_t activations, size_t tokens, const std::string& who);

// Throws core::Error (bad input) for an empty sequence, one past `max_tokens` ("sequence s has
// n tokens; " + `limit_words` + max_tokens) or an id outside [0, vocab).
void check_batch(const std::vector<std::vector<int32_t>>& batch, int max_tokens, int vocab,
                 const char* limit_words);

// Throws core::Error (bad input) when `plan` has not layers × nseq slots, or stored maps that are
// misaligned or of a type the kernels do not read. `causal`: a decoder's plan, whose maps may
// also be P4 (an encoder's may not).
void check_map_plan(const DeviceMapPlan& plan, int layers, int nseq, bool causal);

// Bit h set for each of `heads` heads.
inline uint64_t all_heads_mask(int heads) { return heads >= 64 ? ~0ull : (1ull << heads) - 1; }

// The kernels' view of a slot, with its stored maps at `stored` (the slot's own, or a staging
// copy).
inline cuda::MapFormat map_format(core::DType dtype) {
  return dtype == core::DType::kP8    ? cuda::MapFormat::kP8
         : dtype == core::DType::kFP8 ? cuda::MapFormat::kFP8
         : dtype == core::DType::kP4  ? cuda::MapFormat::kP4
                                      : cuda::MapFormat::kBF16;
}
inline cuda::DeviceMapSlot device_slot(const DeviceMapPlan::Slot& slot, const void* stored) {
  return {stored, slot.record, slot.heads, map_format(slot.dtype)};
}

// What about a slot decides which kernels and copies run: part of a CUDA graph's key.
inline int64_t slot_shape(const DeviceMapPlan::Slot& slot, uint64_t all_heads) {
  int64_t code = slot.record != nullptr ? 4 : 0;
  if (slot.stored != nullptr) code |= (slot.heads & all_heads) == all_heads ? 2 : 1;
  if (slot.stored != nullptr) code |= 8 * static_cast<int64_t>(map_format(slot.dtype));
  return code;
}

// Which attention kernels one layer needs. `v_only[s]`: sequence s reuses every head there,
// so only its V is projected.
struct LayerReuse {
  bool any_exact = true, any_record = false;
  bool format[cuda::kMapFormats] = {};  // some head reuses maps of this cuda::MapFormat
};
LayerReuse layer_reuse(const std::vector<DeviceMapPlan::Slot>* slots, int layer, int nseq,
                       uint64_t all_heads, std::vector<char>* v_only);
// The reuse kernels a layer needs, one per map format present.
void attention_reuse(const cuda::AttentionArgs& args, const LayerReuse& reuse, cudaStream_t stream);

// The device weights laid out in host memory first, each tensor at a 256-byte aligned offset.
// Made twice with the same calls: first measuring (offsets and the size only, nothing stored),
// then storing into one allocation of the measured size. A model's weights are gigabytes:
// growing one buffer tensor by tensor copied them into fresh pages again and again (half of a
// 1B model's load), and conversions into fresh memory fault its pages in on many threads.
class WeightImage {
 public:
  WeightImage() = default;  // measuring
  // Storing; `size`: a measuring image's size() after the same calls.
  explicit WeightImage(size_t size);

  // Each returns the tensor's offset.
  size_t add_f32(const std::vector<float>& v);
  size_t add_bf16(const float* v, size_t count);
  size_t add_bf16(const std::vector<float>& v) { return add_bf16(v.data(), v.size()); }
  size_t size() const { return size_; }
  const uint8_t* data() const { return data_.get(); }  // null while measuring

 private:
  // Where the next `bytes` bytes go (aligned); zeroes the alignment gap when storing.
  size_t place(size_t bytes);

  std::unique_ptr<uint8_t[]> data_;
  size_t capacity_ = 0, size_ = 0;
};

// Page-locked host memory that grows on demand (the contents are not kept).
class PinnedBuffer {
 public:
  // Returns true when it had to grow (earlier pointers into it are then stale).
  bool reserve(size_t bytes, const char* what);
  void* data() const { return buffer_.data(); }
  size_t size() const { return buffer_.size(); }

 private:
  cuda::PinnedHostBuffer buffer_;
};

// One CUDA graph per batch shape: a shape runs eagerly the first time it is seen (lazy
// initialization in cuBLASLt and module loading stay out of the capture), is captured on its
// second run and replayed from then on. At most kMaxGraphs graphs are kept, the least recently
// replayed one giving way to a new one; past kMaxSeen shapes seen once, those are forgotten (a
// server's batches of mixed lengths are mostly one-off shapes: they must not push out the
// graphs of the shapes that recur).
class GraphCache {
 public:
  static constexpr size_t kMaxGraphs = 256, kMaxSeen = 4096;
  ~GraphCache() { clear(); }
  // Drops every graph (their buffers moved) and every shape seen.
  void clear();
  // Launches the graph of `key`, capturing `enqueue` first if this is the key's second run.
  // Returns false (and launches nothing) when the caller should run `enqueue` eagerly.
  bool replay(const std::vector<int64_t>& key, cudaStream_t stream,
              const std::function<void()>& enqueue);
  size_t graphs() const { return graphs_.size(); }

 private:
  struct Graph {
    cudaGraphExec_t exec;
    uint64_t last_used;
  };
  std::map<std::vector<int64_t>, Graph> graphs_;
  std::map<std::vector<int64_t>, int> seen_;  // shapes without a graph, and how often seen
  uint64_t clock_ = 0;
};

// Events recorded at phase boundaries of an eager forward; collect() adds the intervals to a
// CudaProfile.
class PhaseTimer {
 public:
  enum Phase { kOther, kQkv, kAttention, kGemm };
  ~PhaseTimer();
  void start(bool on) { on_ = on, marks_ = 0; }
  void mark(Phase next, cudaStream_t stream);  // the interval that starts here is `next`
  void collect(CudaProfile* totals);           // after the stream has synchronized
  void stop() { on_ = false; }

 private:
  bool on_ = false;
  std::vector<cudaEvent_t> events_;
  std::vector<Phase> phases_;
  size_t marks_ = 0;
};

}  // namespace attncache::cuda_forward
