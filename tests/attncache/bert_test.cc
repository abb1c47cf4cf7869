// The encoder on real weights: the attention hook's contract, batch composition, bad batches.
#include "attncache/model/bert.h"

#include <gtest/gtest.h>

#include <cmath>
#include <map>

#include "attncache/embedder.h"
#include "core/error.h"
#include "support/real_model.h"
#include "support/safetensors_writer.h"
#include "support/test_paths.h"

namespace attncache {
namespace {

using testing_support::cosine;
using testing_support::minilm;

std::vector<std::vector<int32_t>> sample_batch() {
  std::vector<std::vector<int32_t>> batch;
  for (const char* text : {"The quick brown fox jumps over the lazy dog.", "Hi",
                           "Attention maps of similar inputs are often similar, which is what "
                           "memoization exploits when the same prompt template repeats."}) {
    batch.push_back(minilm().tokenize(text, 256).ids);
  }
  return batch;
}

// Records every layer's probabilities, then serves them back (optionally rounded to fp16).
class RecordReplayHook : public AttentionHook {
 public:
  bool replay = false;
  bool as_f16 = false;
  std::map<std::pair<int, int>, std::vector<float>> maps;
  std::map<std::pair<int, int>, std::vector<uint16_t>> maps16;

  float* record(int layer, int seq, int n) override {
    if (replay) return nullptr;
    auto& m = maps[{layer, seq}];
    m.resize(static_cast<size_t>(minilm().config().bert.num_heads) * n * n);
    return m.data();
  }
  StoredProbs stored(int layer, int seq, int) override {
    if (!replay) return {};
    if (!as_f16) return {maps[{layer, seq}].data(), core::DType::kF32};
    auto& m16 = maps16[{layer, seq}];
    if (m16.empty()) {
      for (float p : maps[{layer, seq}]) m16.push_back(core::f32_to_f16(p));
    }
    return {m16.data(), core::DType::kF16};
  }
};

TEST(BertModel, ReplayingRecordedMapsReproducesTheExactPath) {
  auto batch = sample_batch();
  RecordReplayHook hook;
  std::vector<float> exact = minilm().embed(batch, &hook);
  ASSERT_EQ(hook.maps.size(), batch.size() * minilm().config().bert.num_layers);
  // Every recorded row is a probability distribution.
  for (auto& [key, m] : hook.maps) {
    const int n = static_cast<int>(batch[key.second].size());
    for (size_t row = 0; row < m.size() / n; ++row) {
      double sum = 0;
      for (int j = 0; j < n; ++j) sum += m[row * n + j];
      ASSERT_NEAR(sum, 1.0, 1e-5);
    }
  }
  hook.replay = true;
  std::vector<float> replayed = minilm().embed(batch, &hook);
  ASSERT_EQ(replayed.size(), exact.size());
  for (size_t i = 0; i < exact.size(); ++i) ASSERT_FLOAT_EQ(replayed[i], exact[i]);

  hook.as_f16 = true;
  std::vector<float> half = minilm().embed(batch, &hook);
  const int d = minilm().dim();
  for (size_t s = 0; s < batch.size(); ++s) {
    EXPECT_GT(cosine(half.data() + s * d, exact.data() + s * d, d), 0.9999);
  }
}

TEST(BertModel, EmbeddingDoesNotDependOnBatchComposition) {
  auto batch = sample_batch();
  std::vector<float> together = minilm().embed(batch);
  const int d = minilm().dim();
  for (size_t s = 0; s < batch.size(); ++s) {
    std::vector<float> alone = minilm().embed({batch[s]});
    for (int k = 0; k < d; ++k) ASSERT_NEAR(alone[k], together[s * d + k], 1e-6);
  }
}

TEST(BertModel, RejectsBadBatches) {
  BertWorkspace ws;
  const BertModel& model = minilm().model();
  EXPECT_THROW(model.forward({{101, 102}, {}}, ws), core::Error);
  EXPECT_THROW(model.forward({std::vector<int32_t>(513, 1000)}, ws), core::Error);
  EXPECT_THROW(model.forward({{101, 30522, 102}}, ws), core::Error);
  EXPECT_THROW(model.forward({{101, -1, 102}}, ws), core::Error);
}

}  // namespace
}  // namespace attncache
