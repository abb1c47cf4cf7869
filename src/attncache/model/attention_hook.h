// The place where each layer's attention probabilities P = softmax(QKᵀ/√d) become observable
// and replaceable: the encoder asks the hook, per layer and per sequence of the batch, whether to
// record the P it computes and whether to use stored probabilities instead of computing them.
#pragma once

#include <cstdint>
#include <functional>
#include <vector>

#include "attncache/kernels/cpu/attention.h"
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

// A forward pass over a batch that records the maps `hook` asks for and returns the batch's
// vectors, as PrefillModel::embed(batch, &hook) does (the map database's build takes one; the
// GPU's is DeviceEmbedder::embed_recording).
using RecordingForward =
    std::function<std::vector<float>(const std::vector<std::vector<int32_t>>&, AttentionHook&)>;

// Asks `hook` (may be null) what each sequence of the batch records and reuses at `layer`, and
// sets the sequences' record and stored fields. Returns, per sequence, whether every one of its
// `num_heads` heads reuses stored maps: those sequences need neither Q nor K.
inline std::vector<char> ask_attention_hook(AttentionHook* hook, int layer, int num_heads,
                                            std::vector<cpu::AttentionSeq>& seqs) {
  const uint64_t all_heads = num_heads >= 64 ? ~0ull : (1ull << num_heads) - 1;
  std::vector<char> v_only(seqs.size());
  for (size_t s = 0; s < seqs.size(); ++s) {
    StoredProbs stored;
    seqs[s].record = nullptr;
    if (hook != nullptr) {
      const int seq = static_cast<int>(s);
      seqs[s].record = hook->record(layer, seq, seqs[s].length);
      stored = hook->stored(layer, seq, seqs[s].length);
    }
    seqs[s].stored = stored.data;
    seqs[s].stored_dtype = stored.dtype;
    seqs[s].stored_heads = stored.heads;
    v_only[s] = stored.data != nullptr && (stored.heads & all_heads) == all_heads;
  }
  return v_only;
}

// Calls run(first, end) for each maximal run [first, end) of consecutive sequences that agree on
// v_only, so that each run's projections are one GEMM.
template <typename Run>
void for_each_projection_run(const std::vector<char>& v_only, Run run) {
  for (size_t s0 = 0; s0 < v_only.size();) {
    size_t s1 = s0 + 1;
    while (s1 < v_only.size() && v_only[s1] == v_only[s0]) ++s1;
    run(s0, s1);
    s0 = s1;
  }
}

}  // namespace attncache
