// A BERT encoder on one CUDA GPU, the counterpart of BertModel + Embedder's pooling: the same
// packed, unpadded batches; GEMM weights and biases in bf16 (embeddings and LayerNorm parameters
// in fp32) uploaded once; cuBLASLt GEMMs whose epilogues add the bias, the GELU or the residual;
// fused FlashAttention-2-style attention on tensor cores; a bf16 residual stream with LayerNorms
// computed in fp32; pooling and normalization on the device, from the last layer's fp32 output.
//
// AttnCache on the device: a DeviceMapPlan gives, per layer and sequence, bf16 H×N×N maps to
// reuse (for a head mask) and/or a buffer to record the exact P into. Sequences reusing every
// head at a layer skip the Q and K projections there (only V is projected) and the exact kernel;
// their context is P·V from the stored maps.
//
// This header needs no CUDA headers. Errors are core::Error: bad input for batches the CPU engine
// would refuse, for a machine without a usable GPU and for too little device memory; internal
// for a CUDA failure during a batch (the batch's result is then not returned).
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "attncache/model/cuda_model.h"
#include "attncache/model/model_config.h"
#include "core/dtype.h"

namespace attncache {

struct CudaEncoderOptions : CudaModelOptions {
  // GELU with the exact erf form in its own pass, instead of cuBLASLt's tanh-form epilogue.
  bool exact_gelu = false;
};

class CudaBertEncoder {
 public:
  // Uploads the weights of config.dir/model.safetensors to the device. Throws core::Error (bad
  // input) when no CUDA device is usable, when the device has too little free memory (or
  // options.memory_limit is too small) for the weights plus max_batch_tokens of activations,
  // or when the model is one the kernels do not support (head size, hidden size).
  static std::unique_ptr<CudaBertEncoder> create(const ModelConfig& config,
                                                 const CudaEncoderOptions& options = {});
  ~CudaBertEncoder();

  const ModelConfig& config() const;
  const std::string& device_description() const;
  size_t weight_bytes() const;      // device bytes of the model
  size_t activation_bytes() const;  // device bytes of the activation buffers now

  // Sentence embeddings [batch.size() × hidden], pooled and normalized as config.sentence says.
  // Throws core::Error (bad input) for empty sequences, sequences longer than the position
  // table, out-of-vocabulary ids, or a plan with the wrong number of slots.
  std::vector<float> embed(const std::vector<std::vector<int32_t>>& batch,
                           const DeviceMapPlan* maps = nullptr);
  // The last layer's hidden states of every token, packed [Σ N × hidden], fp32.
  std::vector<float> encode(const std::vector<std::vector<int32_t>>& batch,
                            const DeviceMapPlan* maps = nullptr);

  // Bytes of one sequence's maps at one layer (H×N×N of bf16 or P8).
  size_t map_bytes(int n_tokens, core::DType dtype = core::DType::kBF16) const;

  // Phase times so far (options.profile), and a reset.
  const CudaProfile& profile() const;
  void reset_profile();

 private:
  struct Impl;
  explicit CudaBertEncoder(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace attncache
