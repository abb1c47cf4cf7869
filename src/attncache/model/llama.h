// A Llama-family decoder on the CPU, loaded from GGUF: token embeddings, then per layer RMSNorm,
// fused Q/K/V projection, rotary embeddings, causal grouped-query attention (with the
// AttentionHook, maps stored as packed lower triangles), output projection + residual, RMSNorm,
// SwiGLU MLP + residual; a final RMSNorm and the LM head. Weights are dequantized to fp32 at load.
// Batches are token sequences packed back to back without padding, as in the encoder.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "attncache/kernels/cpu/ops.h"
#include "attncache/model/attention_hook.h"
#include "attncache/model/forward_profile.h"
#include "attncache/model/gguf.h"

namespace attncache {

struct LlamaConfig {
  std::string architecture;  // general.architecture ("llama")
  std::string name;          // general.name, when present
  int hidden_size = 0;
  int num_layers = 0;
  int num_heads = 0;
  int num_kv_heads = 0;
  int head_dim = 0;
  int intermediate_size = 0;
  int vocab_size = 0;
  int context_length = 0;
  float rms_norm_eps = 1e-5f;
  float rope_base = 10000.0f;
  int rope_dims = 0;            // leading dimensions of each head that rotate
  float rope_linear_scale = 1;  // positions are divided by this ("linear" scaling)

  // Reads and validates the hyperparameters. Throws core::Error (bad input) naming the key for
  // a missing or inconsistent one, or an architecture or rope scaling we cannot run.
  static LlamaConfig from_gguf(const GgufFile& file);
};

// Keys and values of earlier tokens, per layer [length × H_kv·dh], after the rotary embedding.
struct KvCache {
  int length = 0;
  std::vector<std::vector<float>> k, v;
  size_t bytes() const;
};

// Scratch memory reused across forward calls (one per thread calling forward).
struct LlamaWorkspace {
  std::vector<float> normed, qkv, ctx, gate_up, act;
  std::vector<float> hidden;  // the output of the last forward call, [T × hidden], final-normed
  bool profile = false;
  ForwardProfile timings;
};

class LlamaModel {
 public:
  // Maps the GGUF file and dequantizes its weights. Throws core::Error (bad input) for a missing
  // tensor, a shape that disagrees with the metadata, or a type we cannot dequantize.
  static std::unique_ptr<LlamaModel> load(const std::string& gguf_path);

  const LlamaConfig& config() const { return config_; }
  const GgufFile& file() const { return file_; }

  // Runs `batch` and returns the final hidden states (after the output RMSNorm) of all tokens,
  // packed in order ([sum of lengths × hidden], a view into `ws`). Throws core::Error (bad input)
  // for empty sequences, out-of-vocabulary ids, or a sequence that with `past` runs past the
  // context length.
  //
  // `past`: every sequence continues this cached prefix (positions start at past->length).
  // `save`: the keys and values of the batch's single sequence are appended to it.
  // `hook`: as for the encoder; a sequence whose maps cover every head skips Q and K (and their
  // rotary embedding). Maps are H packed lower triangles. Not combined with `past`.
  const std::vector<float>& forward(const std::vector<std::vector<int32_t>>& batch,
                                    LlamaWorkspace& ws, AttentionHook* hook = nullptr,
                                    const KvCache* past = nullptr, KvCache* save = nullptr) const;

  // The token embeddings of `ids` (valid ids: forward checks them), [ids.size() × hidden].
  void embed_tokens(const std::vector<int32_t>& ids, float* out) const;

  // out[rows × vocab] = the LM head applied to `rows` hidden states (rows of forward's output).
  void logits(const float* hidden, int rows, float* out) const;

 private:
  struct Layer {
    std::vector<float> attn_norm, qkv_w, o_w, ffn_norm, gate_up_w, down_w;
  };
  std::vector<float> weight(const std::string& name, std::vector<int64_t> shape) const;

  LlamaConfig config_;
  GgufFile file_;
  cpu::Rope rope_;
  std::vector<float> token_embd_, output_norm_, output_;  // output_ empty: tied to token_embd_
  std::vector<Layer> layers_;
};

}  // namespace attncache
