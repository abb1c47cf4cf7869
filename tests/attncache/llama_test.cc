// The Llama decoder on the real SmolLM2-135M-Instruct GGUF against transformers' goldens
// (tests/data/llama/make_goldens.py), and the decoder's own invariants: batching, a cached
// prefix, and reuse of its own attention maps. Skipped when the model has not been fetched.
#include "attncache/model/llama.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>

#include "attncache/decoder.h"
#include "attncache/kernels/cpu/attention.h"
#include "core/error.h"
#include "support/gguf_metadata_writer.h"
#include "support/temp_dir.h"
#include "support/test_paths.h"

namespace attncache {
namespace {

const std::string kGolden = "/tests/data/llama/SmolLM2-135M-Instruct.goldens.json";

const nlohmann::json& goldens() {
  static const nlohmann::json j = [] {
    std::ifstream in(testing_paths::source_dir() + kGolden);
    return nlohmann::json::parse(in);
  }();
  return j;
}

// The model, loaded once; null when it has not been fetched.
const LlamaModel* smollm() {
  static const std::unique_ptr<LlamaModel> model = []() -> std::unique_ptr<LlamaModel> {
    const std::string path =
        testing_paths::source_dir() + "/" + goldens()["model"].get<std::string>();
    if (!std::filesystem::exists(path)) return nullptr;
    return LlamaModel::load(path);
  }();
  return model.get();
}

#define REQUIRE_SMOLLM()                                                        \
  if (smollm() == nullptr) {                                                    \
    GTEST_SKIP() << "SmolLM2-135M-Instruct is absent (scripts/fetch-models.sh " \
                    "SmolLM2-135M-Instruct)";                                   \
  }

std::vector<int32_t> ids_of(const nlohmann::json& prompt) {
  return prompt["ids"].get<std::vector<int32_t>>();
}

TEST(LlamaModel, ReadsTheHyperparametersFromGguf) {
  REQUIRE_SMOLLM();
  const LlamaConfig& c = smollm()->config();
  EXPECT_EQ(c.architecture, "llama");
  EXPECT_EQ(c.num_layers, 30);
  EXPECT_EQ(c.hidden_size, 576);
  EXPECT_EQ(c.num_heads, 9);
  EXPECT_EQ(c.num_kv_heads, 3);
  EXPECT_EQ(c.head_dim, 64);
  EXPECT_EQ(c.intermediate_size, 1536);
  EXPECT_EQ(c.vocab_size, 49152);
  EXPECT_EQ(c.context_length, 8192);
  EXPECT_FLOAT_EQ(c.rope_base, 100000.0f);
}

// Every position of every golden prompt: the same top-1 next token as transformers.
TEST(LlamaModel, NextTokenAgreesWithTransformersEverywhere) {
  REQUIRE_SMOLLM();
  const LlamaModel& m = *smollm();
  const int vocab = m.config().vocab_size;
  LlamaWorkspace ws;
  int positions = 0, disagreements = 0;
  double max_delta = 0;
  // Prompts run in batches of about a thousand tokens: the GEMMs then see many rows at once.
  const auto& prompts = goldens()["prompts"];
  for (size_t p0 = 0; p0 < prompts.size();) {
    std::vector<std::vector<int32_t>> batch;
    size_t tokens = 0, p1 = p0;
    while (p1 < prompts.size() && (batch.empty() || tokens + prompts[p1]["ids"].size() <= 1024)) {
      batch.push_back(ids_of(prompts[p1]));
      tokens += batch.back().size();
      ++p1;
    }
    const std::vector<float>& hidden = m.forward(batch, ws);
    std::vector<float> logits(tokens * vocab);
    m.logits(hidden.data(), static_cast<int>(tokens), logits.data());
    size_t row0 = 0;
    for (size_t p = p0; p < p1; ++p) {
      const auto& prompt = prompts[p];
      const size_t n = batch[p - p0].size();
      const auto argmax = prompt["argmax"].get<std::vector<int>>();
      const auto margin = prompt["margin"].get<std::vector<double>>();
      for (size_t i = 0; i < n; ++i) {
        const float* row = logits.data() + (row0 + i) * vocab;
        const int got = static_cast<int>(std::max_element(row, row + vocab) - row);
        ++positions;
        if (got != argmax[i]) {
          ++disagreements;
          ADD_FAILURE() << prompt["source"] << " position " << i << ": " << got << " vs "
                        << argmax[i] << " (reference margin " << margin[i] << ")";
        }
      }
      const float* last = logits.data() + (row0 + n - 1) * vocab;
      const auto top_ids = prompt["top_ids"].get<std::vector<int>>();
      const auto top_logits = prompt["top_logits"].get<std::vector<double>>();
      for (size_t k = 0; k < top_ids.size(); ++k) {
        max_delta = std::max(max_delta, std::fabs(last[top_ids[k]] - top_logits[k]));
      }
      row0 += n;
    }
    p0 = p1;
  }
  EXPECT_EQ(disagreements, 0) << "of " << positions << " positions";
  EXPECT_LT(max_delta, 2e-3) << "max |delta logit| over the last positions' top 16";
  std::cout << "[ parity ] " << positions << " positions, " << disagreements
            << " top-1 disagreements, max |delta logit| (top 16 at last positions) " << max_delta
            << "\n";
}

TEST(LlamaModel, FullLogitRowMatchesTransformers) {
  REQUIRE_SMOLLM();
  const LlamaModel& m = *smollm();
  const int vocab = m.config().vocab_size;
  std::vector<float> want(vocab);
  std::ifstream in(
      testing_paths::source_dir() + "/tests/data/llama/SmolLM2-135M-Instruct.logits.f32",
      std::ios::binary);
  in.read(reinterpret_cast<char*>(want.data()), vocab * sizeof(float));
  ASSERT_TRUE(in.good());
  const std::vector<int32_t> ids = ids_of(goldens()["prompts"][0]);
  LlamaWorkspace ws;
  const std::vector<float>& hidden = m.forward({ids}, ws);
  std::vector<float> got(vocab);
  m.logits(hidden.data() + (ids.size() - 1) * m.config().hidden_size, 1, got.data());
  double max_delta = 0;
  for (int v = 0; v < vocab; ++v)
    max_delta = std::max(max_delta, double(std::fabs(got[v] - want[v])));
  EXPECT_LT(max_delta, 2e-3);
  std::cout << "[ parity ] full row of " << vocab << " logits: max |delta| " << max_delta << "\n";
}

TEST(LlamaModel, BatchedSequencesEqualSeparateRuns) {
  REQUIRE_SMOLLM();
  const LlamaModel& m = *smollm();
  const int d = m.config().hidden_size;
  std::vector<std::vector<int32_t>> batch;
  for (int i : {1, 5, 9}) batch.push_back(ids_of(goldens()["prompts"][i]));
  LlamaWorkspace ws;
  const std::vector<float> together = m.forward(batch, ws);
  size_t offset = 0;
  for (const auto& ids : batch) {
    const std::vector<float>& alone = m.forward({ids}, ws);
    for (size_t i = 0; i < ids.size() * d; ++i) {
      ASSERT_NEAR(together[offset + i], alone[i], 1e-4);
    }
    offset += ids.size() * d;
  }
}

TEST(LlamaModel, ContinuingACachedPrefixEqualsTheWholePrompt) {
  REQUIRE_SMOLLM();
  const LlamaModel& m = *smollm();
  const int d = m.config().hidden_size;
  const std::vector<int32_t> ids = ids_of(goldens()["prompts"].back());
  const size_t split = 300;
  LlamaWorkspace ws;
  const std::vector<float> whole = m.forward({ids}, ws);
  KvCache cache;
  m.forward({std::vector<int32_t>(ids.begin(), ids.begin() + split)}, ws, nullptr, nullptr, &cache);
  EXPECT_EQ(cache.length, static_cast<int>(split));
  EXPECT_EQ(cache.bytes(), 2 * split * 3 * 64 * 30 * sizeof(float));
  const std::vector<float>& rest =
      m.forward({std::vector<int32_t>(ids.begin() + split, ids.end())}, ws, nullptr, &cache);
  for (size_t i = 0; i < (ids.size() - split) * d; ++i) {
    ASSERT_NEAR(rest[i], whole[split * d + i], 1e-4) << i;
  }
  // Its last row alone (the last layer past attention on that row only; batches of last rows:
  // llama_hf_test.cc).
  const std::vector<float>& last =
      m.forward({std::vector<int32_t>(ids.begin() + split, ids.end())}, ws, nullptr, &cache,
                nullptr, LlamaModel::Rows::kLast);
  ASSERT_EQ(last.size(), static_cast<size_t>(d));
  for (int i = 0; i < d; ++i) ASSERT_NEAR(last[i], whole[(ids.size() - 1) * d + i], 1e-4) << i;
}

// Records every layer's maps, then feeds them back: Q and K are skipped and the output stays.
class RecordThenReuse : public AttentionHook {
 public:
  RecordThenReuse(int layers, int heads) : maps_(layers), heads_(heads) {}
  bool reuse = false;
  StoredProbs stored(int layer, int, int) override {
    if (!reuse) return {};
    return {maps_[layer].data(), core::DType::kF32, ~0ull};
  }
  float* record(int layer, int, int n) override {
    if (reuse) return nullptr;
    maps_[layer].resize(heads_ * cpu::attention_map_size(n, true));
    return maps_[layer].data();
  }

 private:
  std::vector<std::vector<float>> maps_;
  int heads_;
};

TEST(LlamaModel, ReusingItsOwnTriangularMapsReproducesTheOutput) {
  REQUIRE_SMOLLM();
  const LlamaModel& m = *smollm();
  const std::vector<int32_t> ids = ids_of(goldens()["prompts"][3]);
  RecordThenReuse hook(m.config().num_layers, m.config().num_heads);
  LlamaWorkspace ws;
  const std::vector<float> exact = m.forward({ids}, ws, &hook);
  hook.reuse = true;
  const std::vector<float>& reused = m.forward({ids}, ws, &hook);
  for (size_t i = 0; i < exact.size(); ++i) ASSERT_NEAR(reused[i], exact[i], 1e-5) << i;
}

TEST(LlamaModel, RefusesInputsItCannotRun) {
  REQUIRE_SMOLLM();
  const LlamaModel& m = *smollm();
  LlamaWorkspace ws;
  auto error = [&](const std::vector<std::vector<int32_t>>& batch, const KvCache* past = nullptr) {
    try {
      m.forward(batch, ws, nullptr, past);
    } catch (const core::Error& e) {
      return std::string(e.what());
    }
    return std::string("no error");
  };
  EXPECT_NE(error({{}}).find("is empty"), std::string::npos);
  EXPECT_NE(error({{1, 49152}}).find("outside the vocabulary"), std::string::npos);
  EXPECT_NE(error({std::vector<int32_t>(8193, 1)}).find("context is 8192 tokens"),
            std::string::npos);
  KvCache cache;
  m.forward({{1, 2, 3}}, ws, nullptr, nullptr, &cache);
  EXPECT_NE(error({std::vector<int32_t>(8190, 1)}, &cache).find("after a prefix of 3"),
            std::string::npos);
}

// A one-layer Llama with hidden 32 (two query heads of 16 over one key/value head), FFN 48,
// vocabulary 40, F32 weights from a fixed generator; `edit` changes it before writing.
struct TinyLlama {
  testing_support::GgufMetadataWriter w;
  std::map<std::string, std::vector<uint64_t>> dims;

  TinyLlama() {
    w.set_string("general.architecture", "llama");
    w.set_uint32("llama.embedding_length", 32);
    w.set_uint32("llama.block_count", 1);
    w.set_uint32("llama.attention.head_count", 2);
    w.set_uint32("llama.attention.head_count_kv", 1);
    w.set_uint32("llama.feed_forward_length", 48);
    w.set_uint32("llama.context_length", 64);
    w.set_float32("llama.attention.layer_norm_rms_epsilon", 1e-5f);
    w.set_float32("llama.rope.freq_base", 10000.0f);
    dims = {{"token_embd.weight", {32, 40}},        {"output_norm.weight", {32}},
            {"blk.0.attn_norm.weight", {32}},       {"blk.0.attn_q.weight", {32, 32}},
            {"blk.0.attn_k.weight", {32, 16}},      {"blk.0.attn_v.weight", {32, 16}},
            {"blk.0.attn_output.weight", {32, 32}}, {"blk.0.ffn_norm.weight", {32}},
            {"blk.0.ffn_gate.weight", {32, 48}},    {"blk.0.ffn_up.weight", {32, 48}},
            {"blk.0.ffn_down.weight", {48, 32}}};
  }
  std::string write(const std::string& path, uint32_t q_type = 0) {
    uint32_t seed = 1;
    for (const auto& [name, d] : dims) {
      uint64_t n = 1;
      for (uint64_t x : d) n *= x;
      const bool norm = name.find("norm") != std::string::npos;
      std::vector<float> v(n);
      for (float& x : v) {
        seed = seed * 1664525u + 1013904223u;
        x = norm ? 1.0f : (static_cast<float>(seed >> 8) / (1u << 24) - 0.5f) * 0.2f;
      }
      const bool quantized = q_type != 0 && name == "blk.0.attn_q.weight";
      w.add_tensor(name, d, quantized ? q_type : 0,
                   std::string(reinterpret_cast<const char*>(v.data()), n * 4));
    }
    w.write(path);
    return path;
  }
};

std::string load_error(const std::string& path) {
  try {
    LlamaModel::load(path);
  } catch (const core::Error& e) {
    return e.what();
  }
  return "no error";
}

// Scoring a batch in one forward pass gives each sequence what scoring it alone gives, to
// rounding (the GEMMs see other row counts); sequences of under two tokens get no values.
TEST(Decoder, BatchedTokenLogProbsEqualOneAtATime) {
  REQUIRE_SMOLLM();
  std::unique_ptr<Decoder> decoder =
      Decoder::load(testing_paths::source_dir() + "/" + goldens()["model"].get<std::string>());
  std::vector<std::vector<int32_t>> batch;
  for (int i : {0, 1, 5, 9}) batch.push_back(ids_of(goldens()["prompts"][i]));
  batch.insert(batch.begin() + 1, std::vector<int32_t>{42});
  batch.push_back({});
  const std::vector<std::vector<double>> together = decoder->token_log_probs(batch);
  ASSERT_EQ(together.size(), batch.size());
  for (size_t s = 0; s < batch.size(); ++s) {
    if (batch[s].size() < 2) {
      EXPECT_TRUE(together[s].empty()) << s;
      continue;
    }
    const std::vector<double> alone = decoder->token_log_probs(batch[s]);
    ASSERT_EQ(together[s].size(), batch[s].size() - 1) << s;
    for (size_t i = 0; i < alone.size(); ++i) ASSERT_NEAR(together[s][i], alone[i], 1e-3) << s;
  }
}

TEST(LlamaGguf, ASyntheticModelLoadsAndRuns) {
  testing_support::TempDir dir;
  TinyLlama tiny;
  const auto m = LlamaModel::load(tiny.write(dir.path("tiny.gguf")));
  EXPECT_EQ(m->config().head_dim, 16);
  EXPECT_EQ(m->config().vocab_size, 40);
  LlamaWorkspace ws;
  const std::vector<float>& h = m->forward({{1, 2, 3, 39}}, ws);
  ASSERT_EQ(h.size(), 4u * 32);
  for (float x : h) ASSERT_TRUE(std::isfinite(x));
}

TEST(LlamaGguf, RefusesModelsItCannotRunNamingWhy) {
  testing_support::TempDir dir;
  {
    TinyLlama t;
    t.w.set_string("general.architecture", "gemma3");
    EXPECT_NE(load_error(t.write(dir.path("a.gguf"))).find("'gemma3' is not supported"),
              std::string::npos);
  }
  {
    TinyLlama t;
    t.dims.erase("blk.0.ffn_up.weight");
    EXPECT_NE(load_error(t.write(dir.path("b.gguf"))).find("blk.0.ffn_up.weight"),
              std::string::npos);
  }
  {
    TinyLlama t;
    t.dims["blk.0.attn_k.weight"] = {32, 32};
    EXPECT_NE(load_error(t.write(dir.path("c.gguf"))).find("'blk.0.attn_k.weight' has dims"),
              std::string::npos);
  }
  {
    TinyLlama t;  // IQ2_XXS: a type we do not dequantize (the bytes are never read)
    EXPECT_NE(load_error(t.write(dir.path("d.gguf"), 16)).find("IQ2_XXS"), std::string::npos);
  }
  {
    TinyLlama t;
    t.w.set_uint32("llama.attention.head_count", 4);  // head size 8
    t.w.set_uint32("llama.attention.head_count_kv", 4);
    EXPECT_NE(load_error(t.write(dir.path("e.gguf"))).find("head size 8"), std::string::npos);
  }
  {
    TinyLlama t;
    t.w.set_string("llama.rope.scaling.type", "yarn");
    EXPECT_NE(load_error(t.write(dir.path("f.gguf"))).find("rope scaling 'yarn'"),
              std::string::npos);
  }
  {
    TinyLlama t;
    t.w.erase("llama.context_length");
    EXPECT_NE(load_error(t.write(dir.path("g.gguf"))).find("llama.context_length"),
              std::string::npos);
  }
  {
    TinyLlama t;  // the file ends inside the tensor data
    const std::string path = t.write(dir.path("h.gguf"));
    std::filesystem::resize_file(path, std::filesystem::file_size(path) - 100);
    EXPECT_NE(load_error(path), "no error");
  }
}

TEST(LlamaGguf, ADecoderNeedsATokenizerItCanRun) {
  testing_support::TempDir dir;
  TinyLlama t;
  t.w.set_string("tokenizer.ggml.model", "llama");  // SentencePiece: not implemented
  const std::string path = t.write(dir.path("spm.gguf"));
  try {
    Decoder::load(path);
    FAIL() << "loaded";
  } catch (const core::Error& e) {
    EXPECT_NE(std::string(e.what()).find("llama"), std::string::npos) << e.what();
  }
}

}  // namespace
}  // namespace attncache
