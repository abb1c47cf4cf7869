// What the memoization layer needs from a model, whichever its architecture: tokenize, the
// layer-0 attention input (the projector's features), a forward pass that exposes every layer's
// attention maps through an AttentionHook and returns one vector per input, a phase profile, and
// a fingerprint that ties stored maps to the exact weights and tokenizer. Implemented by the
// BERT sentence embedder (bidirectional maps, pooled embeddings) and the Llama decoder (causal
// maps stored as triangles, the last token's final hidden state).
#pragma once

#include <cstdint>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <string_view>
#include <vector>

#include "attncache/kernels/cpu/attention.h"
#include "attncache/model/attention_hook.h"
#include "attncache/model/forward_profile.h"
#include "attncache/model/wordpiece_tokenizer.h"

namespace attncache {

class PrefillModel {
 public:
  virtual ~PrefillModel() = default;

  virtual int num_layers() const = 0;
  virtual int num_heads() const = 0;
  virtual int hidden_size() const = 0;  // width of the layer-0 attention input
  virtual int dim() const = 0;          // width of embed()'s vectors
  virtual bool causal() const = 0;
  // The default truncation length, and the longest input the model can take at all.
  virtual int max_tokens() const = 0;
  virtual int context_limit() const = 0;

  // Throws core::Error (bad input) for text the tokenizer cannot take (invalid UTF-8).
  virtual Encoding tokenize(std::string_view text, int max_tokens) const = 0;
  // The input of layer 0's attention for one sequence, [ids.size() × hidden_size()].
  virtual void layer0_input(const std::vector<int32_t>& ids, float* out) const = 0;
  // One vector per input, [batch.size() × dim()].
  virtual std::vector<float> embed(const std::vector<std::vector<int32_t>>& batch,
                                   AttentionHook* hook = nullptr) = 0;
  // Phase times of embed() calls while profiling is on.
  virtual void set_profiling(bool on) = 0;
  virtual ForwardProfile& timings() = 0;
  virtual nlohmann::json fingerprint() const = 0;

  // Values in one layer's maps of an n-token input (H·N·N, or H·N(N+1)/2 when causal).
  size_t layer_map_values(int n) const {
    return static_cast<size_t>(num_heads()) * cpu::attention_map_size(n, causal());
  }
};

// Loads a model by name or path: a Hugging Face directory is a BERT sentence embedder or a
// decoder by its config.json's model_type (bert; llama or qwen2); a .gguf file, or a directory
// holding one, is a decoder. Throws core::Error.
std::unique_ptr<PrefillModel> load_prefill_model(const std::string& name_or_path);

}  // namespace attncache
