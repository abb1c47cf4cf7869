// `attncache` end to end as a user runs it, including every kind of bad input: each must give a
// clear message naming the problem and exit code 2, never a crash or a half-written output.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "attncache/embedder.h"
#include "support/run_cli.h"
#include "support/safetensors_writer.h"
#include "support/temp_dir.h"
#include "support/test_paths.h"

namespace attncache {
namespace {

namespace fs = std::filesystem;
using testing_support::f32_tensor;
using testing_support::TestTensor;

using Result = testing_support::CliResult;
Result run(const std::string& args) { return testing_support::run_cli(args); }

void write(const std::string& path, const std::string& text) {
  std::ofstream(path, std::ios::binary) << text;
}

// A one-layer BERT with hidden size 32 (two heads of 16) and the real MiniLM tokenizer, so that
// corrupted weight files are cheap to build.
nlohmann::json tiny_config() {
  return {{"model_type", "bert"},          {"hidden_size", 32},       {"num_hidden_layers", 1},
          {"num_attention_heads", 2},      {"intermediate_size", 64}, {"vocab_size", 30522},
          {"max_position_embeddings", 16}, {"type_vocab_size", 2},    {"layer_norm_eps", 1e-12},
          {"hidden_act", "gelu"}};
}

std::vector<TestTensor> tiny_tensors() {
  std::vector<TestTensor> t = {f32_tensor("embeddings.word_embeddings.weight", {30522, 32}),
                               f32_tensor("embeddings.position_embeddings.weight", {16, 32}),
                               f32_tensor("embeddings.token_type_embeddings.weight", {2, 32}),
                               f32_tensor("embeddings.LayerNorm.weight", {32}, 1.0f, 0.0f),
                               f32_tensor("embeddings.LayerNorm.bias", {32})};
  const std::string p = "encoder.layer.0.";
  for (const char* m : {"query", "key", "value"}) {
    t.push_back(f32_tensor(p + "attention.self." + m + ".weight", {32, 32}));
    t.push_back(f32_tensor(p + "attention.self." + m + ".bias", {32}));
  }
  t.push_back(f32_tensor(p + "attention.output.dense.weight", {32, 32}));
  t.push_back(f32_tensor(p + "attention.output.dense.bias", {32}));
  t.push_back(f32_tensor(p + "attention.output.LayerNorm.weight", {32}, 1.0f, 0.0f));
  t.push_back(f32_tensor(p + "attention.output.LayerNorm.bias", {32}));
  t.push_back(f32_tensor(p + "intermediate.dense.weight", {64, 32}));
  t.push_back(f32_tensor(p + "intermediate.dense.bias", {64}));
  t.push_back(f32_tensor(p + "output.dense.weight", {32, 64}));
  t.push_back(f32_tensor(p + "output.dense.bias", {32}));
  t.push_back(f32_tensor(p + "output.LayerNorm.weight", {32}, 1.0f, 0.0f));
  t.push_back(f32_tensor(p + "output.LayerNorm.bias", {32}));
  return t;
}

class CliTest : public ::testing::Test {
 protected:
  void SetUp() override {
    model_ = dir_.path("tiny");
    fs::create_directories(model_);
    fs::copy_file(testing_paths::model_dir() + "/tokenizer.json", model_ + "/tokenizer.json");
    write(model_ + "/config.json", tiny_config().dump());
    write_weights(testing_support::safetensors_bytes(tiny_tensors()));
    write(dir_.path("in.txt"), "A sentence.\nAnother one, longer than the first.\n");
  }
  void write_weights(const std::string& bytes) { write(model_ + "/model.safetensors", bytes); }
  Result embed(const std::string& extra = "") {
    return run("embed --model " + model_ + " --input " + dir_.path("in.txt") + " " + extra);
  }
  void expect_bad_input(const Result& r, const std::string& message) {
    EXPECT_EQ(r.exit_code, 2) << r.output;
    EXPECT_NE(r.output.find(message), std::string::npos) << r.output;
    EXPECT_EQ(r.output.find("internal error"), std::string::npos) << r.output;
  }

  testing_support::TempDir dir_;
  std::string model_;
};

TEST_F(CliTest, TinyModelEmbedsToJsonLines) {
  Result r = embed();
  ASSERT_EQ(r.exit_code, 0) << r.output;
  std::istringstream lines(r.output);
  std::string line;
  int count = 0;
  while (std::getline(lines, line)) {
    nlohmann::json j = nlohmann::json::parse(line);
    EXPECT_EQ(j["index"], count);
    EXPECT_EQ(j["embedding"].size(), 32u);
    ++count;
  }
  EXPECT_EQ(count, 2);
}

TEST_F(CliTest, HalfPrecisionWeightsLoadAndAgreeWithFp32) {
  auto parse = [](const std::string& out) {
    std::vector<float> all;
    std::istringstream lines(out);
    std::string line;
    while (std::getline(lines, line)) {
      auto e = nlohmann::json::parse(line)["embedding"].get<std::vector<float>>();
      all.insert(all.end(), e.begin(), e.end());
    }
    return all;
  };
  Result fp32 = embed();
  ASSERT_EQ(fp32.exit_code, 0) << fp32.output;
  for (const char* dtype : {"F16", "BF16"}) {
    std::vector<TestTensor> half;
    for (const auto& t : tiny_tensors()) half.push_back(testing_support::to_half(t, dtype));
    write_weights(testing_support::safetensors_bytes(half));
    Result r = embed();
    ASSERT_EQ(r.exit_code, 0) << dtype << ": " << r.output;
    std::vector<float> a = parse(fp32.output), b = parse(r.output);
    ASSERT_EQ(a.size(), b.size());
    for (size_t i = 0; i < a.size(); ++i) EXPECT_NEAR(a[i], b[i], 2e-2) << dtype << " " << i;
  }
}

TEST_F(CliTest, HelpExplainsTheCommand) {
  Result r = run("embed --help");
  EXPECT_EQ(r.exit_code, 0);
  for (const char* flag : {"--model", "--input", "--output", "--batch", "--threads", "--max-length",
                           "--no-truncate"}) {
    EXPECT_NE(r.output.find(flag), std::string::npos) << flag;
  }
  expect_bad_input(run("embed --batch 0"), "--batch");
  expect_bad_input(run("frobnicate"), "subcommand");
}

TEST_F(CliTest, MissingModel) {
  expect_bad_input(run("embed --model /nonexistent/model-dir"), "not found");
  expect_bad_input(run("embed --model no-such-model"), "model 'no-such-model' not found");
  fs::remove(model_ + "/config.json");
  expect_bad_input(embed(), "config.json");
}

TEST_F(CliTest, TruncatedWeights) {
  std::string bytes = testing_support::safetensors_bytes(tiny_tensors());
  write_weights(bytes.substr(0, bytes.size() / 2));
  expect_bad_input(embed(), "outside the data section");
  write_weights(bytes.substr(0, 5));
  expect_bad_input(embed(), "truncated safetensors file");
}

TEST_F(CliTest, HeaderLengthPastEndOfFile) {
  write_weights(testing_support::safetensors_bytes(tiny_tensors(), 1ll << 40));
  expect_bad_input(embed(), "runs past the end of the file");
}

TEST_F(CliTest, TensorOffsetsOutOfRange) {
  std::string bytes = testing_support::safetensors_bytes(tiny_tensors());
  // Point the first tensor's range far past the data section, keeping the header length.
  size_t pos = bytes.find("[0,3906816]");
  ASSERT_NE(pos, std::string::npos);
  bytes.replace(pos, 11, "[0,9999999]");
  write_weights(bytes);
  expect_bad_input(embed(), "outside the data section");
}

TEST_F(CliTest, ShapeOrDTypeNotMatchingConfig) {
  nlohmann::json config = tiny_config();
  config["intermediate_size"] = 128;
  write(model_ + "/config.json", config.dump());
  expect_bad_input(embed(), "has shape [64,32] but config.json implies [128,32]");

  config = tiny_config();
  config["num_attention_heads"] = 8;
  write(model_ + "/config.json", config.dump());
  expect_bad_input(embed(), "head size 4 with 8 heads is not supported");

  write(model_ + "/config.json", tiny_config().dump());
  auto tensors = tiny_tensors();
  tensors[3].dtype = "I32";
  write_weights(testing_support::safetensors_bytes(tensors));
  expect_bad_input(embed(), "'embeddings.LayerNorm.weight' has dtype I32");

  tensors = tiny_tensors();
  tensors.pop_back();
  write_weights(testing_support::safetensors_bytes(tensors));
  expect_bad_input(embed(), "missing tensor 'encoder.layer.0.output.LayerNorm.bias'");

  config = tiny_config();
  config["model_type"] = "gpt2";
  write(model_ + "/config.json", config.dump());
  expect_bad_input(embed(), "model_type 'gpt2' is not supported");
}

TEST_F(CliTest, MalformedTokenizer) {
  write(model_ + "/tokenizer.json", "{\"model\": {\"type\": \"WordPiece\", ");
  expect_bad_input(embed(), "tokenizer.json: malformed JSON");
}

TEST_F(CliTest, InvalidUtf8Input) {
  write(dir_.path("in.txt"), "fine\nbroken \xff\xfe text\n");
  expect_bad_input(embed(), "line 2: invalid UTF-8 at byte 7");
}

TEST_F(CliTest, EmptyLines) {
  write(dir_.path("in.txt"), "first\n\nthird\n");
  expect_bad_input(embed(), "line 2 is empty");
  Result r = embed("--allow-empty");
  EXPECT_EQ(r.exit_code, 0) << r.output;
}

TEST_F(CliTest, OverlongInputsTruncateOnceOrFail) {
  write(dir_.path("in.txt"),
        "one two three four five six seven eight nine ten eleven twelve thirteen fourteen fifteen\n"
        "short\n"
        "alpha beta gamma delta epsilon zeta eta theta iota kappa lambda mu nu xi omicron\n");
  Result r = embed("--output " + dir_.path("out.jsonl"));
  EXPECT_EQ(r.exit_code, 0) << r.output;
  EXPECT_NE(r.output.find("note: 2 text(s) longer than 16 tokens were truncated (first: line 1)"),
            std::string::npos)
      << r.output;
  EXPECT_EQ(r.output.find("note:", r.output.find("note:") + 1), std::string::npos);
  fs::remove(dir_.path("out.jsonl"));
  expect_bad_input(embed("--no-truncate --output " + dir_.path("out.jsonl")),
                   "line 1 is longer than 16 tokens");
  EXPECT_FALSE(fs::exists(dir_.path("out.jsonl")));  // no half-written output
  expect_bad_input(embed("--max-length 17"), "exceeds the model's 16 positions");
}

TEST(CliRealModel, EmbedMatchesTheLibraryAndSimilarityPrintsATable) {
  testing_support::TempDir dir;
  write(dir.path("in.txt"), "The cat sits on the mat.\nA feline rests on a rug.\nStocks fell.\n");
  Result r = run("embed --model " + testing_paths::model_dir() + " --input " + dir.path("in.txt") +
                 " --output " + dir.path("out.jsonl") + " --batch 2 --threads 1");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  Embedder embedder = Embedder::load(testing_paths::model_dir());
  std::vector<float> expected =
      embedder.embed({embedder.tokenize("The cat sits on the mat.", 256).ids,
                      embedder.tokenize("A feline rests on a rug.", 256).ids,
                      embedder.tokenize("Stocks fell.", 256).ids});
  std::ifstream out(dir.path("out.jsonl"));
  std::string line;
  size_t i = 0;
  while (std::getline(out, line)) {
    auto e = nlohmann::json::parse(line)["embedding"].get<std::vector<float>>();
    ASSERT_EQ(e.size(), 384u);
    for (size_t k = 0; k < e.size(); ++k) ASSERT_NEAR(e[k], expected[i * 384 + k], 1e-6);
    ++i;
  }
  EXPECT_EQ(i, 3u);
  r = run("similarity --model " + testing_paths::model_dir() + " --input " + dir.path("in.txt"));
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_NE(r.output.find("Cosine similarity"), std::string::npos);
  EXPECT_NE(r.output.find("The cat sits on the mat.  <->  A feline rests on a rug."),
            std::string::npos)
      << r.output;
}

}  // namespace
}  // namespace attncache
