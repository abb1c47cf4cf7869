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

namespace attncache {

class Embedder {
 public:
  // Loads config, tokenizer and weights from a model directory. Throws core::Error.
  static Embedder load(const std::string& model_dir);

  const ModelConfig& config() const { return config_; }
  const WordPieceTokenizer& tokenizer() const { return tokenizer_; }
  const BertModel& model() const { return *model_; }
  BertWorkspace& workspace() { return workspace_; }
  int dim() const { return config_.bert.hidden_size; }

  Encoding tokenize(std::string_view text, int max_tokens) const {
    return tokenizer_.encode(text, static_cast<size_t>(max_tokens));
  }

  // Embeds token sequences; returns [batch.size() × dim()] row-major.
  std::vector<float> embed(const std::vector<std::vector<int32_t>>& batch,
                           AttentionHook* hook = nullptr);

 private:
  ModelConfig config_;
  WordPieceTokenizer tokenizer_;
  std::unique_ptr<BertModel> model_;
  BertWorkspace workspace_;
};

}  // namespace attncache
