// A Llama-family decoder (Llama, Qwen2) on one CUDA GPU, the counterpart of LlamaModel: the same
// packed, unpadded batches; weights uploaded once in bf16 (norm weights and rotary tables fp32);
// per layer RMSNorm, one fused Q/K/V cuBLASLt GEMM (bias epilogue for Qwen2), rotary embeddings,
// causal grouped-query FlashAttention-2-style attention, the output projection with the
// residual added in its epilogue, RMSNorm, one fused gate/up GEMM, SwiGLU, the down projection
// with the residual in its epilogue; the final RMSNorm and the LM head for the last token of
// each sequence only (what prefill-only scoring and embedding need), for none, or for every
// token reduced on the device to the log-probability of the token after it (what scoring a
// text's likelihood needs: [Σ N] floats come back instead of [Σ N × vocab]).
//
// AttnCache on the device: a DeviceMapPlan gives per layer and sequence block-triangle maps to
// reuse for a head mask and/or a bf16 buffer to record the exact P into. A sequence reusing every
// head at a layer skips its Q and K projections and rotary embedding there (only V is projected)
// and the exact kernel. Maps may also sit in page-locked host memory
// (DeviceMapPlan::host_resident): each layer's are then copied into a two-layer device staging
// ring on a second stream while the layers before it compute.
//
// This header needs no CUDA headers. Errors are core::Error: bad input for batches LlamaModel
// would refuse, for a machine without a usable GPU, for too little device memory and for a bad
// map plan; internal for a CUDA failure during a batch (no result is then returned).
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "attncache/model/cuda_model.h"
#include "attncache/model/llama.h"

namespace attncache {

using CudaDecoderOptions = CudaModelOptions;

class CudaLlamaModel {
 public:
  enum class Output {
    kLastHidden,  // [B × hidden]: each sequence's last token after the final RMSNorm
    kLastLogits,  // [B × vocab]: the LM head on those
    kAllHidden,   // [Σ N × hidden]: every token after the final RMSNorm
    // [Σ N]: for every token, log p(next token | this one and those before it); 0 for each
    // sequence's last token (nothing follows it). The LM head runs in slices of rows whose
    // logits never leave the device.
    kTokenLogProbs,
  };

  // Uploads `host`'s weights. Throws core::Error (bad input) when no CUDA device is usable, when
  // the device has too little free memory (or options.memory_limit is too small) for the weights
  // plus max_batch_tokens of activations, or for a head size the kernels do not support.
  static std::unique_ptr<CudaLlamaModel> create(const LlamaModel& host,
                                                const CudaDecoderOptions& options = {});
  ~CudaLlamaModel();

  const LlamaConfig& config() const;
  const std::string& device_description() const;
  size_t weight_bytes() const;      // device bytes of the model
  size_t activation_bytes() const;  // device bytes of the activation buffers now

  // Runs the batch. Throws core::Error (bad input) for empty sequences, sequences past the
  // context length, out-of-vocabulary ids, or a map plan with the wrong number of slots,
  // misaligned maps or a map type the kernels do not read.
  std::vector<float> forward(const std::vector<std::vector<int32_t>>& batch, Output output,
                             const DeviceMapPlan* maps = nullptr);

  // Bytes of one sequence's maps at one layer: H block triangles of bf16 or P8.
  size_t map_bytes(int n_tokens, core::DType dtype = core::DType::kBF16) const;

  const CudaProfile& profile() const;
  void reset_profile();

 private:
  struct Impl;
  explicit CudaLlamaModel(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace attncache
