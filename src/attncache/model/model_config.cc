#include "attncache/model/model_config.h"

#include <unistd.h>

#include <algorithm>
#include <cstdlib>
#include <filesystem>
#include <vector>

#include "attncache/kernels/cpu/attention.h"
#include "core/error.h"
#include "core/json_file.h"

namespace attncache {
namespace fs = std::filesystem;
namespace {

int positive_int(const nlohmann::json& json, const char* key, const std::string& path) {
  if (!json.contains(key) || !json[key].is_number_integer() || json[key].get<int64_t>() <= 0 ||
      json[key].get<int64_t>() > (1 << 30)) {
    core::throw_bad_input(path, ": '", key, "' must be a positive integer");
  }
  return json[key].get<int>();
}

std::string string_or(const nlohmann::json& json, const char* key, const std::string& fallback) {
  return json.contains(key) && json[key].is_string() ? json[key].get<std::string>() : fallback;
}

}  // namespace

BertConfig BertConfig::from_file(const std::string& path) {
  nlohmann::json json = core::read_json_file(path);
  if (!json.is_object()) core::throw_bad_input(path, ": expected a JSON object");
  std::string model_type = string_or(json, "model_type", "");
  if (model_type != "bert") {
    core::throw_bad_input(path, ": model_type '", model_type, "' is not supported (expected bert)");
  }
  std::string act = string_or(json, "hidden_act", "gelu");
  if (act != "gelu") {
    core::throw_bad_input(path, ": hidden_act '", act, "' is not supported (expected gelu)");
  }
  std::string position = string_or(json, "position_embedding_type", "absolute");
  if (position != "absolute") {
    core::throw_bad_input(path, ": position_embedding_type '", position, "' is not supported");
  }
  BertConfig c;
  c.hidden_size = positive_int(json, "hidden_size", path);
  c.num_layers = positive_int(json, "num_hidden_layers", path);
  c.num_heads = positive_int(json, "num_attention_heads", path);
  c.intermediate_size = positive_int(json, "intermediate_size", path);
  c.vocab_size = positive_int(json, "vocab_size", path);
  c.max_position_embeddings = positive_int(json, "max_position_embeddings", path);
  c.type_vocab_size = positive_int(json, "type_vocab_size", path);
  if (json.contains("layer_norm_eps") && json["layer_norm_eps"].is_number()) {
    c.layer_norm_eps = json["layer_norm_eps"].get<float>();
  }
  if (c.hidden_size % c.num_heads != 0) {
    core::throw_bad_input(path, ": hidden_size ", c.hidden_size,
                          " is not divisible by num_attention_heads ", c.num_heads);
  }
  if (!cpu::attention_supports_head_dim(c.head_dim()) || c.num_heads > 64) {
    core::throw_bad_input(
        path, ": head size ", c.head_dim(), " with ", c.num_heads,
        " heads is not supported (head size 16, 32, 64 or 128; at most 64 heads)");
  }
  return c;
}

SentenceConfig SentenceConfig::from_dir(const std::string& dir) {
  SentenceConfig c;
  fs::path root(dir);
  std::string pooling_dir;
  if (fs::exists(root / "modules.json")) {
    nlohmann::json modules = core::read_json_file(root / "modules.json");
    if (!modules.is_array())
      core::throw_bad_input((root / "modules.json").string(), ": not a list");
    for (auto& m : modules) {
      std::string type = string_or(m, "type", "");
      if (type.ends_with(".Normalize")) c.normalize = true;
      if (type.ends_with(".Pooling")) pooling_dir = string_or(m, "path", "");
    }
  }
  if (!pooling_dir.empty()) {
    fs::path pooling_path = root / pooling_dir / "config.json";
    nlohmann::json pooling = core::read_json_file(pooling_path);
    bool cls = pooling.value("pooling_mode_cls_token", false);
    bool mean = pooling.value("pooling_mode_mean_tokens", false);
    bool other = pooling.value("pooling_mode_max_tokens", false) ||
                 pooling.value("pooling_mode_mean_sqrt_len_tokens", false) ||
                 pooling.value("pooling_mode_weightedmean_tokens", false) ||
                 pooling.value("pooling_mode_lasttoken", false);
    if (cls + mean != 1 || other) {
      core::throw_bad_input(pooling_path.string(),
                            ": only a single mean or CLS pooling mode is supported");
    }
    c.pooling = cls ? Pooling::kCls : Pooling::kMean;
  }
  if (fs::exists(root / "sentence_bert_config.json")) {
    nlohmann::json sb = core::read_json_file(root / "sentence_bert_config.json");
    if (sb.contains("max_seq_length") && sb["max_seq_length"].is_number_integer()) {
      c.max_seq_length = sb["max_seq_length"].get<int>();
    }
  }
  return c;
}

int ModelConfig::max_tokens() const {
  int limit = bert.max_position_embeddings;
  if (sentence.max_seq_length > 0) limit = std::min(limit, sentence.max_seq_length);
  return limit;
}

ModelConfig ModelConfig::from_dir(const std::string& dir) {
  ModelConfig c;
  c.dir = dir;
  c.bert = BertConfig::from_file((fs::path(dir) / "config.json").string());
  c.sentence = SentenceConfig::from_dir(dir);
  return c;
}

std::string resolve_model_dir(const std::string& name_or_dir) {
  if (fs::is_directory(name_or_dir)) return name_or_dir;
  std::vector<fs::path> candidates;
  if (const char* env = std::getenv("ATTNCACHE_MODELS")) candidates.push_back(fs::path(env));
  candidates.push_back(fs::path("models"));
  std::error_code ec;
  fs::path exe = fs::read_symlink("/proc/self/exe", ec);
  if (!ec) candidates.push_back(exe.parent_path().parent_path() / "models");
  std::string tried;
  if (name_or_dir.find('/') == std::string::npos) {
    for (auto& base : candidates) {
      fs::path p = base / name_or_dir;
      if (fs::is_directory(p)) return p.string();
      tried += ' ';
      tried += p.string();
    }
  }
  if (tried.empty()) tried = core::cat(' ', name_or_dir);
  core::throw_bad_input("model '", name_or_dir, "' not found (tried:", tried,
                        "); run scripts/fetch-models.sh or pass a model directory");
}

}  // namespace attncache
