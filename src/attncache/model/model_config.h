// Hyperparameters of a Hugging Face BERT-family model directory: config.json for the encoder and
// the sentence-transformers files (modules.json, sentence_bert_config.json, 1_Pooling/config.json)
// for pooling, normalization and the maximum sequence length.
#pragma once

#include <string>

namespace attncache {

struct BertConfig {
  int hidden_size = 0;
  int num_layers = 0;
  int num_heads = 0;
  int intermediate_size = 0;
  int vocab_size = 0;
  int max_position_embeddings = 0;
  int type_vocab_size = 0;
  float layer_norm_eps = 1e-12f;

  int head_dim() const { return hidden_size / num_heads; }
  // Parses and validates config.json. Throws core::Error (bad input) on anything we cannot run.
  static BertConfig from_file(const std::string& path);
};

enum class Pooling { kMean, kCls };

struct SentenceConfig {
  Pooling pooling = Pooling::kMean;
  bool normalize = false;
  int max_seq_length = 0;  // 0: the encoder's max_position_embeddings

  // Reads the sentence-transformers files of `dir`; a plain transformers directory gets
  // sentence-transformers' defaults (mean pooling, no normalization).
  static SentenceConfig from_dir(const std::string& dir);
};

struct ModelConfig {
  std::string dir;
  BertConfig bert;
  SentenceConfig sentence;
  // The longest input the model takes, in tokens (special tokens included).
  int max_tokens() const;

  static ModelConfig from_dir(const std::string& dir);
};

// Resolves `name_or_dir`: an existing directory is used as is; a bare name is looked up as
// $ATTNCACHE_MODELS/<name>, ./models/<name>, then <executable>/../models/<name>. Throws
// core::Error (bad input) listing the places tried.
std::string resolve_model_dir(const std::string& name_or_dir);

}  // namespace attncache
