#include "attncache/embedder.h"

#include <algorithm>
#include <cmath>
#include <filesystem>

#include "core/error.h"
#include "core/mapped_file.h"
#include "core/record_store.h"

namespace attncache {

Embedder Embedder::load(const std::string& model_dir) {
  Embedder e;
  e.config_ = ModelConfig::from_dir(model_dir);
  e.tokenizer_ =
      WordPieceTokenizer::from_file((std::filesystem::path(model_dir) / "tokenizer.json").string());
  if (e.tokenizer_.vocab_size() > static_cast<size_t>(e.config_.bert.vocab_size)) {
    core::throw_bad_input(model_dir, ": tokenizer has ", e.tokenizer_.vocab_size(),
                          " tokens but config.json vocab_size is ", e.config_.bert.vocab_size);
  }
  e.model_ = BertModel::load(e.config_);
  return e;
}

std::vector<float> Embedder::embed(const std::vector<std::vector<int32_t>>& batch,
                                   AttentionHook* hook) {
  const int d = dim();
  const std::vector<float>& hidden = model_->forward(batch, workspace_, hook);
  std::vector<float> out(batch.size() * d, 0.0f);
  size_t offset = 0;
  for (size_t s = 0; s < batch.size(); ++s) {
    float* e = out.data() + s * d;
    const size_t n = batch[s].size();
    if (config_.sentence.pooling == Pooling::kCls) {
      std::copy_n(hidden.data() + offset * d, d, e);
    } else {
      for (size_t t = 0; t < n; ++t) {
        const float* row = hidden.data() + (offset + t) * d;
        for (int k = 0; k < d; ++k) e[k] += row[k];
      }
      for (int k = 0; k < d; ++k) e[k] /= static_cast<float>(n);
    }
    if (config_.sentence.normalize) {
      double norm = 0.0;
      for (int k = 0; k < d; ++k) norm += static_cast<double>(e[k]) * e[k];
      // sentence-transformers normalizes with torch's F.normalize (eps 1e-12).
      const float inv = static_cast<float>(1.0 / std::max(std::sqrt(norm), 1e-12));
      for (int k = 0; k < d; ++k) e[k] *= inv;
    }
    offset += n;
  }
  return out;
}

nlohmann::json Embedder::fingerprint() const {
  const BertConfig& c = config_.bert;
  const core::MappedFile weights =
      core::MappedFile::open((std::filesystem::path(config_.dir) / "model.safetensors").string());
  char tokenizer[17];
  std::snprintf(tokenizer, sizeof tokenizer, "%016llx",
                static_cast<unsigned long long>(tokenizer_.fingerprint()));
  return {{"architecture", "bert"},
          {"hidden_size", c.hidden_size},
          {"num_layers", c.num_layers},
          {"num_heads", c.num_heads},
          {"intermediate_size", c.intermediate_size},
          {"vocab_size", c.vocab_size},
          {"max_position_embeddings", c.max_position_embeddings},
          {"weights_crc32", core::crc32(weights.data(), weights.size())},
          {"tokenizer", tokenizer}};
}

}  // namespace attncache
