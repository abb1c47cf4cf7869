// Choosing where embeddings run (--device cpu|cuda|auto) and falling back to the CPU engine when
// the GPU fails mid-run. The GPU is stood in for by a function here, so these run without one;
// the GPU encoder itself is tested in bert_cuda_test.cc.
#include "attncache/device_embedder.h"

#include <gtest/gtest.h>

#include <fstream>
#include <map>

#include "attncache/decoder.h"
#include "core/error.h"
#include "support/real_model.h"
#include "support/run_cli.h"
#include "support/temp_dir.h"
#include "support/test_paths.h"

namespace attncache {
namespace {

using testing_support::minilm;

std::vector<std::vector<int32_t>> batch(const std::string& text) {
  return {minilm().tokenize(text, 64).ids};
}

TEST(DeviceEmbedder, ParsesTheDeviceNames) {
  EXPECT_EQ(parse_device("cpu"), Device::kCpu);
  EXPECT_EQ(parse_device("cuda"), Device::kCuda);
  EXPECT_EQ(parse_device("auto"), Device::kAuto);
  EXPECT_THROW(parse_device("gpu"), core::Error);
}

TEST(DeviceEmbedder, CpuRunsTheCpuEngine) {
  DeviceEmbedder e(minilm(), Device::kCpu);
  EXPECT_EQ(e.where(), "cpu");
  EXPECT_EQ(e.embed(batch("a red fox")), minilm().embed(batch("a red fox")));
}

TEST(DeviceEmbedder, WithoutAGpuCudaIsBadInputAndAutoRunsOnTheCpu) {
  if (cuda_device_count() > 0) GTEST_SKIP() << "a CUDA device is present";
  try {
    DeviceEmbedder e(minilm(), Device::kCuda);
    FAIL() << "chose CUDA without a GPU";
  } catch (const core::Error& e) {
    EXPECT_EQ(e.kind(), core::ErrorKind::kBadInput);
    const std::string what = e.what();
    EXPECT_TRUE(what.find("no CUDA device") != std::string::npos ||
                what.find("no CUDA backend") != std::string::npos)
        << what;
  }
  DeviceEmbedder e(minilm(), Device::kAuto);
  EXPECT_EQ(e.where(), "cpu");
  EXPECT_EQ(e.embed(batch("a red fox")), minilm().embed(batch("a red fox")));
}

TEST(DeviceEmbedder, AGpuFailureHandsThisAndEveryLaterBatchToTheCpu) {
  int gpu_calls = 0;
  DeviceEmbedder e(
      minilm(),
      [&](const std::vector<std::vector<int32_t>>& b) {
        if (++gpu_calls == 2) core::throw_internal("CUDA error: an illegal memory access");
        std::vector<float> out = minilm().embed(b);
        for (float& x : out) x = -x;  // marks what the stand-in computed
        return out;
      },
      "test GPU");
  EXPECT_EQ(e.where(), "test GPU");
  const auto want = minilm().embed(batch("the first text"));
  EXPECT_EQ(e.embed(batch("the first text"))[0], -want[0]);  // on the "GPU"
  EXPECT_EQ(e.embed(batch("the second text")), minilm().embed(batch("the second text")));
  EXPECT_EQ(e.where(), "cpu");
  EXPECT_EQ(e.embed(batch("the third text")), minilm().embed(batch("the third text")));
  EXPECT_EQ(gpu_calls, 2);  // the failed GPU is not tried again
}

// A batch the GPU refuses as bad input (too little device memory, say) is not a GPU failure:
// the CPU runs that batch and the GPU the next one; input the CPU refuses as well is an error.
TEST(DeviceEmbedder, ABatchTheGpuRefusesRunsOnTheCpu) {
  int gpu_calls = 0;
  DeviceEmbedder e(
      minilm(),
      [&](const std::vector<std::vector<int32_t>>& b) -> std::vector<float> {
        ++gpu_calls;
        if (b.size() > 1) core::throw_bad_input("too little GPU memory for the activations");
        std::vector<float> out = minilm().embed(b);
        for (float& x : out) x = -x;  // marks what the stand-in computed
        return out;
      },
      "test GPU");
  std::vector<std::vector<int32_t>> two = batch("a red fox");
  two.push_back(batch("a lazy dog")[0]);
  EXPECT_EQ(e.embed(two), minilm().embed(two));
  EXPECT_FALSE(e.last_on_gpu());
  EXPECT_EQ(e.where(), "test GPU");
  EXPECT_EQ(e.embed(batch("x"))[0], -minilm().embed(batch("x"))[0]);
  EXPECT_TRUE(e.last_on_gpu());
  try {
    e.embed({{1, 2}, {999999}});
    FAIL() << "an id outside the vocabulary was embedded";
  } catch (const core::Error& error) {
    EXPECT_EQ(error.kind(), core::ErrorKind::kBadInput);
    EXPECT_NE(std::string(error.what()).find("outside the vocabulary"), std::string::npos);
  }
  EXPECT_EQ(gpu_calls, 3);
  EXPECT_TRUE(e.on_gpu());
}

// A stand-in GPU embed that counts its calls and returns the CPU engine's vectors.
DeviceEmbedder::BatchFn counting_gpu(int& calls) {
  return [&calls](const std::vector<std::vector<int32_t>>& b) {
    ++calls;
    return minilm().embed(b);
  };
}

// Once the GPU is gone: where() says so, and embed() runs on the CPU without a word on stderr
// and without calling the stand-in (`gpu_calls` stays 0).
void expect_quietly_on_the_cpu(DeviceEmbedder& e, const int& gpu_calls) {
  EXPECT_FALSE(e.on_gpu());
  EXPECT_EQ(e.where(), "cpu");
  testing::internal::CaptureStderr();
  EXPECT_EQ(e.embed(batch("a lazy dog")), minilm().embed(batch("a lazy dog")));
  EXPECT_EQ(testing::internal::GetCapturedStderr(), "");
  EXPECT_FALSE(e.last_on_gpu());
  EXPECT_EQ(gpu_calls, 0);
}

// A GPU failure with stored maps (AttnCache on the GPU) is passed on for the caller to fall
// back and warn; the exact path's later batches then run on the CPU without a second warning.
TEST(DeviceEmbedder, AGpuFailureWithStoredMapsSendsTheExactPathToTheCpuQuietly) {
  int gpu_calls = 0;
  DeviceEmbedder e(
      minilm(), counting_gpu(gpu_calls), "test GPU", nullptr,
      [](const std::vector<std::vector<int32_t>>&, const DeviceMapPlan*) -> std::vector<float> {
        core::throw_internal("CUDA error: an illegal memory access");
      });
  try {
    e.embed_with_maps(batch("a red fox"), nullptr);
    FAIL() << "the failure was not passed on";
  } catch (const core::Error& error) {
    EXPECT_EQ(error.kind(), core::ErrorKind::kInternal);
  }
  expect_quietly_on_the_cpu(e, gpu_calls);
  EXPECT_THROW(e.embed_with_maps(batch("a red fox"), nullptr), core::Error);  // no GPU now
}

// A GPU failure that other work on the GPU met and reported (AttnCache's map cache): drop_gpu
// sends the later batches to the CPU without a warning of its own.
TEST(DeviceEmbedder, DroppingTheGpuSendsLaterBatchesToTheCpuQuietly) {
  int gpu_calls = 0;
  DeviceEmbedder e(minilm(), counting_gpu(gpu_calls), "test GPU");
  e.drop_gpu();
  expect_quietly_on_the_cpu(e, gpu_calls);
}

// Every map the hook asks for, kept per (layer, sequence).
class KeepingHook : public AttentionHook {
 public:
  float* record(int layer, int seq, int n_tokens) override {
    auto& map = maps[{layer, seq}];
    map.assign(static_cast<size_t>(minilm().num_heads()) * n_tokens * n_tokens, -1.0f);
    return map.data();
  }
  std::map<std::pair<int, int>, std::vector<float>> maps;
};

// Recording maps (the database build) falls back as embed does: a batch the GPU refuses runs on
// the CPU after a note, a GPU failure sends it and every later batch there after one warning,
// and the hook then holds the CPU engine's maps.
TEST(DeviceEmbedder, RecordingFallsBackToTheCpuAsEmbedDoes) {
  int gpu_calls = 0;
  DeviceEmbedder e(
      minilm(), [](const std::vector<std::vector<int32_t>>& b) { return minilm().embed(b); },
      "test GPU", nullptr, nullptr,
      [&](const std::vector<std::vector<int32_t>>&, AttentionHook&) -> std::vector<float> {
        if (++gpu_calls == 1) core::throw_bad_input("too little GPU memory for the maps");
        core::throw_internal("CUDA error: an illegal memory access");
      });
  const auto two = [] {
    auto b = batch("a red fox");
    b.push_back(batch("jumps over the lazy dog")[0]);
    return b;
  }();
  KeepingHook want;
  const std::vector<float> want_out = minilm().embed(two, &want);
  for (int call = 0; call < 3; ++call) {
    SCOPED_TRACE("call " + std::to_string(call));
    KeepingHook got;
    testing::internal::CaptureStderr();
    EXPECT_EQ(e.embed_recording(two, got), want_out);
    const std::string err = testing::internal::GetCapturedStderr();
    EXPECT_EQ(got.maps, want.maps);
    EXPECT_FALSE(e.last_on_gpu());
    if (call == 0) {
      EXPECT_NE(err.find("too little GPU memory"), std::string::npos) << err;
      EXPECT_TRUE(e.on_gpu());  // a refusal: this batch only
    } else if (call == 1) {
      EXPECT_NE(err.find("illegal memory access"), std::string::npos) << err;
      EXPECT_FALSE(e.on_gpu());  // a failure: the CPU from now on
    } else {
      EXPECT_EQ(err, "");
    }
  }
  EXPECT_EQ(gpu_calls, 2);
}

// A decoder's token log-probabilities: the GPU model returns one row per token ([Σ N], 0 for each
// sequence's last token); each sequence gets its N − 1 predictions.
TEST(DeviceEmbedder, TokenLogProbsSplitTheGpuRowsPerSequence) {
  std::unique_ptr<Decoder> decoder =
      Decoder::load(testing_paths::model_dir("SmolLM2-135M-Instruct"));
  const std::vector<std::vector<int32_t>> b = {{1, 2, 3, 4}, {5}, {6, 7}};
  int gpu_calls = 0;
  DeviceEmbedder e(*decoder, nullptr, "test GPU",
                   [&](const std::vector<std::vector<int32_t>>& seqs) {
                     size_t rows = 0;
                     for (const auto& ids : seqs) rows += ids.size();
                     if (++gpu_calls == 2) return std::vector<float>(rows - 1);  // one row short
                     std::vector<float> out(rows);
                     for (size_t r = 0; r < rows; ++r) out[r] = -static_cast<float>(r + 1);
                     return out;
                   });
  EXPECT_TRUE(e.on_gpu());
  const std::vector<std::vector<double>> want_gpu = {{-1, -2, -3}, {}, {-6}};
  EXPECT_EQ(e.token_log_probs(b), want_gpu);
  EXPECT_TRUE(e.last_on_gpu());
  // A GPU whose answer has the wrong shape has failed: the CPU answers, now and later.
  const std::vector<std::vector<double>> want_cpu = decoder->token_log_probs(b);
  EXPECT_EQ(e.token_log_probs(b), want_cpu);
  EXPECT_FALSE(e.on_gpu());
  EXPECT_FALSE(e.last_on_gpu());
  EXPECT_EQ(e.token_log_probs(b), want_cpu);
  EXPECT_EQ(gpu_calls, 2);
  // An encoder has no token log-probabilities.
  DeviceEmbedder encoder(minilm(), Device::kCpu);
  EXPECT_THROW(encoder.token_log_probs(batch("a red fox")), core::Error);
}

TEST(DeviceEmbedder, EmbedCliRefusesCudaWithoutAGpu) {
  if (cuda_device_count() > 0) GTEST_SKIP() << "a CUDA device is present";
  testing_support::TempDir dir;
  const std::string input = dir.path("texts.txt");
  std::ofstream(input) << "hello\n";
  const auto r = testing_support::run_cli("embed --model " + testing_paths::model_dir() +
                                          " --input " + input + " --device cuda");
  EXPECT_EQ(r.exit_code, 2) << r.output;
  EXPECT_NE(r.output.find("CUDA"), std::string::npos) << r.output;
  const auto cpu = testing_support::run_cli("embed --model " + testing_paths::model_dir() +
                                            " --input " + input + " --device auto");
  EXPECT_EQ(cpu.exit_code, 0) << cpu.output;
  EXPECT_NE(cpu.output.find("running on the CPU"), std::string::npos) << cpu.output;
}

}  // namespace
}  // namespace attncache
