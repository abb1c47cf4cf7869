// The place where each layer's attention probabilities P = softmax(QKᵀ/√d) become observable
// and replaceable: the encoder asks the hook, per layer and per sequence of the batch, whether to
// record the P it computes and whether to use stored probabilities instead of computing them.
#pragma once

#include <cstdint>

#include "core/dtype.h"

namespace attncache {

// H×N×N probabilities, row-major, for one sequence at one layer.
struct StoredProbs {
  const void* data = nullptr;  // null: compute P exactly
  core::DType dtype = core::DType::kF32;
  uint64_t heads = ~0ull;  // bit h set: head h uses `data`; other heads are computed
};

class AttentionHook {
 public:
  virtual ~AttentionHook() = default;
  // Probabilities to reuse for sequence `seq` (its index in the batch) of `n_tokens` tokens.
  virtual StoredProbs stored(int layer, int seq, int n_tokens) {
    (void)layer, (void)seq, (void)n_tokens;
    return {};
  }
  // An fp32 H×N×N buffer that receives the probabilities used at this layer, or null.
  virtual float* record(int layer, int seq, int n_tokens) {
    (void)layer, (void)seq, (void)n_tokens;
    return nullptr;
  }
};

}  // namespace attncache
