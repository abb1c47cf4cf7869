#include "attncache/model/bert.h"

#include <cstring>
#include <filesystem>

#include "attncache/kernels/cpu/attention.h"
#include "attncache/kernels/cpu/ops.h"
#include "core/error.h"

namespace attncache {
BertModel::Param BertModel::param(const std::string& name, std::vector<int64_t> shape) const {
  const TensorView& t = file_.get_float(prefix_ + name, shape);
  Param p;
  if (t.dtype == core::DType::kF32 && reinterpret_cast<uintptr_t>(t.data) % alignof(float) == 0) {
    p.data = reinterpret_cast<const float*>(t.data);
  } else {
    p.owned.resize(static_cast<size_t>(t.numel()));
    core::convert_to_f32(t.dtype, t.data, p.owned.size(), p.owned.data());
    p.data = p.owned.data();
  }
  return p;
}

void BertModel::append(const std::string& name, std::vector<int64_t> shape,
                       std::vector<float>* out) const {
  Param p = param(name, std::move(shape));
  out->insert(out->end(), p.data, p.data + file_.get(prefix_ + name).numel());
}

std::unique_ptr<BertModel> BertModel::load(const ModelConfig& config) {
  auto model = std::unique_ptr<BertModel>(new BertModel());
  model->config_ = config.bert;
  std::string path = (std::filesystem::path(config.dir) / "model.safetensors").string();
  model->file_ = SafeTensors::open(path);
  if (model->file_.find("embeddings.word_embeddings.weight") == nullptr &&
      model->file_.find("bert.embeddings.word_embeddings.weight") != nullptr) {
    model->prefix_ = "bert.";
  }
  const BertConfig& c = model->config_;
  const int64_t d = c.hidden_size;
  const int64_t ff = c.intermediate_size;
  model->word_emb_ = model->param("embeddings.word_embeddings.weight", {c.vocab_size, d});
  model->pos_emb_ =
      model->param("embeddings.position_embeddings.weight", {c.max_position_embeddings, d});
  model->type_emb_ =
      model->param("embeddings.token_type_embeddings.weight", {c.type_vocab_size, d});
  model->emb_ln_g_ = model->param("embeddings.LayerNorm.weight", {d});
  model->emb_ln_b_ = model->param("embeddings.LayerNorm.bias", {d});
  model->layers_.resize(c.num_layers);
  for (int i = 0; i < c.num_layers; ++i) {
    const std::string p = "encoder.layer." + std::to_string(i) + ".";
    Layer& l = model->layers_[i];
    for (const char* name : {"query", "key", "value"}) {
      model->append(p + "attention.self." + name + ".weight", {d, d}, &l.qkv_w);
      model->append(p + "attention.self." + name + ".bias", {d}, &l.qkv_b);
    }
    l.out_w = model->param(p + "attention.output.dense.weight", {d, d});
    l.out_b = model->param(p + "attention.output.dense.bias", {d});
    l.ln1_g = model->param(p + "attention.output.LayerNorm.weight", {d});
    l.ln1_b = model->param(p + "attention.output.LayerNorm.bias", {d});
    l.inter_w = model->param(p + "intermediate.dense.weight", {ff, d});
    l.inter_b = model->param(p + "intermediate.dense.bias", {ff});
    l.ffn_out_w = model->param(p + "output.dense.weight", {d, ff});
    l.ffn_out_b = model->param(p + "output.dense.bias", {d});
    l.ln2_g = model->param(p + "output.LayerNorm.weight", {d});
    l.ln2_b = model->param(p + "output.LayerNorm.bias", {d});
  }
  return model;
}

const std::vector<float>& BertModel::forward(const std::vector<std::vector<int32_t>>& batch,
                                             BertWorkspace& ws, AttentionHook* hook) const {
  const BertConfig& c = config_;
  const int d = c.hidden_size;
  const int ff = c.intermediate_size;
  std::vector<cpu::AttentionSeq> seqs(batch.size());
  int total = 0;
  for (size_t s = 0; s < batch.size(); ++s) {
    const int n = static_cast<int>(batch[s].size());
    if (n == 0) core::throw_bad_input("sequence ", s, " of the batch is empty");
    if (n > c.max_position_embeddings) {
      core::throw_bad_input("sequence ", s, " has ", n, " tokens; the model takes at most ",
                            c.max_position_embeddings);
    }
    for (int32_t id : batch[s]) {
      if (id < 0 || id >= c.vocab_size) {
        core::throw_bad_input("token id ", id, " is outside the vocabulary (", c.vocab_size, ")");
      }
    }
    seqs[s].offset = total;
    seqs[s].length = n;
    total += n;
  }
  const size_t rows = static_cast<size_t>(total);
  ws.hidden.resize(rows * d);
  ws.qkv.resize(rows * 3 * d);
  ws.ctx.resize(rows * d);
  ws.tmp.resize(rows * d);
  ws.inter.resize(rows * ff);

  PhaseTimer timer(ws.profile, ws.timings);
  if (ws.profile) {
    double attention_flops = 0;
    for (const auto& s : seqs) attention_flops += 4.0 * s.length * s.length * d;
    // O projection and MLP; the Q/K/V projections are counted per run below (V only for hits).
    ws.timings.gemm_flops += 2.0 * total * (1.0 * d * d + 2.0 * d * ff) * c.num_layers;
    ws.timings.attention_flops += attention_flops * c.num_layers;
  }
  for (size_t s = 0; s < batch.size(); ++s) {
    embed_tokens(batch[s], ws.hidden.data() + static_cast<size_t>(seqs[s].offset) * d);
  }
  for (int li = 0; li < c.num_layers; ++li) {
    const Layer& l = layers_[li];
    const std::vector<char> v_only = ask_attention_hook(hook, li, c.num_heads, seqs);
    timer.mark(&ForwardProfile::other_seconds);
    // One projection per run of sequences that agree on V-only: [Q K V] for misses, V for hits.
    for_each_projection_run(v_only, [&](size_t s0, size_t s1) {
      const int first = seqs[s0].offset;
      const int run_rows = seqs[s1 - 1].offset + seqs[s1 - 1].length - first;
      const int skip = v_only[s0] ? 2 * d : 0;
      cpu::linear(ws.hidden.data() + static_cast<size_t>(first) * d,
                  l.qkv_w.data() + static_cast<size_t>(skip) * d,
                  ws.qkv.data() + static_cast<size_t>(first) * 3 * d + skip, run_rows, 3 * d - skip,
                  d, false, 3 * d);
      if (ws.profile) ws.timings.gemm_flops += 2.0 * run_rows * (3 * d - skip) * d;
      for (int r = first; r < first + run_rows; ++r) {
        float* row = ws.qkv.data() + static_cast<size_t>(r) * 3 * d;
        for (int k = skip; k < 3 * d; ++k) row[k] += l.qkv_b[k];
      }
    });
    double block = timer.mark(&ForwardProfile::qkv_seconds);
    timer.mark(&ForwardProfile::other_seconds);
    cpu::attention(ws.qkv.data(), ws.ctx.data(), seqs.data(), static_cast<int>(seqs.size()),
                   c.num_heads, c.head_dim());
    block += timer.mark(&ForwardProfile::attention_seconds);
    if (ws.profile) {
      ws.timings.layer_attention_seconds.resize(c.num_layers);
      ws.timings.layer_attention_seconds[li] += block;
    }
    cpu::linear(ws.ctx.data(), l.out_w.data, ws.tmp.data(), total, d, d);
    timer.mark(&ForwardProfile::gemm_seconds);
    cpu::bias_residual_layernorm(ws.tmp.data(), l.out_b.data, ws.hidden.data(), l.ln1_g.data,
                                 l.ln1_b.data, c.layer_norm_eps, ws.hidden.data(), total, d);
    timer.mark(&ForwardProfile::other_seconds);
    cpu::linear(ws.hidden.data(), l.inter_w.data, ws.inter.data(), total, ff, d);
    timer.mark(&ForwardProfile::gemm_seconds);
    cpu::bias_gelu(ws.inter.data(), l.inter_b.data, total, ff);
    timer.mark(&ForwardProfile::other_seconds);
    cpu::linear(ws.inter.data(), l.ffn_out_w.data, ws.tmp.data(), total, d, ff);
    timer.mark(&ForwardProfile::gemm_seconds);
    cpu::bias_residual_layernorm(ws.tmp.data(), l.ffn_out_b.data, ws.hidden.data(), l.ln2_g.data,
                                 l.ln2_b.data, c.layer_norm_eps, ws.hidden.data(), total, d);
  }
  timer.mark(&ForwardProfile::other_seconds);
  return ws.hidden;
}

void BertModel::embed_tokens(const std::vector<int32_t>& ids, float* out) const {
  const BertConfig& c = config_;
  const int d = c.hidden_size;
  for (size_t i = 0; i < ids.size(); ++i) {
    float* row = out + i * d;
    const float* w = word_emb_.data + static_cast<size_t>(ids[i]) * d;
    const float* p = pos_emb_.data + i * d;
    for (int k = 0; k < d; ++k) row[k] = w[k] + p[k] + type_emb_.data[k];
  }
  cpu::layernorm(out, emb_ln_g_.data, emb_ln_b_.data, c.layer_norm_eps,
                 static_cast<int>(ids.size()), d);
}

}  // namespace attncache
