// Types the GPU models (CudaBertEncoder, CudaLlamaModel) share in their interfaces. Needs no CUDA
// headers.
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

#include "core/dtype.h"

namespace attncache {

struct CudaModelOptions {
  int device = 0;
  // Activation buffers are sized up front for this many tokens per batch (and grow on demand).
  int max_batch_tokens = 8192;
  // Bytes of device memory the model may take; 0: whatever the device has free.
  size_t memory_limit = 0;
  // Replay each distinct batch shape as a CUDA graph after its first run.
  bool cuda_graphs = true;
  // Time the phases of each forward with CUDA events (eager runs only; graphs are not timed).
  bool profile = false;
  // Decoders, every token's log-probability: device memory for the LM head's fp32 logits, which
  // are computed a slice of rows at a time (at least one row). 64 MiB: 130 rows of Llama-3's
  // vocabulary, enough for an efficient GEMM.
  size_t logits_slice_bytes = size_t{64} << 20;
};

// Device time of a GPU model's forward calls by phase (CUDA events at phase boundaries of eager
// runs; graph replays are not timed).
struct CudaProfile {
  double qkv_ms = 0;        // Q/K/V projections (V only for full hits), rotary embeddings
  double attention_ms = 0;  // exact attention and P·V from stored maps
  double gemm_ms = 0;       // output projection and MLP GEMMs
  double other_ms = 0;      // copies, embeddings, norms, pooling, LM head
  int calls = 0;
};

// Attention maps for one forward call: slot [layer · batch + sequence]. An encoder's maps are
// H×N×N; a decoder's are H block triangles (cuda::causal_map_elements(N) values per head).
struct DeviceMapPlan {
  struct Slot {
    const void* stored = nullptr;  // H maps to reuse (16-byte aligned), or null
    void* record = nullptr;        // bf16 H maps receiving the exact P, or null
    uint64_t heads = ~0ull;        // bit h: head h reuses `stored`
    // of `stored`: kBF16, kP8 (q = round(255·√p)), kFP8 (e4m3 of 256·p) or, decoders only, kP4
    core::DType dtype = core::DType::kBF16;
  };
  std::vector<Slot> slots;  // empty: no reuse, nothing recorded
  // `stored` points into page-locked host memory (decoder only): each layer's maps are copied
  // to device staging on a second stream while the layers before it compute.
  bool host_resident = false;
};

}  // namespace attncache
