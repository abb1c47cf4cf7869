// The engine against the reference implementations, on real text and real weights: token ids
// against Hugging Face tokenizers on every corpus line, embeddings against sentence-transformers
// (goldens from scripts/reference/make_goldens.py).
#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "attncache/embedder.h"
#include "core/text_lines.h"
#include "support/test_paths.h"

namespace attncache {
namespace {

class ParityTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    ASSERT_TRUE(std::filesystem::exists(testing_paths::model_dir() + "/model.safetensors"))
        << "run scripts/fetch-models.sh first";
    embedder_ = new Embedder(Embedder::load(testing_paths::model_dir()));
    corpus_ =
        new std::vector<std::string>(core::read_lines(testing_paths::data_dir() + "/corpus.txt"));
  }
  static void TearDownTestSuite() {
    delete embedder_;
    delete corpus_;
  }
  static Embedder* embedder_;
  static std::vector<std::string>* corpus_;
};

Embedder* ParityTest::embedder_ = nullptr;
std::vector<std::string>* ParityTest::corpus_ = nullptr;

TEST_F(ParityTest, TokenIdsEqualReferenceOnEveryCorpusLine) {
  std::vector<std::string> golden =
      core::read_lines(testing_paths::data_dir() + "/all-MiniLM-L6-v2.token_ids.txt");
  ASSERT_EQ(golden.size(), corpus_->size());
  ASSERT_GT(corpus_->size(), 2000u);
  size_t mismatches = 0;
  for (size_t i = 0; i < corpus_->size(); ++i) {
    Encoding enc = embedder_->tokenize((*corpus_)[i], 1 << 20);
    std::ostringstream ids;
    for (size_t k = 0; k < enc.ids.size(); ++k) ids << (k ? " " : "") << enc.ids[k];
    if (ids.str() != golden[i] && mismatches++ < 5) {
      ADD_FAILURE() << "line " << i + 1 << ": " << (*corpus_)[i] << "\n ours: " << ids.str()
                    << "\n  ref: " << golden[i];
    }
  }
  EXPECT_EQ(mismatches, 0u);
}

TEST_F(ParityTest, EmbeddingsEqualSentenceTransformers) {
  std::ifstream meta_file(testing_paths::data_dir() + "/all-MiniLM-L6-v2.embeddings.json");
  nlohmann::json meta = nlohmann::json::parse(meta_file);
  std::vector<size_t> indices = meta["corpus_lines"].get<std::vector<size_t>>();
  const int dim = meta["dim"].get<int>();
  ASSERT_EQ(dim, embedder_->dim());
  ASSERT_GE(indices.size(), 200u);
  std::vector<float> golden(indices.size() * dim);
  std::ifstream bin(testing_paths::data_dir() + "/all-MiniLM-L6-v2.embeddings.f32",
                    std::ios::binary);
  bin.read(reinterpret_cast<char*>(golden.data()), golden.size() * sizeof(float));
  ASSERT_TRUE(bin.good());

  const int max_tokens = meta["max_seq_length"].get<int>();
  ASSERT_EQ(max_tokens, embedder_->config().max_tokens());
  std::vector<std::vector<int32_t>> batch;
  for (size_t i : indices) batch.push_back(embedder_->tokenize((*corpus_)[i], max_tokens).ids);
  // Mixed lengths in batches of 32, as a user would run them.
  std::vector<float> ours;
  for (size_t b = 0; b < batch.size(); b += 32) {
    std::vector<std::vector<int32_t>> part(batch.begin() + b,
                                           batch.begin() + std::min(batch.size(), b + 32));
    std::vector<float> e = embedder_->embed(part);
    ours.insert(ours.end(), e.begin(), e.end());
  }
  double worst_cos = 1.0, worst_abs = 0.0;
  for (size_t s = 0; s < indices.size(); ++s) {
    double dot = 0, na = 0, nb = 0;
    for (int k = 0; k < dim; ++k) {
      double a = ours[s * dim + k], g = golden[s * dim + k];
      dot += a * g;
      na += a * a;
      nb += g * g;
      worst_abs = std::max(worst_abs, std::fabs(a - g));
    }
    worst_cos = std::min(worst_cos, dot / std::sqrt(na * nb));
  }
  RecordProperty("worst_cosine", std::to_string(worst_cos));
  RecordProperty("worst_abs_diff", std::to_string(worst_abs));
  std::printf("parity: %zu sentences, min cosine %.9f, max |diff| %.3g\n", indices.size(),
              worst_cos, worst_abs);
  EXPECT_GE(worst_cos, 0.99999);
  EXPECT_LE(worst_abs, 1e-4);
}

}  // namespace
}  // namespace attncache
