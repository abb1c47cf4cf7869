#include "attncache/model/llama.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <functional>
#include <map>
#include <nlohmann/json.hpp>
#include <numbers>

#include "attncache/kernels/cpu/attention.h"
#include "attncache/model/safetensors.h"
#include "core/error.h"
#include "core/json_file.h"
#include "core/mapped_file.h"
#include "core/record_store.h"

namespace attncache {
namespace fs = std::filesystem;
namespace {

int positive_int(const GgufFile& file, const std::string& key) {
  const int64_t v = file.get_int(key);
  if (v <= 0 || v > (int64_t{1} << 30)) {
    core::throw_bad_input(file.path(), ": metadata '", key, "' = ", v, " is out of range");
  }
  return static_cast<int>(v);
}

}  // namespace

LlamaConfig LlamaConfig::from_gguf(const GgufFile& file) {
  LlamaConfig c;
  c.architecture = file.get_string("general.architecture");
  if (c.architecture != "llama") {
    core::throw_bad_input(file.path(), ": architecture '", c.architecture,
                          "' is not supported (supported: llama)");
  }
  if (const GgufValue* name = file.find("general.name");
      name != nullptr && name->type == GgufValueType::kString) {
    c.name = std::get<std::string>(name->value);
  }
  const std::string a = c.architecture + ".";
  c.hidden_size = positive_int(file, a + "embedding_length");
  c.num_layers = positive_int(file, a + "block_count");
  c.num_heads = positive_int(file, a + "attention.head_count");
  c.num_kv_heads = file.find(a + "attention.head_count_kv") != nullptr
                       ? positive_int(file, a + "attention.head_count_kv")
                       : c.num_heads;
  c.intermediate_size = positive_int(file, a + "feed_forward_length");
  c.context_length = positive_int(file, a + "context_length");
  c.rms_norm_eps = static_cast<float>(file.get_float(a + "attention.layer_norm_rms_epsilon"));
  c.rope_base = static_cast<float>(file.get_float(a + "rope.freq_base", 10000.0));
  if (c.hidden_size % c.num_heads != 0) {
    core::throw_bad_input(file.path(), ": embedding_length ", c.hidden_size,
                          " is not a multiple of head_count ", c.num_heads);
  }
  c.head_dim = c.hidden_size / c.num_heads;
  if (file.find(a + "attention.key_length") != nullptr &&
      positive_int(file, a + "attention.key_length") != c.head_dim) {
    core::throw_bad_input(file.path(),
                          ": attention.key_length differs from embedding_length / "
                          "head_count; such models are not supported");
  }
  if (c.num_heads % c.num_kv_heads != 0 || c.num_heads > 64) {
    core::throw_bad_input(file.path(), ": ", c.num_heads, " query heads over ", c.num_kv_heads,
                          " key/value heads is not supported (query heads must be a multiple, "
                          "at most 64)");
  }
  if (!cpu::attention_supports_head_dim(c.head_dim)) {
    core::throw_bad_input(file.path(), ": head size ", c.head_dim,
                          " is not supported (16, 32, 64 or 128)");
  }
  c.rope_dims = static_cast<int>(file.get_uint(a + "rope.dimension_count", c.head_dim));
  if (c.rope_dims <= 0 || c.rope_dims > c.head_dim || c.rope_dims % 2 != 0) {
    core::throw_bad_input(file.path(), ": rope.dimension_count ", c.rope_dims,
                          " must be even and at most the head size ", c.head_dim);
  }
  if (const GgufValue* type = file.find(a + "rope.scaling.type"); type != nullptr) {
    const std::string& t = file.get_string(a + "rope.scaling.type");
    if (t == "linear") {
      c.rope_linear_scale = static_cast<float>(file.get_float(a + "rope.scaling.factor"));
      if (!(c.rope_linear_scale > 0)) {
        core::throw_bad_input(file.path(), ": rope.scaling.factor must be positive");
      }
    } else if (t != "none") {
      core::throw_bad_input(file.path(), ": rope scaling '", t,
                            "' is not supported (none, linear, or Llama-3 frequency factors)");
    }
  }
  const GgufTensor& embd = file.tensor("token_embd.weight");
  if (embd.dims.size() != 2 || embd.dims[0] != c.hidden_size) {
    core::throw_bad_input(file.path(), ": token_embd.weight has dims ", embd.dims_string(),
                          "; expected [", c.hidden_size, ", vocab]");
  }
  c.vocab_size = static_cast<int>(embd.dims[1]);
  return c;
}

namespace {

using Json = nlohmann::json;

// A positive integer key of config.json (at most 2^30).
int hf_int(const Json& json, const char* key, const std::string& path) {
  if (!json.contains(key) || json[key].is_null()) {
    core::throw_bad_input(path, ": missing key '", key, "'");
  }
  const Json& v = json[key];
  if (!v.is_number_integer() || v.get<int64_t>() <= 0 || v.get<int64_t>() > (int64_t{1} << 30)) {
    core::throw_bad_input(path, ": '", key, "' must be a positive integer (it is ", v.dump(), ")");
  }
  return v.get<int>();
}

double hf_number(const Json& json, const char* key, double fallback, const std::string& path) {
  if (!json.contains(key) || json[key].is_null()) return fallback;
  if (!json[key].is_number()) {
    core::throw_bad_input(path, ": '", key, "' must be a number (it is ", json[key].dump(), ")");
  }
  return json[key].get<double>();
}

bool hf_bool(const Json& json, const char* key, bool fallback) {
  return json.contains(key) && json[key].is_boolean() ? json[key].get<bool>() : fallback;
}

}  // namespace

LlamaConfig LlamaConfig::from_hf(const std::string& path) {
  const Json json = core::read_json_file(path);
  if (!json.is_object()) core::throw_bad_input(path, ": expected a JSON object");
  LlamaConfig c;
  c.architecture = json.contains("model_type") && json["model_type"].is_string()
                       ? json["model_type"].get<std::string>()
                       : "";
  if (c.architecture != "llama" && c.architecture != "qwen2") {
    core::throw_bad_input(path, ": model_type '", c.architecture,
                          "' is not supported for a decoder (supported: llama, qwen2)");
  }
  for (const char* key : {"_name_or_path", "_model_name_or_path"}) {
    if (json.contains(key) && json[key].is_string()) c.name = json[key].get<std::string>();
  }
  c.hidden_size = hf_int(json, "hidden_size", path);
  c.num_layers = hf_int(json, "num_hidden_layers", path);
  c.num_heads = hf_int(json, "num_attention_heads", path);
  c.num_kv_heads = json.contains("num_key_value_heads") && !json["num_key_value_heads"].is_null()
                       ? hf_int(json, "num_key_value_heads", path)
                       : c.num_heads;
  c.intermediate_size = hf_int(json, "intermediate_size", path);
  c.vocab_size = hf_int(json, "vocab_size", path);
  c.context_length = hf_int(json, "max_position_embeddings", path);
  c.rms_norm_eps = static_cast<float>(hf_number(json, "rms_norm_eps", 1e-6, path));
  c.tie_word_embeddings = hf_bool(json, "tie_word_embeddings", false);
  if (json.contains("head_dim") && !json["head_dim"].is_null()) {
    c.head_dim = hf_int(json, "head_dim", path);
  } else if (c.hidden_size % c.num_heads != 0) {
    core::throw_bad_input(path, ": hidden_size ", c.hidden_size,
                          " is not a multiple of num_attention_heads ", c.num_heads);
  } else {
    c.head_dim = c.hidden_size / c.num_heads;
  }
  const std::string act = json.value("hidden_act", std::string("silu"));
  if (act != "silu") {
    core::throw_bad_input(path, ": hidden_act '", act, "' is not supported (silu)");
  }
  if (c.architecture == "llama") {
    for (const char* key : {"attention_bias", "mlp_bias"}) {
      if (hf_bool(json, key, false)) {
        core::throw_bad_input(path, ": ", key, " is set; a Llama with biases is not supported");
      }
    }
  } else {  // Qwen2: biased Q/K/V; sliding-window layers are not implemented
    c.qkv_bias = true;
    bool sliding = hf_bool(json, "use_sliding_window", false);
    if (json.contains("layer_types") && json["layer_types"].is_array()) {
      for (const Json& t : json["layer_types"]) sliding |= t != "full_attention";
    }
    if (sliding) {
      core::throw_bad_input(
          path, ": sliding-window attention (use_sliding_window, layer_types) is not supported");
    }
  }
  if (c.num_heads % c.num_kv_heads != 0 || c.num_heads > 64) {
    core::throw_bad_input(path, ": ", c.num_heads, " attention heads over ", c.num_kv_heads,
                          " key/value heads is not supported (a multiple, at most 64)");
  }
  if (!cpu::attention_supports_head_dim(c.head_dim)) {
    core::throw_bad_input(path, ": head size ", c.head_dim,
                          " is not supported (16, 32, 64 or 128)");
  }

  // RoPE: transformers 5 writes rope_parameters (rope_theta inside); earlier versions rope_theta
  // and rope_scaling ("type" or "rope_type").
  const Json none = Json::object();
  const Json& rope = json.contains("rope_parameters") && json["rope_parameters"].is_object()
                         ? json["rope_parameters"]
                     : json.contains("rope_scaling") && json["rope_scaling"].is_object()
                         ? json["rope_scaling"]
                         : none;
  for (const auto& [key, value] : rope.items()) {
    if (value.is_object()) {
      core::throw_bad_input(path, ": RoPE parameters per layer type ('", key,
                            "') are not supported");
    }
  }
  c.rope_base = static_cast<float>(
      hf_number(rope, "rope_theta", hf_number(json, "rope_theta", 10000.0, path), path));
  if (hf_number(rope, "partial_rotary_factor", hf_number(json, "partial_rotary_factor", 1.0, path),
                path) != 1.0) {
    core::throw_bad_input(path, ": partial_rotary_factor other than 1 is not supported");
  }
  c.rope_dims = c.head_dim;
  c.rope_neox = true;
  const std::string type = rope.contains("rope_type") && rope["rope_type"].is_string()
                               ? rope["rope_type"].get<std::string>()
                           : rope.contains("type") && rope["type"].is_string()
                               ? rope["type"].get<std::string>()
                               : "default";
  if (type == "linear") {
    c.rope_linear_scale = static_cast<float>(hf_number(rope, "factor", 0, path));
    if (!(c.rope_linear_scale > 0)) {
      core::throw_bad_input(path, ": linear rope scaling needs a positive 'factor'");
    }
  } else if (type == "llama3") {
    LlamaConfig::Llama3Rope& l = c.rope_llama3;
    l.factor = hf_number(rope, "factor", 0, path);
    l.low_freq_factor = hf_number(rope, "low_freq_factor", 0, path);
    l.high_freq_factor = hf_number(rope, "high_freq_factor", 0, path);
    // As transformers: a top-level original_max_position_embeddings wins, then the rope
    // parameters', then max_position_embeddings.
    l.original_context = json.contains("original_max_position_embeddings")
                             ? hf_int(json, "original_max_position_embeddings", path)
                         : rope.contains("original_max_position_embeddings")
                             ? hf_int(rope, "original_max_position_embeddings", path)
                             : c.context_length;
    if (!(l.factor > 0) || !(l.low_freq_factor > 0) || !(l.high_freq_factor > l.low_freq_factor)) {
      core::throw_bad_input(path,
                            ": llama3 rope scaling needs factor > 0 and high_freq_factor > "
                            "low_freq_factor > 0");
    }
  } else if (type != "default") {
    core::throw_bad_input(path, ": rope scaling '", type,
                          "' is not supported (default, linear, llama3)");
  }
  return c;
}

std::vector<float> LlamaConfig::rope_inv_freq(const std::vector<float>& freq_factors) const {
  std::vector<float> inv_freq(rope_dims / 2);
  for (int i = 0; i < rope_dims / 2; ++i) {
    // As Hugging Face computes it: 1 / base^(2i / dims) in fp32.
    float f = 1.0f / std::pow(rope_base, static_cast<float>(2 * i) / rope_dims);
    if (!freq_factors.empty()) f /= freq_factors[i];
    if (rope_llama3.factor > 0) {
      // transformers' _compute_llama3_parameters, operation for operation in fp32 (Python
      // scalars rounded to fp32 where they meet a tensor; a scalar over a tensor is the
      // tensor's reciprocal times the scalar): wavelengths beyond the original context /
      // low_freq_factor are slowed by `factor`, those under context / high_freq_factor kept,
      // those between interpolated.
      const Llama3Rope& l = rope_llama3;
      const auto low_freq_wavelen = static_cast<float>(l.original_context / l.low_freq_factor);
      const auto high_freq_wavelen = static_cast<float>(l.original_context / l.high_freq_factor);
      const auto factor = static_cast<float>(l.factor);
      const float wavelen = (1.0f / f) * static_cast<float>(2 * std::numbers::pi);
      const float scaled = wavelen > low_freq_wavelen ? f / factor : f;
      const float smooth = ((1.0f / wavelen) * static_cast<float>(l.original_context) -
                            static_cast<float>(l.low_freq_factor)) /
                           static_cast<float>(l.high_freq_factor - l.low_freq_factor);
      const float smoothed = (1 - smooth) * scaled / factor + smooth * scaled;
      const bool medium = !(wavelen < high_freq_wavelen) && !(wavelen > low_freq_wavelen);
      f = medium ? smoothed : scaled;
    }
    inv_freq[i] = f / rope_linear_scale;
  }
  return inv_freq;
}

namespace {

size_t numel(const std::vector<int64_t>& shape) {
  size_t n = 1;
  for (int64_t s : shape) n *= static_cast<size_t>(s);
  return n;
}

// The safetensors files of a Hugging Face directory, with each tensor's file.
class HfWeights {
 public:
  explicit HfWeights(const fs::path& dir) {
    const fs::path single = dir / "model.safetensors";
    const fs::path index = dir / "model.safetensors.index.json";
    if (fs::exists(single)) {
      open(single.string());
      for (const auto& [name, view] : files_[0].tensors()) where_.emplace(name, 0);
      return;
    }
    if (!fs::exists(index)) {
      core::throw_bad_input(dir.string(),
                            " holds neither model.safetensors nor model.safetensors.index.json");
    }
    const Json json = core::read_json_file(index.string());
    if (!json.contains("weight_map") || !json["weight_map"].is_object()) {
      core::throw_bad_input(index.string(), ": no 'weight_map' object");
    }
    std::map<std::string, size_t> file_index;
    for (const auto& [name, file] : json["weight_map"].items()) {
      if (!file.is_string() || file.get<std::string>().find('/') != std::string::npos ||
          file.get<std::string>().empty()) {
        core::throw_bad_input(index.string(), ": tensor '", name, "' maps to ", file.dump(),
                              ", not a file name in the directory");
      }
      auto [it, inserted] = file_index.emplace(file.get<std::string>(), files_.size());
      if (inserted) open((dir / file.get<std::string>()).string());
      where_.emplace(name, it->second);
    }
  }

  bool has(const std::string& name) const { return where_.count(name) != 0; }

  // The tensor as fp32, checked against `shape`.
  std::vector<float> get(const std::string& name, const std::vector<int64_t>& shape,
                         const std::string& dir) const {
    std::vector<float> out(numel(shape));
    get_into(name, shape, dir, out.data());
    return out;
  }
  // The same into `dst` (numel(shape) values).
  void get_into(const std::string& name, const std::vector<int64_t>& shape, const std::string& dir,
                float* dst) const {
    auto it = where_.find(name);
    if (it == where_.end()) core::throw_bad_input(dir, ": missing tensor '", name, "'");
    const TensorView& t = files_[it->second].get_float(name, shape);
    core::convert_to_f32(t.dtype, t.data, static_cast<size_t>(t.numel()), dst);
  }

  std::vector<std::string> paths() const {
    std::vector<std::string> out;
    for (const SafeTensors& f : files_) out.push_back(f.path());
    return out;
  }

 private:
  void open(const std::string& path) { files_.push_back(SafeTensors::open(path)); }

  std::vector<SafeTensors> files_;
  std::map<std::string, size_t> where_;
};

// Tensors stacked in one matrix (fused Q/K/V, gate/up): sized once, each part converted
// straight into place. A model's weights are gigabytes; growing the vector part by part copied
// them into fresh pages again and again (most of a 1B model's load time).
void stack(
    std::vector<float>* out, const std::vector<std::pair<std::string, std::vector<int64_t>>>& parts,
    const std::function<void(const std::string&, const std::vector<int64_t>&, float*)>& read) {
  size_t total = 0;
  for (const auto& part : parts) total += numel(part.second);
  out->resize(total);
  float* at = out->data();
  for (const auto& [name, shape] : parts) {
    read(name, shape, at);
    at += numel(shape);
  }
}

}  // namespace

size_t KvCache::bytes() const {
  size_t n = 0;
  for (const auto& layer : k) n += layer.size() * sizeof(float);
  for (const auto& layer : v) n += layer.size() * sizeof(float);
  return n;
}

const GgufTensor& LlamaModel::checked_tensor(const std::string& name,
                                             const std::vector<int64_t>& shape) const {
  const GgufTensor& t = file_.tensor(name);
  if (t.shape() != shape) {
    GgufTensor expected;
    expected.dims.assign(shape.rbegin(), shape.rend());
    core::throw_bad_input(file_.path(), ": tensor '", name, "' has dims ", t.dims_string(),
                          " but the metadata implies ", expected.dims_string());
  }
  return t;
}

std::vector<float> LlamaModel::weight(const std::string& name, std::vector<int64_t> shape) const {
  return file_.dequantize(checked_tensor(name, shape));
}

void LlamaModel::weight_into(const std::string& name, const std::vector<int64_t>& shape,
                             float* dst) const {
  const GgufTensor& t = checked_tensor(name, shape);
  const int64_t block = ggml_type_traits(t.type).block_size;
  const int64_t blocks = t.numel() / block, chunk = 4096;
  file_.dequantize_blocks(t, 0, 0, dst);  // throws here (not in a thread) for types it lacks
#pragma omp parallel for schedule(static)
  for (int64_t first = 0; first < blocks; first += chunk) {
    file_.dequantize_blocks(t, first, std::min(chunk, blocks - first), dst + first * block);
  }
}

std::unique_ptr<LlamaModel> LlamaModel::load(const std::string& path) {
  return fs::is_directory(path) ? load_hf(path) : load_gguf(path);
}

uint32_t LlamaModel::weights_crc32() const {
  uint32_t crc = 0;
  for (const std::string& path : weight_files_) {
    const core::MappedFile file = core::MappedFile::open(path);
    crc = core::crc32(file.data(), file.size(), crc);
  }
  return crc;
}

std::unique_ptr<LlamaModel> LlamaModel::load_gguf(const std::string& gguf_path) {
  auto m = std::unique_ptr<LlamaModel>(new LlamaModel());
  m->file_ = GgufFile::open(gguf_path);
  m->weight_files_ = {gguf_path};
  m->config_ = LlamaConfig::from_gguf(m->file_);
  const LlamaConfig& c = m->config_;
  const int64_t d = c.hidden_size, ff = c.intermediate_size;
  const int64_t q_rows = static_cast<int64_t>(c.num_heads) * c.head_dim;
  const int64_t kv_rows = static_cast<int64_t>(c.num_kv_heads) * c.head_dim;

  m->rope_.neox = c.rope_neox;  // false: GGUF Llama weights are permuted for adjacent pairs
  std::vector<float> freq_factors;
  if (m->file_.find_tensor("rope_freqs.weight") != nullptr) {
    freq_factors = m->weight("rope_freqs.weight", {c.rope_dims / 2});
  }
  m->rope_.inv_freq = c.rope_inv_freq(freq_factors);

  m->token_embd_ = m->weight("token_embd.weight", {c.vocab_size, d});
  m->output_norm_ = m->weight("output_norm.weight", {d});
  if (m->file_.find_tensor("output.weight") != nullptr) {
    m->output_ = m->weight("output.weight", {c.vocab_size, d});
  }
  m->layers_.resize(c.num_layers);
  for (int i = 0; i < c.num_layers; ++i) {
    const std::string p = "blk." + std::to_string(i) + ".";
    Layer& l = m->layers_[i];
    auto read = [&](const std::string& name, const std::vector<int64_t>& shape, float* dst) {
      m->weight_into(p + name, shape, dst);
    };
    l.attn_norm = m->weight(p + "attn_norm.weight", {d});
    stack(&l.qkv_w,
          {{"attn_q.weight", {q_rows, d}},
           {"attn_k.weight", {kv_rows, d}},
           {"attn_v.weight", {kv_rows, d}}},
          read);
    stack(&l.o_w, {{"attn_output.weight", {d, q_rows}}}, read);
    l.ffn_norm = m->weight(p + "ffn_norm.weight", {d});
    stack(&l.gate_up_w, {{"ffn_gate.weight", {ff, d}}, {"ffn_up.weight", {ff, d}}}, read);
    stack(&l.down_w, {{"ffn_down.weight", {d, ff}}}, read);
  }
  return m;
}

std::unique_ptr<LlamaModel> LlamaModel::load_hf(const std::string& dir) {
  auto m = std::unique_ptr<LlamaModel>(new LlamaModel());
  m->config_ = LlamaConfig::from_hf((fs::path(dir) / "config.json").string());
  const LlamaConfig& c = m->config_;
  const HfWeights weights(dir);
  m->weight_files_ = weights.paths();
  const int64_t d = c.hidden_size, ff = c.intermediate_size;
  const int64_t q_rows = static_cast<int64_t>(c.num_heads) * c.head_dim;
  const int64_t kv_rows = static_cast<int64_t>(c.num_kv_heads) * c.head_dim;
  m->rope_.neox = c.rope_neox;
  m->rope_.inv_freq = c.rope_inv_freq();

  m->token_embd_ = weights.get("model.embed_tokens.weight", {c.vocab_size, d}, dir);
  m->output_norm_ = weights.get("model.norm.weight", {d}, dir);
  // transformers ties the head to the embedding when asked to, whatever the files hold.
  if (!c.tie_word_embeddings && weights.has("lm_head.weight")) {
    m->output_ = weights.get("lm_head.weight", {c.vocab_size, d}, dir);
  }
  m->layers_.resize(c.num_layers);
  for (int i = 0; i < c.num_layers; ++i) {
    const std::string p = "model.layers." + std::to_string(i) + ".";
    Layer& l = m->layers_[i];
    auto read = [&](const std::string& name, const std::vector<int64_t>& shape, float* dst) {
      weights.get_into(p + name, shape, dir, dst);
    };
    l.attn_norm = weights.get(p + "input_layernorm.weight", {d}, dir);
    stack(&l.qkv_w,
          {{"self_attn.q_proj.weight", {q_rows, d}},
           {"self_attn.k_proj.weight", {kv_rows, d}},
           {"self_attn.v_proj.weight", {kv_rows, d}}},
          read);
    if (c.qkv_bias) {
      stack(&l.qkv_b,
            {{"self_attn.q_proj.bias", {q_rows}},
             {"self_attn.k_proj.bias", {kv_rows}},
             {"self_attn.v_proj.bias", {kv_rows}}},
            read);
    }
    stack(&l.o_w, {{"self_attn.o_proj.weight", {d, q_rows}}}, read);
    l.ffn_norm = weights.get(p + "post_attention_layernorm.weight", {d}, dir);
    stack(&l.gate_up_w, {{"mlp.gate_proj.weight", {ff, d}}, {"mlp.up_proj.weight", {ff, d}}}, read);
    stack(&l.down_w, {{"mlp.down_proj.weight", {d, ff}}}, read);
  }
  return m;
}

const std::vector<float>& LlamaModel::forward(const std::vector<std::vector<int32_t>>& batch,
                                              LlamaWorkspace& ws, AttentionHook* hook,
                                              const KvCache* past, KvCache* save,
                                              Rows rows_out) const {
  const LlamaConfig& c = config_;
  const int d = c.hidden_size, ff = c.intermediate_size;
  const cpu::AttentionShape shape{c.num_heads, c.num_kv_heads, c.head_dim, true};
  const int width = shape.qkv_width();
  const int q_width = c.num_heads * c.head_dim;
  const int kv_width = c.num_kv_heads * c.head_dim;
  const int past_len = past != nullptr ? past->length : 0;
  if (past != nullptr && hook != nullptr) {
    core::throw_internal("LlamaModel::forward: attention maps cannot be combined with a prefix");
  }
  if (past != nullptr && (past->k.size() != layers_.size() || past->v.size() != layers_.size())) {
    core::throw_internal("LlamaModel::forward: the prefix cache is of another model");
  }
  if (save != nullptr && batch.size() != 1) {
    core::throw_internal("LlamaModel::forward: keys and values are saved for one sequence only");
  }
  std::vector<cpu::AttentionSeq> seqs(batch.size());
  int total = 0;
  for (size_t s = 0; s < batch.size(); ++s) {
    const int n = static_cast<int>(batch[s].size());
    if (n == 0) core::throw_bad_input("sequence ", s, " of the batch is empty");
    if (past_len + n > c.context_length) {
      core::throw_bad_input("sequence ", s, " has ", n, " tokens",
                            past_len > 0 ? " after a prefix of " + std::to_string(past_len) : "",
                            "; the model's context is ", c.context_length, " tokens");
    }
    for (int32_t id : batch[s]) {
      if (id < 0 || id >= c.vocab_size) {
        core::throw_bad_input("token id ", id, " is outside the vocabulary (", c.vocab_size, ")");
      }
    }
    seqs[s].offset = total;
    seqs[s].length = n;
    seqs[s].past_length = past_len;
    total += n;
  }
  const size_t rows = static_cast<size_t>(total);
  ws.hidden.resize(rows * d);
  ws.normed.resize(rows * d);
  ws.qkv.resize(rows * width);
  ws.ctx.resize(rows * q_width);
  ws.gate_up.resize(rows * 2 * ff);
  ws.act.resize(rows * ff);

  PhaseTimer timer(ws.profile, ws.timings);
  if (ws.profile) {
    double attention_flops = 0;
    for (const auto& s : seqs) {
      attention_flops += 4.0 * c.head_dim * c.num_heads *
                         (static_cast<double>(s.length) * (s.length + 1) / 2 +
                          static_cast<double>(past_len) * s.length);
    }
    const double after_attention = 2.0 * (1.0 * q_width * d + 3.0 * d * ff);
    ws.timings.gemm_flops +=
        after_attention * (static_cast<double>(total) * (c.num_layers - 1) +
                           (rows_out == Rows::kLast ? static_cast<double>(batch.size()) : total));
    ws.timings.attention_flops += attention_flops * c.num_layers;
  }
  for (size_t s = 0; s < batch.size(); ++s) {
    embed_tokens(batch[s], ws.hidden.data() + static_cast<size_t>(seqs[s].offset) * d);
  }
  if (save != nullptr) {
    save->k.resize(c.num_layers);
    save->v.resize(c.num_layers);
  }
  int longest = 0;
  for (const auto& s : seqs) longest = std::max(longest, s.length);
  std::vector<float> rope_cos, rope_sin;
  rope_.angles(past_len, longest, &rope_cos, &rope_sin);

  for (int li = 0; li < c.num_layers; ++li) {
    const Layer& l = layers_[li];
    const std::vector<char> v_only = ask_attention_hook(hook, li, c.num_heads, seqs);
    for (cpu::AttentionSeq& seq : seqs) {
      seq.past_k = past != nullptr ? past->k[li].data() : nullptr;
      seq.past_v = past != nullptr ? past->v[li].data() : nullptr;
    }
    cpu::rmsnorm(ws.hidden.data(), l.attn_norm.data(), c.rms_norm_eps, ws.normed.data(), total, d);
    timer.mark(&ForwardProfile::other_seconds);
    // One projection per run of sequences that agree on V-only: [Q K V] for misses, V for hits.
    double block = 0;
    for_each_projection_run(v_only, [&](size_t s0, size_t s1) {
      const int first = seqs[s0].offset;
      const int run_rows = seqs[s1 - 1].offset + seqs[s1 - 1].length - first;
      const int skip = v_only[s0] ? q_width + kv_width : 0;
      float* qkv = ws.qkv.data() + static_cast<size_t>(first) * width;
      cpu::linear(ws.normed.data() + static_cast<size_t>(first) * d,
                  l.qkv_w.data() + static_cast<size_t>(skip) * d, qkv + skip, run_rows,
                  width - skip, d, false, width);
      if (ws.profile) ws.timings.gemm_flops += 2.0 * run_rows * (width - skip) * d;
      if (!l.qkv_b.empty()) {
        for (int r = 0; r < run_rows; ++r) {
          float* row = qkv + static_cast<size_t>(r) * width;
          for (int k = skip; k < width; ++k) row[k] += l.qkv_b[k];
        }
      }
      block += timer.mark(&ForwardProfile::qkv_seconds);
      if (!v_only[s0]) {
        for (size_t s = s0; s < s1; ++s) {
          float* seq_qkv = ws.qkv.data() + static_cast<size_t>(seqs[s].offset) * width;
          cpu::apply_rope(seq_qkv, width, seqs[s].length, c.num_heads, c.head_dim, rope_,
                          rope_cos.data(), rope_sin.data());
          cpu::apply_rope(seq_qkv + q_width, width, seqs[s].length, c.num_kv_heads, c.head_dim,
                          rope_, rope_cos.data(), rope_sin.data());
        }
      }
      block += timer.mark(&ForwardProfile::other_seconds);
    });
    if (save != nullptr) {
      std::vector<float>& k = save->k[li];
      std::vector<float>& v = save->v[li];
      for (int i = 0; i < seqs[0].length; ++i) {
        const float* row = ws.qkv.data() + static_cast<size_t>(i) * width;
        k.insert(k.end(), row + q_width, row + q_width + kv_width);
        v.insert(v.end(), row + q_width + kv_width, row + width);
      }
    }
    cpu::attention(ws.qkv.data(), ws.ctx.data(), seqs.data(), static_cast<int>(seqs.size()), shape);
    block += timer.mark(&ForwardProfile::attention_seconds);
    if (ws.profile) {
      ws.timings.layer_attention_seconds.resize(c.num_layers);
      ws.timings.layer_attention_seconds[li] += block;
    }
    // The last layer past attention on each sequence's last row alone, where only those are
    // wanted: moved to the front, in order (row s's source, its last token, is at or after s).
    int layer_rows = total;
    if (rows_out == Rows::kLast && li == c.num_layers - 1) {
      layer_rows = static_cast<int>(seqs.size());
      for (int s = 0; s < layer_rows; ++s) {
        const size_t src = static_cast<size_t>(seqs[s].offset) + seqs[s].length - 1;
        std::memmove(ws.ctx.data() + static_cast<size_t>(s) * q_width,
                     ws.ctx.data() + src * q_width, q_width * sizeof(float));
        std::memmove(ws.hidden.data() + static_cast<size_t>(s) * d, ws.hidden.data() + src * d,
                     d * sizeof(float));
      }
    }
    cpu::linear(ws.ctx.data(), l.o_w.data(), ws.hidden.data(), layer_rows, d, q_width, true);
    timer.mark(&ForwardProfile::gemm_seconds);
    cpu::rmsnorm(ws.hidden.data(), l.ffn_norm.data(), c.rms_norm_eps, ws.normed.data(), layer_rows,
                 d);
    timer.mark(&ForwardProfile::other_seconds);
    cpu::linear(ws.normed.data(), l.gate_up_w.data(), ws.gate_up.data(), layer_rows, 2 * ff, d);
    timer.mark(&ForwardProfile::gemm_seconds);
    cpu::silu_mul(ws.gate_up.data(), ws.act.data(), layer_rows, ff);
    timer.mark(&ForwardProfile::other_seconds);
    cpu::linear(ws.act.data(), l.down_w.data(), ws.hidden.data(), layer_rows, d, ff, true);
    timer.mark(&ForwardProfile::gemm_seconds);
  }
  if (save != nullptr) save->length += seqs[0].length;
  const int out_rows = rows_out == Rows::kLast ? static_cast<int>(seqs.size()) : total;
  ws.hidden.resize(static_cast<size_t>(out_rows) * d);
  cpu::rmsnorm(ws.hidden.data(), output_norm_.data(), c.rms_norm_eps, ws.hidden.data(), out_rows,
               d);
  timer.mark(&ForwardProfile::other_seconds);
  return ws.hidden;
}

void LlamaModel::embed_tokens(const std::vector<int32_t>& ids, float* out) const {
  const int d = config_.hidden_size;
  for (size_t i = 0; i < ids.size(); ++i) {
    std::memcpy(out + i * d, token_embd_.data() + static_cast<size_t>(ids[i]) * d,
                d * sizeof(float));
  }
}

void LlamaModel::logits(const float* hidden, int rows, float* out) const {
  const std::vector<float>& head = output_.empty() ? token_embd_ : output_;
  cpu::linear(hidden, head.data(), out, rows, config_.vocab_size, config_.hidden_size);
}

}  // namespace attncache
