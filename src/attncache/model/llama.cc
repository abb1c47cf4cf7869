#include "attncache/model/llama.h"

#include <algorithm>
#include <cmath>
#include <cstring>

#include "attncache/kernels/cpu/attention.h"
#include "core/error.h"

namespace attncache {
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

size_t KvCache::bytes() const {
  size_t n = 0;
  for (const auto& layer : k) n += layer.size() * sizeof(float);
  for (const auto& layer : v) n += layer.size() * sizeof(float);
  return n;
}

std::vector<float> LlamaModel::weight(const std::string& name, std::vector<int64_t> shape) const {
  const GgufTensor& t = file_.tensor(name);
  if (t.shape() != shape) {
    GgufTensor expected;
    expected.dims.assign(shape.rbegin(), shape.rend());
    core::throw_bad_input(file_.path(), ": tensor '", name, "' has dims ", t.dims_string(),
                          " but the metadata implies ", expected.dims_string());
  }
  return file_.dequantize(t);
}

std::unique_ptr<LlamaModel> LlamaModel::load(const std::string& gguf_path) {
  auto m = std::unique_ptr<LlamaModel>(new LlamaModel());
  m->file_ = GgufFile::open(gguf_path);
  m->config_ = LlamaConfig::from_gguf(m->file_);
  const LlamaConfig& c = m->config_;
  const int64_t d = c.hidden_size, ff = c.intermediate_size;
  const int64_t q_rows = static_cast<int64_t>(c.num_heads) * c.head_dim;
  const int64_t kv_rows = static_cast<int64_t>(c.num_kv_heads) * c.head_dim;

  m->rope_.neox = false;  // GGUF Llama weights are permuted for llama.cpp's adjacent pairs
  m->rope_.inv_freq.resize(c.rope_dims / 2);
  std::vector<float> freq_factors;
  if (m->file_.find_tensor("rope_freqs.weight") != nullptr) {
    freq_factors = m->weight("rope_freqs.weight", {c.rope_dims / 2});
  }
  for (int i = 0; i < c.rope_dims / 2; ++i) {
    // As Hugging Face computes it: 1 / base^(2i / dims) in fp32.
    float f = 1.0f / std::pow(c.rope_base, static_cast<float>(2 * i) / c.rope_dims);
    if (!freq_factors.empty()) f /= freq_factors[i];
    m->rope_.inv_freq[i] = f / c.rope_linear_scale;
  }

  m->token_embd_ = m->weight("token_embd.weight", {c.vocab_size, d});
  m->output_norm_ = m->weight("output_norm.weight", {d});
  if (m->file_.find_tensor("output.weight") != nullptr) {
    m->output_ = m->weight("output.weight", {c.vocab_size, d});
  }
  m->layers_.resize(c.num_layers);
  for (int i = 0; i < c.num_layers; ++i) {
    const std::string p = "blk." + std::to_string(i) + ".";
    Layer& l = m->layers_[i];
    auto append = [&](std::vector<float>* out, const std::string& name, int64_t rows) {
      std::vector<float> w = m->weight(p + name, {rows, d});
      out->insert(out->end(), w.begin(), w.end());
    };
    l.attn_norm = m->weight(p + "attn_norm.weight", {d});
    append(&l.qkv_w, "attn_q.weight", q_rows);
    append(&l.qkv_w, "attn_k.weight", kv_rows);
    append(&l.qkv_w, "attn_v.weight", kv_rows);
    l.o_w = m->weight(p + "attn_output.weight", {d, q_rows});
    l.ffn_norm = m->weight(p + "ffn_norm.weight", {d});
    append(&l.gate_up_w, "ffn_gate.weight", ff);
    append(&l.gate_up_w, "ffn_up.weight", ff);
    l.down_w = m->weight(p + "ffn_down.weight", {d, ff});
  }
  return m;
}

const std::vector<float>& LlamaModel::forward(const std::vector<std::vector<int32_t>>& batch,
                                              LlamaWorkspace& ws, AttentionHook* hook,
                                              const KvCache* past, KvCache* save) const {
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
    ws.timings.gemm_flops += 2.0 * total * (1.0 * q_width * d + 3.0 * d * ff) * c.num_layers;
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
    cpu::linear(ws.ctx.data(), l.o_w.data(), ws.hidden.data(), total, d, q_width, true);
    timer.mark(&ForwardProfile::gemm_seconds);
    cpu::rmsnorm(ws.hidden.data(), l.ffn_norm.data(), c.rms_norm_eps, ws.normed.data(), total, d);
    timer.mark(&ForwardProfile::other_seconds);
    cpu::linear(ws.normed.data(), l.gate_up_w.data(), ws.gate_up.data(), total, 2 * ff, d);
    timer.mark(&ForwardProfile::gemm_seconds);
    cpu::silu_mul(ws.gate_up.data(), ws.act.data(), total, ff);
    timer.mark(&ForwardProfile::other_seconds);
    cpu::linear(ws.act.data(), l.down_w.data(), ws.hidden.data(), total, d, ff, true);
    timer.mark(&ForwardProfile::gemm_seconds);
  }
  if (save != nullptr) save->length += seqs[0].length;
  cpu::rmsnorm(ws.hidden.data(), output_norm_.data(), c.rms_norm_eps, ws.hidden.data(), total, d);
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
