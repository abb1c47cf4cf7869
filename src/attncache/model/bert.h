// A BERT encoder on the CPU: embeddings, then per layer fused QKV projection, fused attention
// (with the AttentionHook), output projection + residual + LayerNorm, GELU MLP + residual +
// LayerNorm. A batch is a list of token sequences packed back to back without padding, so GEMMs
// see exactly the real tokens and attention runs per sequence.
#pragma once

#include <cstdint>
#include <memory>
#include <vector>

#include "attncache/model/attention_hook.h"
#include "attncache/model/forward_profile.h"
#include "attncache/model/model_config.h"
#include "attncache/model/safetensors.h"

namespace attncache {

// Scratch memory reused across forward calls (one per thread calling forward).
struct BertWorkspace {
  std::vector<float> qkv, ctx, tmp, inter;
  std::vector<float> hidden;  // the output of the last forward call, [T × hidden]
  bool profile = false;
  ForwardProfile timings;
};

class BertModel {
 public:
  // Loads model.safetensors from config.dir. fp32 weights are used in place from the mapping;
  // fp16/bf16 are converted once. Throws core::Error (bad input) when a tensor is missing or its
  // dtype or shape does not match config.json.
  static std::unique_ptr<BertModel> load(const ModelConfig& config);

  const BertConfig& config() const { return config_; }

  // Encodes `batch`; returns the last layer's hidden states of all tokens, packed in order
  // ([sum of lengths × hidden], a view into `ws`). Throws core::Error (bad input) for empty
  // sequences, sequences longer than max_position_embeddings or out-of-vocabulary ids.
  //
  // With a hook, a sequence whose stored probabilities cover every head of a layer skips its Q
  // and K projections there: only V is projected. Hits and misses may mix in one batch; keep
  // them in runs (misses first, say) so the projections run as few, larger GEMMs.
  const std::vector<float>& forward(const std::vector<std::vector<int32_t>>& batch,
                                    BertWorkspace& ws, AttentionHook* hook = nullptr) const;

  // The input of layer 0's attention for one sequence: word + position + type-0 embeddings,
  // LayerNorm. `out` gets [ids.size() × hidden]. Ids must be valid (forward checks them).
  void embed_tokens(const std::vector<int32_t>& ids, float* out) const;

 private:
  struct Param {
    const float* data = nullptr;
    std::vector<float> owned;  // set when the stored dtype was not fp32 or data was unaligned
  };
  struct Layer {
    std::vector<float> qkv_w, qkv_b;  // [3·hidden × hidden], [3·hidden]: q, k, v stacked
    Param out_w, out_b, ln1_g, ln1_b;
    Param inter_w, inter_b, ffn_out_w, ffn_out_b, ln2_g, ln2_b;
  };

  Param param(const std::string& name, std::vector<int64_t> shape) const;
  void append(const std::string& name, std::vector<int64_t> shape, std::vector<float>* out) const;

  BertConfig config_;
  SafeTensors file_;
  std::string prefix_;  // "" or "bert." depending on how the checkpoint names tensors
  Param word_emb_, pos_emb_, type_emb_, emb_ln_g_, emb_ln_b_;
  std::vector<Layer> layers_;
};

}  // namespace attncache
