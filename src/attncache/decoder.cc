#include "attncache/decoder.h"

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <optional>

#include "attncache/model/model_config.h"
#include "core/error.h"
#include "core/record_store.h"

namespace attncache {
namespace fs = std::filesystem;
namespace {

// A .gguf file, or a directory: a Hugging Face one (config.json) as it is, else its one .gguf.
std::string find_weights(const std::string& name_or_path) {
  if (fs::is_regular_file(name_or_path)) return name_or_path;
  const fs::path dir = resolve_model_dir(name_or_path);
  if (fs::exists(dir / "config.json")) return dir.string();
  std::vector<fs::path> found;
  for (const auto& item : fs::directory_iterator(dir)) {
    if (item.path().extension() == ".gguf") found.push_back(item.path());
  }
  if (found.size() != 1) {
    core::throw_bad_input(dir.string(), found.empty()
                                            ? " holds neither config.json nor a .gguf file"
                                            : " holds several .gguf files; name one");
  }
  return found[0].string();
}

// log Σ exp(row), stable.
double log_sum_exp(const float* row, int n) {
  const float mx = *std::max_element(row, row + n);
  double sum = 0;
  for (int v = 0; v < n; ++v) sum += std::exp(static_cast<double>(row[v]) - mx);
  return mx + std::log(sum);
}

}  // namespace

std::unique_ptr<Decoder> Decoder::load(const std::string& name_or_path) {
  const std::string path = find_weights(name_or_path);
  std::unique_ptr<LlamaModel> model;
  std::optional<BpeTokenizer> tokenizer;
  if (fs::is_directory(path)) {
    // The config first: a directory of another kind (an encoder) is named as such.
    LlamaConfig::from_hf((fs::path(path) / "config.json").string());
    const fs::path tokenizer_json = fs::path(path) / "tokenizer.json";
    if (!fs::exists(tokenizer_json)) {
      core::throw_bad_input(path, " has no tokenizer.json (a decoder needs its tokenizer)");
    }
    tokenizer = BpeTokenizer::from_tokenizer_json(tokenizer_json.string());
    model = LlamaModel::load(path);
  } else {
    model = LlamaModel::load(path);
    tokenizer = BpeTokenizer::from_gguf(model->file());
  }
  if (tokenizer->vocab_size() > static_cast<size_t>(model->config().vocab_size)) {
    core::throw_bad_input(path, ": the tokenizer has ", tokenizer->vocab_size(),
                          " tokens, the embedding only ", model->config().vocab_size);
  }
  return std::unique_ptr<Decoder>(new Decoder(std::move(model), std::move(*tokenizer)));
}

Encoding Decoder::tokenize(std::string_view text, int max_tokens) const {
  Encoding e;
  e.ids = tokenizer_.encode(text, /*add_special=*/true, /*parse_special=*/false);
  if (max_tokens > 0 && e.ids.size() > static_cast<size_t>(max_tokens)) {
    e.ids.resize(max_tokens);
    e.truncated = true;
  }
  return e;
}

void Decoder::layer0_input(const std::vector<int32_t>& ids, float* out) const {
  model_->embed_tokens(ids, out);
}

std::vector<float> Decoder::embed(const std::vector<std::vector<int32_t>>& batch,
                                  AttentionHook* hook) {
  return model_->forward(batch, workspace_, hook, nullptr, nullptr, LlamaModel::Rows::kLast);
}

std::vector<float> Decoder::embed_after(const std::vector<std::vector<int32_t>>& batch,
                                        const KvCache* past) {
  return model_->forward(batch, workspace_, nullptr, past, nullptr, LlamaModel::Rows::kLast);
}

nlohmann::json Decoder::fingerprint() const {
  const LlamaConfig& c = model_->config();
  char tokenizer[17];
  std::snprintf(tokenizer, sizeof tokenizer, "%016llx",
                static_cast<unsigned long long>(tokenizer_.fingerprint()));
  return {{"architecture", c.architecture},
          {"hidden_size", c.hidden_size},
          {"num_layers", c.num_layers},
          {"num_heads", c.num_heads},
          {"num_kv_heads", c.num_kv_heads},
          {"intermediate_size", c.intermediate_size},
          {"vocab_size", c.vocab_size},
          {"context_length", c.context_length},
          {"weights_crc32", model_->weights_crc32()},
          {"tokenizer", tokenizer}};
}

std::vector<double> Decoder::token_log_probs(const std::vector<int32_t>& ids) {
  return std::move(token_log_probs(std::vector<std::vector<int32_t>>{ids})[0]);
}

std::vector<std::vector<double>> Decoder::token_log_probs(
    const std::vector<std::vector<int32_t>>& batch) {
  std::vector<std::vector<double>> out(batch.size());
  std::vector<std::vector<int32_t>> scored;  // the sequences with a prediction to score
  std::vector<size_t> owner;
  for (size_t s = 0; s < batch.size(); ++s) {
    if (batch[s].size() < 2) continue;
    scored.push_back(batch[s]);
    owner.push_back(s);
  }
  if (scored.empty()) return out;
  const int vocab = model_->config().vocab_size, d = dim();
  const std::vector<float>& hidden = model_->forward(scored, workspace_);
  // Every row but each sequence's last predicts the next token.
  struct Prediction {
    size_t hidden_row;
    int32_t target;
    size_t sequence;  // in `batch`
  };
  std::vector<Prediction> predictions;
  for (size_t k = 0, row = 0; k < scored.size(); row += scored[k].size(), ++k) {
    out[owner[k]].reserve(scored[k].size() - 1);
    for (size_t i = 0; i + 1 < scored[k].size(); ++i) {
      predictions.push_back({row + i, scored[k][i + 1], owner[k]});
    }
  }
  // The LM head in slices of rows: [rows × vocab] logits are 196 KB per row.
  constexpr size_t kRows = 64;
  std::vector<float> gathered(kRows * d), logits(kRows * vocab);
  for (size_t r0 = 0; r0 < predictions.size(); r0 += kRows) {
    const size_t n = std::min(kRows, predictions.size() - r0);
    for (size_t r = 0; r < n; ++r) {
      std::copy_n(hidden.data() + predictions[r0 + r].hidden_row * d, d, gathered.data() + r * d);
    }
    model_->logits(gathered.data(), static_cast<int>(n), logits.data());
    for (size_t r = 0; r < n; ++r) {
      const Prediction& p = predictions[r0 + r];
      const float* row = logits.data() + r * vocab;
      out[p.sequence].push_back(row[p.target] - log_sum_exp(row, vocab));
    }
  }
  return out;
}

std::vector<float> Decoder::candidate_log_probs(std::span<const float> hidden, size_t inputs,
                                                std::span<const int32_t> candidates) const {
  const int vocab = model_->config().vocab_size;
  std::vector<float> logits(inputs * vocab);
  model_->logits(hidden.data(), static_cast<int>(inputs), logits.data());
  std::vector<float> out(inputs * candidates.size());
  for (size_t s = 0; s < inputs; ++s) {
    const float* row = logits.data() + s * vocab;
    const double lse = log_sum_exp(row, vocab);
    for (size_t k = 0; k < candidates.size(); ++k) {
      out[s * candidates.size() + k] = static_cast<float>(row[candidates[k]] - lse);
    }
  }
  return out;
}

}  // namespace attncache
