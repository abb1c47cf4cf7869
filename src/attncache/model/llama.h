// A Llama-family decoder on the CPU, loaded from GGUF or from a Hugging Face directory (Llama or
// Qwen2: config.json + safetensors): token embeddings, then per layer RMSNorm, fused Q/K/V
// projection (with biases for Qwen2), rotary embeddings, causal grouped-query attention (with the
// AttentionHook, maps stored as packed lower triangles), output projection + residual, RMSNorm,
// SwiGLU MLP + residual; a final RMSNorm and the LM head. Weights are converted to fp32 at load.
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
  std::string architecture;  // general.architecture ("llama"), or config.json's model_type
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
  // Llama 3's frequency-dependent scaling (rope type "llama3" in config.json; a GGUF file holds
  // its result as the rope_freqs.weight tensor instead). factor 0: none.
  struct Llama3Rope {
    double factor = 0, low_freq_factor = 1, high_freq_factor = 4;
    int original_context = 0;
  } rope_llama3;
  // Which dimensions rotate together: (i, i + rope_dims/2) as Hugging Face's rotate_half does, or
  // adjacent pairs (2i, 2i+1) as llama.cpp does on GGUF's permuted Q/K weights.
  bool rope_neox = false;
  bool qkv_bias = false;  // biases on the query, key and value projections (Qwen2)
  // config.json's tie_word_embeddings: the LM head is the token embedding even if the files hold
  // lm_head.weight (without it, a missing lm_head.weight ties them too).
  bool tie_word_embeddings = false;

  // Reads and validates the hyperparameters. Throws core::Error (bad input) naming the key for
  // a missing or inconsistent one, or an architecture or rope scaling we cannot run.
  static LlamaConfig from_gguf(const GgufFile& file);
  // The same from a Hugging Face config.json (model_type "llama" or "qwen2"; rope_theta and
  // rope_scaling, or transformers 5's rope_parameters; rope types default, linear and llama3;
  // head_dim may differ from hidden_size / heads).
  static LlamaConfig from_hf(const std::string& config_json);

  // The rotary inverse frequency of each rotating pair, as transformers computes it in fp32
  // (divided by `freq_factors`, GGUF's rope_freqs, when given).
  std::vector<float> rope_inv_freq(const std::vector<float>& freq_factors = {}) const;
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
  // Loads a GGUF file, or a Hugging Face directory: config.json, and model.safetensors or the
  // shards that model.safetensors.index.json lists (F32, F16 or BF16; lm_head.weight absent or
  // tie_word_embeddings set: the head is the token embedding). Throws core::Error (bad input)
  // for a missing tensor, a shape that disagrees with the hyperparameters, or a type we cannot
  // convert, naming the file and the tensor.
  static std::unique_ptr<LlamaModel> load(const std::string& path);

  const LlamaConfig& config() const { return config_; }
  // The GGUF file (holding the tokenizer too); not open for a Hugging Face directory.
  const GgufFile& file() const { return file_; }
  // The files the weights were read from: the GGUF file, or the safetensors files in order.
  const std::vector<std::string>& weight_files() const { return weight_files_; }
  // CRC-32 of the weight files' bytes, in order.
  uint32_t weights_crc32() const;
  const cpu::Rope& rope() const { return rope_; }

  // Which rows forward() returns: every token's, or each sequence's last.
  enum class Rows { kEveryToken, kLast };

  // Runs `batch` and returns the final hidden states (after the output RMSNorm) of all tokens
  // (by default; see `rows_out`), packed in order ([sum of lengths × hidden], a view into `ws`).
  // Throws core::Error (bad input) for empty sequences, out-of-vocabulary ids, or a sequence that
  // with `past` runs past the context length.
  //
  // `past`: every sequence continues this cached prefix (positions start at past->length).
  // `save`: the keys and values of the batch's single sequence are appended to it.
  // `hook`: as for the encoder; a sequence whose maps cover every head skips Q and K (and their
  // rotary embedding). Maps are H packed lower triangles. Not combined with `past`.
  // `rows_out`: Rows::kLast returns each sequence's last row only ([batch size × hidden]); the
  // last layer's output projection and MLP then run on those rows alone (its attention still
  // covers every row, so a hook records whole maps).
  const std::vector<float>& forward(const std::vector<std::vector<int32_t>>& batch,
                                    LlamaWorkspace& ws, AttentionHook* hook = nullptr,
                                    const KvCache* past = nullptr, KvCache* save = nullptr,
                                    Rows rows_out = Rows::kEveryToken) const;

  // The token embeddings of `ids` (valid ids: forward checks them), [ids.size() × hidden].
  void embed_tokens(const std::vector<int32_t>& ids, float* out) const;

  // out[rows × vocab] = the LM head applied to `rows` hidden states (rows of forward's output).
  void logits(const float* hidden, int rows, float* out) const;

  // The weights, fp32, as PyTorch Linear layouts ([out × in]); for the GPU model's upload.
  struct Layer {
    std::vector<float> attn_norm;  // [hidden]
    std::vector<float> qkv_w;      // [(H + 2·H_kv)·dh × hidden]: q, k, v rows
    std::vector<float> qkv_b;      // [(H + 2·H_kv)·dh], or empty
    std::vector<float> o_w;        // [hidden × H·dh]
    std::vector<float> ffn_norm;   // [hidden]
    std::vector<float> gate_up_w;  // [2·ff × hidden]: gate rows, then up rows
    std::vector<float> down_w;     // [hidden × ff]
  };
  const std::vector<Layer>& layers() const { return layers_; }
  const std::vector<float>& token_embedding() const { return token_embd_; }  // [vocab × hidden]
  const std::vector<float>& output_norm() const { return output_norm_; }
  // [vocab × hidden]: the token embedding when tied.
  const std::vector<float>& lm_head() const { return output_.empty() ? token_embd_ : output_; }

 private:
  static std::unique_ptr<LlamaModel> load_gguf(const std::string& path);
  static std::unique_ptr<LlamaModel> load_hf(const std::string& dir);
  const GgufTensor& checked_tensor(const std::string& name,
                                   const std::vector<int64_t>& shape) const;
  std::vector<float> weight(const std::string& name, std::vector<int64_t> shape) const;
  // The same into `dst` (the shape's element count), dequantized in parallel.
  void weight_into(const std::string& name, const std::vector<int64_t>& shape, float* dst) const;

  LlamaConfig config_;
  GgufFile file_;
  std::vector<std::string> weight_files_;
  cpu::Rope rope_;
  std::vector<float> token_embd_, output_norm_, output_;  // output_ empty: tied to token_embd_
  std::vector<Layer> layers_;
};

}  // namespace attncache
