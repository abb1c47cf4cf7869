// A decoder LLM for prefill-only work: the Llama model and its BPE tokenizer, from one GGUF file
// or from a Hugging Face directory (config.json, safetensors, tokenizer.json).
// As a PrefillModel its vector per input is the last token's final hidden state, the input of the
// LM head for the next token: multiple-choice answers are read from it, and the memo layer stores
// and compares it like an encoder's sentence embedding.
#pragma once

#include <memory>
#include <span>
#include <string>
#include <vector>

#include "attncache/model/bpe_tokenizer.h"
#include "attncache/model/llama.h"
#include "attncache/prefill_model.h"

namespace attncache {

class Decoder : public PrefillModel {
 public:
  // Loads `name_or_path`: a .gguf file, a Hugging Face directory (config.json with model_type
  // llama or qwen2, tokenizer.json), a directory holding exactly one .gguf, or a model name
  // looked up as for encoders (resolve_model_dir). Throws core::Error (bad input).
  static std::unique_ptr<Decoder> load(const std::string& name_or_path);

  const LlamaModel& model() const { return *model_; }
  const BpeTokenizer& tokenizer() const { return tokenizer_; }
  LlamaWorkspace& workspace() { return workspace_; }

  int num_layers() const override { return model_->config().num_layers; }
  int num_heads() const override { return model_->config().num_heads; }
  int hidden_size() const override { return model_->config().hidden_size; }
  int dim() const override { return model_->config().hidden_size; }
  bool causal() const override { return true; }
  int max_tokens() const override { return std::min(model_->config().context_length, 2048); }
  int context_limit() const override { return model_->config().context_length; }

  // Ids of `text` with BOS where the model asks for it; special tokens in the text are not
  // parsed (user text is data). Keeps the first max_tokens ids.
  Encoding tokenize(std::string_view text, int max_tokens) const override;
  // Token embeddings (RoPE acts inside attention, so position is not in them).
  void layer0_input(const std::vector<int32_t>& ids, float* out) const override;
  // The last token's final hidden state per input.
  std::vector<float> embed(const std::vector<std::vector<int32_t>>& batch,
                           AttentionHook* hook = nullptr) override;
  // The same, each input continuing `past` (null: none), e.g. a shared k-shot header.
  std::vector<float> embed_after(const std::vector<std::vector<int32_t>>& batch,
                                 const KvCache* past);
  void set_profiling(bool on) override { workspace_.profile = on; }
  ForwardProfile& timings() override { return workspace_.timings; }
  // Architecture, sizes, the CRC-32 of the weight files and the tokenizer's fingerprint.
  nlohmann::json fingerprint() const override;

  // log p(ids[i] | ids[0..i)) for i = 1..n-1 (n-1 values), from one forward pass.
  std::vector<double> token_log_probs(const std::vector<int32_t>& ids);
  // The same for each sequence of a batch, from one forward pass over all of them (sequences of
  // fewer than two tokens get no values and take no part). Batching changes the GEMMs' row
  // counts, so values may differ from one-at-a-time runs in the last bits.
  std::vector<std::vector<double>> token_log_probs(const std::vector<std::vector<int32_t>>& batch);
  // log-softmax over the vocabulary of the logits for the next token after each input's last
  // token, restricted to `candidates` ([batch × candidates.size()]): what multiple-choice scoring
  // compares. `hidden` are embed()'s vectors.
  std::vector<float> candidate_log_probs(std::span<const float> hidden, size_t inputs,
                                         std::span<const int32_t> candidates) const;

 private:
  Decoder(std::unique_ptr<LlamaModel> model, BpeTokenizer tokenizer)
      : model_(std::move(model)), tokenizer_(std::move(tokenizer)) {}

  std::unique_ptr<LlamaModel> model_;
  BpeTokenizer tokenizer_;
  LlamaWorkspace workspace_;
};

}  // namespace attncache
