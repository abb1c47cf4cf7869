// Decoders loaded from Hugging Face directories: the tiny Llama (rope llama3; linear rope, head_dim
// ≠ hidden / heads, untied, sharded bf16) and Qwen2 (q/k/v biases, fp16) models of
// tests/data/llama_hf against transformers' goldens (make_goldens.py there); the real SmolLM2 as
// transformers converts it from the GGUF (scripts/reference/gguf_to_hf.py; skipped when
// models/SmolLM2-135M-Instruct-hf is absent) against the GGUF path; and the directories the loader
// refuses.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <functional>
#include <nlohmann/json.hpp>

#include "attncache/decoder.h"
#include "attncache/model/llama.h"
#include "attncache/model/safetensors.h"
#include "attncache/prefill_model.h"
#include "core/error.h"
#include "core/json_file.h"
#include "support/safetensors_writer.h"
#include "support/temp_dir.h"
#include "support/test_paths.h"

namespace attncache {
namespace {

namespace fs = std::filesystem;

std::string data(const std::string& name) {
  return testing_paths::data_dir() + "/llama_hf/" + name;
}

// log Σ exp(row).
double log_sum_exp(const float* row, int n) {
  const float mx = *std::max_element(row, row + n);
  double sum = 0;
  for (int i = 0; i < n; ++i) sum += std::exp(static_cast<double>(row[i]) - mx);
  return mx + std::log(sum);
}

struct Parity {
  int positions = 0, disagreements = 0;
  double max_log_prob_delta = 0, max_logit_delta = 0;
};

// Runs every golden prompt of `name` in one batch: log p(next id) at every position, top-1 where
// the reference's margin is clear, and the last positions' full logit rows.
Parity parity(const LlamaModel& m, const std::string& name) {
  const nlohmann::json golden = core::read_json_file(data(name + ".goldens.json"));
  const auto& prompts = golden["prompts"];
  const int vocab = m.config().vocab_size;
  std::vector<std::vector<int32_t>> batch;
  size_t tokens = 0;
  for (const auto& p : prompts) {
    batch.push_back(p["ids"].get<std::vector<int32_t>>());
    tokens += batch.back().size();
  }
  LlamaWorkspace ws;
  const std::vector<float>& hidden = m.forward(batch, ws);
  std::vector<float> logits(tokens * vocab);
  m.logits(hidden.data(), static_cast<int>(tokens), logits.data());
  std::vector<float> last_rows(prompts.size() * vocab);
  std::ifstream in(data(name + ".logits.f32"), std::ios::binary);
  in.read(reinterpret_cast<char*>(last_rows.data()), last_rows.size() * sizeof(float));
  EXPECT_TRUE(in.good()) << name << ".logits.f32";
  Parity r;
  size_t row0 = 0;
  for (size_t p = 0; p < prompts.size(); ++p) {
    const auto& ids = batch[p];
    const auto argmax = prompts[p]["argmax"].get<std::vector<int>>();
    const auto margin = prompts[p]["margin"].get<std::vector<double>>();
    const auto log_probs = prompts[p]["log_probs"].get<std::vector<double>>();
    for (size_t i = 0; i < ids.size(); ++i) {
      const float* row = logits.data() + (row0 + i) * vocab;
      const int got = static_cast<int>(std::max_element(row, row + vocab) - row);
      ++r.positions;
      if (got != argmax[i] && margin[i] > 1e-4) {
        ++r.disagreements;
        ADD_FAILURE() << name << " " << prompts[p]["source"] << " position " << i << ": " << got
                      << " vs " << argmax[i] << " (reference margin " << margin[i] << ")";
      }
      if (i + 1 < ids.size()) {
        const double lp = row[ids[i + 1]] - log_sum_exp(row, vocab);
        r.max_log_prob_delta = std::max(r.max_log_prob_delta, std::fabs(lp - log_probs[i]));
      }
    }
    const float* last = logits.data() + (row0 + ids.size() - 1) * vocab;
    for (int v = 0; v < vocab; ++v) {
      r.max_logit_delta = std::max(
          r.max_logit_delta, static_cast<double>(std::fabs(last[v] - last_rows[p * vocab + v])));
    }
    row0 += ids.size();
  }
  std::cout << "[ parity ] " << name << ": " << r.positions << " positions, " << r.disagreements
            << " top-1 disagreements, max |delta log p(next)| " << r.max_log_prob_delta
            << ", max |delta logit| (full last rows) " << r.max_logit_delta << "\n";
  return r;
}

TEST(LlamaHf, ReadsTheConfigOfEachForm) {
  const auto llama3 = LlamaModel::load(data("llama3"));
  const LlamaConfig& a = llama3->config();
  EXPECT_EQ(a.architecture, "llama");
  EXPECT_EQ(a.hidden_size, 64);
  EXPECT_EQ(a.num_layers, 2);
  EXPECT_EQ(a.num_heads, 4);
  EXPECT_EQ(a.num_kv_heads, 2);
  EXPECT_EQ(a.head_dim, 16);
  EXPECT_EQ(a.intermediate_size, 128);
  EXPECT_EQ(a.vocab_size, 768);
  EXPECT_EQ(a.context_length, 256);
  EXPECT_FLOAT_EQ(a.rms_norm_eps, 1e-5f);
  EXPECT_TRUE(a.rope_neox);
  EXPECT_FALSE(a.qkv_bias);
  EXPECT_TRUE(a.tie_word_embeddings);
  EXPECT_EQ(a.rope_llama3.factor, 8);
  EXPECT_EQ(a.rope_llama3.original_context, 64);
  EXPECT_EQ(llama3->weight_files(),
            std::vector<std::string>{data("llama3") + "/model.safetensors"});
  EXPECT_FALSE(llama3->file().mapped().data());  // no GGUF behind it

  const LlamaConfig b = LlamaConfig::from_hf(data("smollm/config.json"));
  EXPECT_EQ(b.head_dim, 32);  // not hidden / heads = 16
  EXPECT_EQ(b.num_kv_heads, 1);
  EXPECT_FLOAT_EQ(b.rope_base, 100000.0f);  // top-level rope_theta, transformers 4's form
  EXPECT_FLOAT_EQ(b.rope_linear_scale, 2.0f);
  EXPECT_FALSE(b.tie_word_embeddings);

  const LlamaConfig c = LlamaConfig::from_hf(data("qwen2/config.json"));
  EXPECT_EQ(c.architecture, "qwen2");
  EXPECT_TRUE(c.qkv_bias);
  EXPECT_FLOAT_EQ(c.rope_base, 1e6f);
  EXPECT_EQ(c.rope_llama3.factor, 0);
  EXPECT_EQ(c.rope_linear_scale, 1.0f);
}

// The rotary frequencies equal transformers' (llama3: the smoothed middle band included).
TEST(LlamaHf, RotaryFrequenciesMatchTransformers) {
  for (const char* name : {"llama3", "smollm", "qwen2"}) {
    const LlamaConfig c = LlamaConfig::from_hf(data(std::string(name) + "/config.json"));
    const auto want = core::read_json_file(data(std::string(name) + ".goldens.json"))["inv_freq"]
                          .get<std::vector<float>>();
    const std::vector<float> got = c.rope_inv_freq();
    ASSERT_EQ(got.size(), want.size()) << name;
    for (size_t i = 0; i < got.size(); ++i) EXPECT_FLOAT_EQ(got[i], want[i]) << name << " " << i;
  }
}

TEST(LlamaHf, TinyModelsMatchTransformers) {
  for (const char* name : {"llama3", "smollm", "qwen2"}) {
    const auto m = LlamaModel::load(data(name));
    const Parity r = parity(*m, name);
    EXPECT_EQ(r.disagreements, 0) << name;
    EXPECT_LT(r.max_log_prob_delta, 1e-4) << name;
    EXPECT_LT(r.max_logit_delta, 1e-4) << name;
  }
  // The sharded directory read every shard.
  EXPECT_EQ(LlamaModel::load(data("smollm"))->weight_files().size(), 4u);
}

// Rows::kLast runs the last layer past attention on each sequence's last row only. Its rows give
// transformers' last-token logits, and, for a batch of short sequences (length-1 ones next to each
// other, where a row moved to the front could overwrite one not yet moved), the every-token
// output's last rows.
TEST(LlamaHf, LastRowsAloneGiveTheLastTokensOutput) {
  for (const char* name : {"llama3", "smollm", "qwen2"}) {
    const auto m = LlamaModel::load(data(name));
    const int d = m->config().hidden_size, vocab = m->config().vocab_size;
    const nlohmann::json golden = core::read_json_file(data(std::string(name) + ".goldens.json"));
    std::vector<std::vector<int32_t>> batch;
    for (const auto& p : golden["prompts"]) batch.push_back(p["ids"].get<std::vector<int32_t>>());
    LlamaWorkspace ws;
    const std::vector<float> last =
        m->forward(batch, ws, nullptr, nullptr, nullptr, LlamaModel::Rows::kLast);
    ASSERT_EQ(last.size(), batch.size() * d) << name;
    std::vector<float> logits(batch.size() * vocab), want(batch.size() * vocab);
    m->logits(last.data(), static_cast<int>(batch.size()), logits.data());
    std::ifstream in(data(std::string(name) + ".logits.f32"), std::ios::binary);
    in.read(reinterpret_cast<char*>(want.data()), want.size() * sizeof(float));
    ASSERT_TRUE(in.good()) << name;
    for (size_t i = 0; i < want.size(); ++i) ASSERT_NEAR(logits[i], want[i], 1e-4) << name << i;

    std::vector<std::vector<int32_t>> short_batch;
    for (const int n : {3, 1, 1, 2, 1}) {
      short_batch.emplace_back(batch[0].begin() + 2, batch[0].begin() + 2 + n);
    }
    const std::vector<float> every = m->forward(short_batch, ws);
    const std::vector<float> short_last =
        m->forward(short_batch, ws, nullptr, nullptr, nullptr, LlamaModel::Rows::kLast);
    ASSERT_EQ(short_last.size(), short_batch.size() * d) << name;
    size_t end = 0;
    for (size_t s = 0; s < short_batch.size(); ++s) {
      end += short_batch[s].size();
      for (int i = 0; i < d; ++i) {
        ASSERT_NEAR(short_last[s * d + i], every[(end - 1) * d + i], 1e-5) << name << " " << s;
      }
    }
  }
}

TEST(LlamaHf, DecoderTokenizesAndScoresAsTransformers) {
  for (const char* name : {"llama3", "smollm", "qwen2"}) {
    std::unique_ptr<Decoder> d = Decoder::load(data(name));
    const nlohmann::json golden = core::read_json_file(data(std::string(name) + ".goldens.json"));
    std::vector<std::string> lines;
    {
      std::ifstream in(testing_paths::data_dir() + "/corpus.txt");
      for (std::string line; std::getline(in, line);) lines.push_back(line);
    }
    for (const auto& p : golden["prompts"]) {
      const std::string source = p["source"];
      if (source.rfind("corpus line ", 0) != 0) continue;  // the long prompt joins many lines
      const std::string& text = lines.at(std::stoul(source.substr(12)));
      const auto want = p["ids"].get<std::vector<int32_t>>();
      EXPECT_EQ(d->tokenize(text, 64).ids, want) << name << " " << source;
    }
    const auto& p = golden["prompts"][0];
    const std::vector<double> got = d->token_log_probs(p["ids"].get<std::vector<int32_t>>());
    const auto want = p["log_probs"].get<std::vector<double>>();
    ASSERT_EQ(got.size(), want.size());
    for (size_t i = 0; i < got.size(); ++i) EXPECT_NEAR(got[i], want[i], 1e-4) << name << " " << i;
    EXPECT_EQ(d->fingerprint()["architecture"],
              LlamaConfig::from_hf(data(std::string(name) + "/config.json")).architecture);
  }
  // load_prefill_model tells a decoder directory from an embedder one by model_type.
  std::unique_ptr<PrefillModel> m = load_prefill_model(data("qwen2"));
  EXPECT_TRUE(m->causal());
  EXPECT_EQ(m->num_layers(), 2);
}

// --- The real SmolLM2 as transformers converts it from the GGUF -------------------------------

const char* const kHfModel = "SmolLM2-135M-Instruct-hf";

TEST(LlamaHf, SmolLM2FromSafetensorsEqualsTheGgufPath) {
  const std::string hf_dir = testing_paths::model_dir(kHfModel);
  const std::string gguf =
      testing_paths::model_dir("SmolLM2-135M-Instruct") + "/SmolLM2-135M-Instruct.Q4_1.gguf";
  if (!fs::exists(hf_dir + "/config.json") || !fs::exists(gguf)) {
    GTEST_SKIP() << "models/" << kHfModel << " is absent (scripts/reference/gguf_to_hf.py)";
  }
  const auto hf = LlamaModel::load(hf_dir);
  const auto gg = LlamaModel::load(gguf);
  const LlamaConfig &a = hf->config(), &b = gg->config();
  EXPECT_EQ(a.hidden_size, b.hidden_size);
  EXPECT_EQ(a.num_layers, b.num_layers);
  EXPECT_EQ(a.num_heads, b.num_heads);
  EXPECT_EQ(a.num_kv_heads, b.num_kv_heads);
  EXPECT_EQ(a.intermediate_size, b.intermediate_size);
  EXPECT_EQ(a.vocab_size, b.vocab_size);
  EXPECT_EQ(a.context_length, b.context_length);
  EXPECT_FLOAT_EQ(a.rope_base, b.rope_base);
  EXPECT_FLOAT_EQ(a.rms_norm_eps, b.rms_norm_eps);
  EXPECT_TRUE(a.rope_neox);
  EXPECT_FALSE(b.rope_neox);

  // The same ids through both: logits agree to fp32 rounding (the weights are the same numbers,
  // Q and K rows un-permuted; the rotation pairs differ accordingly), and both agree with
  // transformers' goldens for the GGUF.
  const nlohmann::json golden =
      core::read_json_file(testing_paths::data_dir() + "/llama/SmolLM2-135M-Instruct.goldens.json");
  std::vector<std::vector<int32_t>> batch;
  size_t tokens = 0;
  for (size_t i = 0; i < 5; ++i) {
    batch.push_back(golden["prompts"][i]["ids"].get<std::vector<int32_t>>());
    tokens += batch.back().size();
  }
  batch.push_back(golden["prompts"].back()["ids"].get<std::vector<int32_t>>());  // 512 tokens
  tokens += batch.back().size();
  const int vocab = a.vocab_size;
  LlamaWorkspace ws;
  std::vector<float> hf_logits(tokens * vocab), gg_logits(tokens * vocab);
  hf->logits(hf->forward(batch, ws).data(), static_cast<int>(tokens), hf_logits.data());
  gg->logits(gg->forward(batch, ws).data(), static_cast<int>(tokens), gg_logits.data());
  double max_delta = 0;
  for (size_t i = 0; i < hf_logits.size(); ++i) {
    max_delta = std::max(max_delta, static_cast<double>(std::fabs(hf_logits[i] - gg_logits[i])));
  }
  int disagreements = 0;
  size_t row0 = 0;
  for (size_t s = 0; s < batch.size(); ++s) {
    const auto& prompt = s + 1 < batch.size() ? golden["prompts"][s] : golden["prompts"].back();
    const auto argmax = prompt["argmax"].get<std::vector<int>>();
    for (size_t i = 0; i < batch[s].size(); ++i) {
      const float* row = hf_logits.data() + (row0 + i) * vocab;
      disagreements += std::max_element(row, row + vocab) - row != argmax[i];
    }
    row0 += batch[s].size();
  }
  EXPECT_LT(max_delta, 1e-3);
  EXPECT_EQ(disagreements, 0);
  std::cout << "[ parity ] " << kHfModel << " vs the GGUF path: " << tokens
            << " positions, max |delta logit| " << max_delta << "; " << disagreements
            << " top-1 disagreements with transformers\n";
}

// --- Directories it refuses --------------------------------------------------------------------

// A copy of a tiny model directory to break.
struct Broken {
  testing_support::TempDir tmp;
  std::string dir = tmp.path("model");
  explicit Broken(const std::string& name = "llama3") {
    fs::copy(data(name), dir, fs::copy_options::recursive);
  }
  nlohmann::json config() const { return core::read_json_file(dir + "/config.json"); }
  void set_config(const nlohmann::json& j) const {
    std::ofstream(dir + "/config.json") << j.dump();
  }
  void edit_config(const std::function<void(nlohmann::json&)>& edit) const {
    nlohmann::json j = config();
    edit(j);
    set_config(j);
  }
  // Rewrites model.safetensors with `edit` applied to its tensor list.
  void edit_tensors(const std::function<void(std::vector<testing_support::TestTensor>&)>& edit) {
    std::vector<testing_support::TestTensor> tensors;
    {
      const SafeTensors st = SafeTensors::open(dir + "/model.safetensors");
      for (const auto& [name, view] : st.tensors()) {
        testing_support::TestTensor t{
            name, std::string(core::dtype_name(view.dtype)), view.shape, {}};
        t.bytes.assign(reinterpret_cast<const unsigned char*>(view.data),
                       reinterpret_cast<const unsigned char*>(view.data) + view.nbytes);
        tensors.push_back(std::move(t));
      }
    }
    edit(tensors);
    testing_support::write_file(dir + "/model.safetensors",
                                testing_support::safetensors_bytes(tensors));
  }
  std::string error() const {
    try {
      Decoder::load(dir);
    } catch (const core::Error& e) {
      EXPECT_EQ(e.kind(), core::ErrorKind::kBadInput) << e.what();
      return e.what();
    }
    return "no error";
  }
};

void expect_error(const Broken& b, const std::string& part) {
  const std::string error = b.error();
  EXPECT_NE(error.find(part), std::string::npos) << error;
}

TEST(LlamaHf, RefusesConfigsItCannotRunNamingTheKey) {
  {
    Broken b;
    b.edit_config([](auto& j) { j.erase("hidden_size"); });
    expect_error(b, "config.json: missing key 'hidden_size'");
  }
  {
    Broken b;
    b.edit_config([](auto& j) { j["num_hidden_layers"] = -2; });
    expect_error(b, "'num_hidden_layers' must be a positive integer (it is -2)");
  }
  {
    Broken b;
    b.edit_config([](auto& j) { j["model_type"] = "mistral"; });
    expect_error(b,
                 "model_type 'mistral' is not supported for a decoder (supported: llama, "
                 "qwen2)");
    // The prefill loader names both kinds it knows.
    try {
      load_prefill_model(b.dir);
      ADD_FAILURE() << "loaded";
    } catch (const core::Error& e) {
      EXPECT_NE(std::string(e.what()).find("bert: a sentence embedder; llama, qwen2: a decoder"),
                std::string::npos)
          << e.what();
    }
  }
  {
    Broken b;
    b.edit_config([](auto& j) { j["rope_parameters"]["rope_type"] = "yarn"; });
    expect_error(b, "rope scaling 'yarn' is not supported (default, linear, llama3)");
  }
  {
    Broken b;
    b.edit_config([](auto& j) { j["rope_parameters"].erase("high_freq_factor"); });
    expect_error(b, "llama3 rope scaling needs factor > 0 and high_freq_factor");
  }
  {
    Broken b;
    b.edit_config([](auto& j) { j["head_dim"] = 8; });
    expect_error(b, "head size 8 is not supported");
  }
  {
    Broken b;
    b.edit_config([](auto& j) { j["hidden_act"] = "gelu"; });
    expect_error(b, "hidden_act 'gelu' is not supported");
  }
  {
    Broken b;
    b.edit_config([](auto& j) { j["attention_bias"] = true; });
    expect_error(b, "attention_bias is set");
  }
  {
    Broken b("qwen2");
    b.edit_config([](auto& j) { j["use_sliding_window"] = true; });
    expect_error(b, "sliding-window attention");
  }
}

TEST(LlamaHf, RefusesMissingOrMisshapenTensorsNamingThem) {
  {
    Broken b;
    b.edit_tensors([](auto& t) {
      std::erase_if(t, [](const auto& x) { return x.name == "model.layers.1.mlp.up_proj.weight"; });
    });
    expect_error(b, "missing tensor 'model.layers.1.mlp.up_proj.weight'");
  }
  {
    Broken b;
    b.edit_config([](auto& j) { j["intermediate_size"] = 64; });
    expect_error(b,
                 "tensor 'model.layers.0.mlp.gate_proj.weight' has shape [128,64] but "
                 "config.json implies [64,64]");
  }
  {
    Broken b;
    b.edit_tensors([](auto& t) {
      for (auto& x : t) {
        if (x.name == "model.norm.weight") x.dtype = "I32";
      }
    });
    expect_error(b, "tensor 'model.norm.weight' has dtype I32; expected F32, F16 or BF16");
  }
  {
    Broken b("qwen2");
    b.edit_tensors([](auto& t) {
      std::erase_if(t,
                    [](const auto& x) { return x.name == "model.layers.0.self_attn.k_proj.bias"; });
    });
    expect_error(b, "missing tensor 'model.layers.0.self_attn.k_proj.bias'");
  }
  {
    Broken b("smollm");  // the index names a shard that is gone
    fs::remove(b.dir + "/model-00003-of-00004.safetensors");
    expect_error(b, "model-00003-of-00004.safetensors");
  }
  {
    Broken b("smollm");
    fs::remove(b.dir + "/model.safetensors.index.json");
    expect_error(b, "holds neither model.safetensors nor model.safetensors.index.json");
  }
}

TEST(LlamaHf, ADecoderDirectoryNeedsATokenizerItCanRun) {
  {
    Broken b;
    fs::remove(b.dir + "/tokenizer.json");
    expect_error(b, "has no tokenizer.json (a decoder needs its tokenizer)");
  }
  {
    Broken b;  // a BERT tokenizer.json beside Llama weights
    nlohmann::json t = core::read_json_file(b.dir + "/tokenizer.json");
    t["model"] = {{"type", "WordPiece"}, {"unk_token", "[UNK]"}, {"vocab", {{"[UNK]", 0}}}};
    std::ofstream(b.dir + "/tokenizer.json") << t.dump();
    expect_error(b, "tokenizer.json: tokenizer model 'WordPiece' is not supported");
  }
  {
    Broken b;  // more tokens than the embedding has rows
    b.edit_config([](auto& j) { j["vocab_size"] = 700; });
    b.edit_tensors([](auto& t) {
      for (auto& x : t) {
        if (x.name == "model.embed_tokens.weight") {
          x.shape[0] = 700;
          x.bytes.resize(700 * 64 * 4);
        }
      }
    });
    expect_error(b, "the tokenizer has 767 tokens, the embedding only 700");
  }
}

}  // namespace
}  // namespace attncache
