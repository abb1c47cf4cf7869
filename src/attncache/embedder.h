// Sentence embeddings as sentence-transformers computes them: tokenize, encode, pool (mean or
// CLS, per the model's pooling config), L2-normalize when the model's modules ask for it.
#pragma once

#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "attncache/model/bert.h"
#include "attncache/model/model_config.h"
#include "attncache/model/wordpiece_tokenizer.h"
#include "attncache/prefill_model.h"

namespace attncache {

class Embedder : public PrefillModel {
 public:
  // Loads config, tokenizer and weights from a model directory. Throws core::Error.
  static Embedder load(const std::string& model_dir);

  const ModelConfig& config() const { return config_; }
  const WordPieceTokenizer& tokenizer() const { return tokenizer_; }
  const BertModel& model() const { return *model_; }
  BertWorkspace& workspace() { return workspace_; }

  int num_layers() const override { return config_.bert.num_layers; }
  int num_heads() const override { return config_.bert.num_heads; }
  int hidden_size() const override { return config_.bert.hidden_size; }
  int dim() const override { return config_.bert.hidden_size; }
  bool causal() const override { return false; }
  int max_tokens() const override { return config_.max_tokens(); }
  int context_limit() const override { return config_.bert.max_position_embeddings; }

  Encoding tokenize(std::string_view text, int max_tokens) const override {
    return tokenizer_.encode(text, static_cast<size_t>(max_tokens));
  }
  // Word + position + type-0 embeddings, LayerNorm.
  void layer0_input(const std::vector<int32_t>& ids, float* out) const override {
    model_->embed_tokens(ids, out);
  }
  // Sentence embeddings; returns [batch.size() × dim()] row-major.
  std::vector<float> embed(const std::vector<std::vector<int32_t>>& batch,
                           AttentionHook* hook = nullptr) override;
  void set_profiling(bool on) override { workspace_.profile = on; }
  ForwardProfile& timings() override { return workspace_.timings; }
  // Architecture, sizes, the CRC-32 of model.safetensors and the tokenizer's fingerprint.
  nlohmann::json fingerprint() const override;

 private:
  ModelConfig config_;
  WordPieceTokenizer tokenizer_;
  std::unique_ptr<BertModel> model_;
  BertWorkspace workspace_;
};

}  // namespace attncache
