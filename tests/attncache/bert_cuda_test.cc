// The GPU encoder on real all-MiniLM-L6-v2 weights and real text: the exact path against the CPU
// engine, the reuse path fed an input's own recorded maps against the exact path, and its errors
// (no device, too little memory, bad batches). Every test that needs a GPU skips without one.
#include "attncache/model/bert_cuda.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <map>
#include <string>

#include "attncache/kernels/cuda/attention.h"
#include "attncache/kernels/cuda/runtime.h"
#include "attncache/model/cuda_recording.h"
#include "core/error.h"
#include "core/text_lines.h"
#include "support/real_model.h"
#include "support/test_paths.h"

namespace attncache {
namespace {

using testing_support::cosine;
using testing_support::minilm;

#define SKIP_WITHOUT_GPU() \
  if (cuda::device_count() == 0) GTEST_SKIP() << "no CUDA device"

CudaBertEncoder& gpu() {
  static std::unique_ptr<CudaBertEncoder> e = CudaBertEncoder::create(minilm().config());
  return *e;
}

const std::vector<std::string>& corpus() {
  static const std::vector<std::string> lines =
      core::read_lines(testing_paths::data_dir() + "/corpus.txt");
  return lines;
}

// Every `stride`-th corpus line, tokenized as a user's input (truncated at max_seq_length).
std::vector<std::vector<int32_t>> corpus_batch(size_t first, size_t count, size_t stride) {
  std::vector<std::vector<int32_t>> batch;
  for (size_t i = first; batch.size() < count && i < corpus().size(); i += stride) {
    batch.push_back(minilm().tokenize(corpus()[i], minilm().max_tokens()).ids);
  }
  return batch;
}

// Real text of exactly `n` tokens (n ≤ 512): consecutive corpus lines joined, cut at n.
std::vector<int32_t> long_input(size_t first_line, int n) {
  std::string text;
  for (size_t i = first_line; i < corpus().size() && text.size() < 8 * static_cast<size_t>(n);
       ++i) {
    text += corpus()[i] + " ";
  }
  std::vector<int32_t> ids = minilm().tokenize(text, n).ids;
  EXPECT_EQ(ids.size(), static_cast<size_t>(n));
  return ids;
}

// Lengths that cross the kernels' edges: 1-row blocks, partial 64-row blocks, n % 8 ≠ 0 (the
// reuse kernel's scalar loads), several key blocks, the position table's end.
std::vector<std::vector<int32_t>> edge_batch() {
  std::vector<std::vector<int32_t>> batch = corpus_batch(3, 3, 101);
  for (int n : {64, 65, 127, 200, 333, 512}) batch.push_back(long_input(40 + n, n));
  batch.push_back(minilm().tokenize("Hi", 16).ids);
  return batch;
}

struct Agreement {
  double worst = 1.0, mean = 0.0;
};

Agreement compare(const std::vector<float>& a, const std::vector<float>& b, int d) {
  EXPECT_EQ(a.size(), b.size());
  Agreement r;
  const size_t n = a.size() / d;
  for (size_t s = 0; s < n; ++s) {
    const double c = cosine(a.data() + s * d, b.data() + s * d, d);
    r.worst = std::min(r.worst, c);
    r.mean += c / n;
  }
  return r;
}

TEST(CudaBertEncoder, NoDeviceOrAMissingDeviceIsAClearError) {
  if (cuda::device_count() == 0) {
    try {
      CudaBertEncoder::create(minilm().config());
      FAIL() << "created a GPU encoder without a GPU";
    } catch (const core::Error& e) {
      EXPECT_EQ(e.kind(), core::ErrorKind::kBadInput);
      EXPECT_NE(std::string(e.what()).find("no CUDA device"), std::string::npos) << e.what();
    }
    return;
  }
  CudaEncoderOptions options;
  options.device = 99;
  try {
    CudaBertEncoder::create(minilm().config(), options);
    FAIL() << "created a GPU encoder on device 99";
  } catch (const core::Error& e) {
    EXPECT_EQ(e.kind(), core::ErrorKind::kBadInput);
    EXPECT_NE(std::string(e.what()).find("does not exist"), std::string::npos) << e.what();
  }
}

TEST(CudaBertEncoder, TooLittleDeviceMemoryIsAClearError) {
  SKIP_WITHOUT_GPU();
  CudaEncoderOptions options;
  options.memory_limit = 16u << 20;  // the weights alone are ~90 MB
  try {
    CudaBertEncoder::create(minilm().config(), options);
    FAIL() << "created a GPU encoder in 16 MiB";
  } catch (const core::Error& e) {
    EXPECT_EQ(e.kind(), core::ErrorKind::kBadInput);
    EXPECT_NE(std::string(e.what()).find("too little GPU memory"), std::string::npos) << e.what();
    std::printf("  limit: %s\n", e.what());
  }
  // A device that is really full: take all but 64 MiB of it first.
  size_t free_bytes = 0, total_bytes = 0;
  cuda::memory_info(0, &free_bytes, &total_bytes);
  cuda::DeviceBuffer hog(free_bytes - (64u << 20), "the test's hog");
  try {
    CudaBertEncoder::create(minilm().config());
    FAIL() << "created a GPU encoder on a full device";
  } catch (const core::Error& e) {
    EXPECT_EQ(e.kind(), core::ErrorKind::kBadInput);
    EXPECT_NE(std::string(e.what()).find("too little GPU memory"), std::string::npos) << e.what();
    std::printf("  full device: %s\n", e.what());
  }
  // An allocation that fails names what it was for.
  EXPECT_THROW(cuda::DeviceBuffer(size_t{1} << 40, "a terabyte"), core::Error);
}

TEST(CudaBertEncoder, BadBatchesAreRefused) {
  SKIP_WITHOUT_GPU();
  const int vocab = minilm().config().bert.vocab_size;
  EXPECT_THROW(gpu().embed({{101, 102}, {}}), core::Error);
  EXPECT_THROW(gpu().embed({{101, vocab, 102}}), core::Error);
  EXPECT_THROW(gpu().embed({{101, -1, 102}}), core::Error);
  EXPECT_THROW(gpu().embed({std::vector<int32_t>(513, 1000)}), core::Error);
  DeviceMapPlan plan;
  plan.slots.resize(3);  // 6 layers × 1 sequence needs 6
  EXPECT_THROW(gpu().embed({{101, 1000, 102}}, &plan), core::Error);
  EXPECT_TRUE(gpu().embed({}).empty());
  // The encoder still works after refusing.
  EXPECT_EQ(gpu().embed({{101, 1000, 102}}).size(), 384u);
}

TEST(CudaBertEncoder, ExactPathMatchesTheCpuEngineOnTheCorpus) {
  SKIP_WITHOUT_GPU();
  const int d = minilm().dim();
  // 295 corpus lines in batches of 32 (mixed lengths, packed), then the edge lengths.
  std::vector<std::vector<std::vector<int32_t>>> batches;
  const std::vector<std::vector<int32_t>> lines = corpus_batch(0, 1000, 10);
  for (size_t b = 0; b < lines.size(); b += 32) {
    batches.emplace_back(lines.begin() + b, lines.begin() + std::min(lines.size(), b + 32));
  }
  batches.push_back(edge_batch());
  Agreement all;
  size_t count = 0;
  for (const auto& batch : batches) {
    const std::vector<float> cpu = minilm().embed(batch);
    const std::vector<float> dev = gpu().embed(batch);
    const Agreement a = compare(cpu, dev, d);
    all.worst = std::min(all.worst, a.worst);
    all.mean += a.mean * batch.size();
    count += batch.size();
    EXPECT_GE(a.worst, 0.999);
  }
  all.mean /= count;
  std::printf("  %zu inputs on %s: cosine to the CPU engine worst %.6f, mean %.6f\n", count,
              gpu().device_description().c_str(), all.worst, all.mean);
}

TEST(CudaBertEncoder, HiddenStatesMatchTheCpuEngine) {
  SKIP_WITHOUT_GPU();
  const auto batch = edge_batch();
  BertWorkspace ws;
  const std::vector<float> cpu = minilm().model().forward(batch, ws);
  const std::vector<float> dev = gpu().encode(batch);
  ASSERT_EQ(cpu.size(), dev.size());
  double diff = 0, norm = 0;
  for (size_t i = 0; i < cpu.size(); ++i) {
    diff += (double(cpu[i]) - dev[i]) * (double(cpu[i]) - dev[i]);
    norm += double(cpu[i]) * cpu[i];
  }
  const double rel = std::sqrt(diff / norm);
  const Agreement rows = compare(cpu, dev, minilm().dim());
  std::printf("  hidden states: relative L2 error %.2e, worst token cosine %.6f\n", rel,
              rows.worst);
  EXPECT_LT(rel, 0.03);
  EXPECT_GE(rows.worst, 0.99);
}

TEST(CudaBertEncoder, ExactGeluAndGraphsAgree) {
  SKIP_WITHOUT_GPU();
  const auto batch = edge_batch();
  const int d = minilm().dim();
  const std::vector<float> cpu = minilm().embed(batch);
  CudaEncoderOptions options;
  options.exact_gelu = true;
  options.cuda_graphs = false;
  auto exact = CudaBertEncoder::create(minilm().config(), options);
  const Agreement a = compare(cpu, exact->embed(batch), d);
  std::printf("  erf GELU: worst cosine to the CPU engine %.6f\n", a.worst);
  EXPECT_GE(a.worst, 0.999);
  // Eager, then captured, then replayed: the same kernels and algorithms, so the same numbers.
  const std::vector<float> first = gpu().embed(batch);
  const std::vector<float> second = gpu().embed(batch);
  const std::vector<float> third = gpu().embed(batch);
  float max_diff = 0;
  for (size_t i = 0; i < first.size(); ++i) {
    max_diff =
        std::max({max_diff, std::fabs(first[i] - second[i]), std::fabs(first[i] - third[i])});
  }
  std::printf("  eager vs graph: max |difference| %.2e\n", max_diff);
  EXPECT_LT(max_diff, 1e-6f);
}

// Device buffers for every (layer, sequence) map of a batch, and plans over them.
struct DeviceMaps {
  std::vector<cuda::DeviceBuffer> buffers;  // [layer · batch + sequence]
  DeviceMapPlan record_plan() {
    DeviceMapPlan plan;
    for (auto& b : buffers) plan.slots.push_back({nullptr, b.data(), ~0ull});
    return plan;
  }
  DeviceMapPlan reuse_plan(uint64_t heads, const std::vector<bool>& hit) {
    DeviceMapPlan plan;
    const size_t nseq = hit.size();
    for (size_t i = 0; i < buffers.size(); ++i) {
      if (hit[i % nseq]) {
        plan.slots.push_back({buffers[i].data(), nullptr, heads});
      } else {
        plan.slots.push_back({});
      }
    }
    return plan;
  }
};

DeviceMaps allocate_maps(const std::vector<std::vector<int32_t>>& batch) {
  DeviceMaps maps;
  for (int l = 0; l < minilm().num_layers(); ++l) {
    for (const auto& seq : batch) {
      maps.buffers.emplace_back(gpu().map_bytes(static_cast<int>(seq.size())), "test maps");
    }
  }
  return maps;
}

// Records the CPU engine's fp32 probabilities.
class RecordHook : public AttentionHook {
 public:
  std::map<std::pair<int, int>, std::vector<float>> maps;
  float* record(int layer, int seq, int n) override {
    auto& m = maps[{layer, seq}];
    m.resize(static_cast<size_t>(minilm().num_heads()) * n * n);
    return m.data();
  }
};

TEST(CudaBertEncoder, RecordedMapsAreTheCpuEnginesProbabilities) {
  SKIP_WITHOUT_GPU();
  const auto batch = edge_batch();
  DeviceMaps maps = allocate_maps(batch);
  DeviceMapPlan plan = maps.record_plan();
  const std::vector<float> with_record = gpu().embed(batch, &plan);
  // Recording does not change the result.
  EXPECT_GE(compare(with_record, gpu().embed(batch), minilm().dim()).worst, 0.99999);
  RecordHook hook;
  minilm().embed(batch, &hook);
  double worst = 0, worst_row_sum = 0;
  for (int l = 0; l < minilm().num_layers(); ++l) {
    for (size_t s = 0; s < batch.size(); ++s) {
      const int n = static_cast<int>(batch[s].size());
      const cuda::DeviceBuffer& buf = maps.buffers[l * batch.size() + s];
      std::vector<uint16_t> dev(buf.size() / 2);
      buf.download(dev.data(), buf.size());
      const std::vector<float>& cpu = hook.maps[{l, static_cast<int>(s)}];
      ASSERT_EQ(cpu.size(), dev.size());
      for (size_t row = 0; row < dev.size() / n; ++row) {
        double sum = 0;
        for (int j = 0; j < n; ++j) {
          const float p = core::bf16_to_f32(dev[row * n + j]);
          sum += p;
          worst = std::max(worst, std::fabs(double(p) - cpu[row * n + j]));
        }
        worst_row_sum = std::max(worst_row_sum, std::fabs(sum - 1.0));
      }
    }
  }
  std::printf("  recorded P: max |GPU − CPU| %.2e, max |row sum − 1| %.2e\n", worst, worst_row_sum);
  // Layer by layer the GPU's bf16 inputs drift from the CPU's fp32 ones; P follows them.
  EXPECT_LT(worst, 0.05);
  EXPECT_LT(worst_row_sum, 0.02);
}

// What `attncache build --device cuda` records: the GPU's maps handed to a hook as the CPU
// engine records them (H×N×N, fp32).
TEST(CudaBertEncoder, RecordingForAHookGivesTheCpuEnginesLayout) {
  SKIP_WITHOUT_GPU();
  const auto batch = edge_batch();
  RecordHook on_gpu, on_cpu;
  const std::vector<float> out = cuda_forward::forward_recording(
      batch, minilm().num_layers(), minilm().num_heads(), false, on_gpu,
      [&](const DeviceMapPlan& plan) { return gpu().embed(batch, &plan); });
  EXPECT_GE(compare(out, gpu().embed(batch), minilm().dim()).worst, 0.99999);
  minilm().embed(batch, &on_cpu);
  ASSERT_EQ(on_gpu.maps.size(), on_cpu.maps.size());
  double worst = 0;
  for (const auto& [key, want] : on_cpu.maps) {
    const std::vector<float>& got = on_gpu.maps[key];
    ASSERT_EQ(got.size(), want.size());
    for (size_t k = 0; k < want.size(); ++k)
      worst = std::max(worst, std::fabs(double(got[k]) - want[k]));
  }
  std::printf("  maps for a hook: max |GPU − CPU| %.2e\n", worst);
  EXPECT_LT(worst, 0.05);
}

TEST(CudaBertEncoder, ReusingAnInputsOwnMapsEqualsTheExactPath) {
  SKIP_WITHOUT_GPU();
  const auto batch = edge_batch();
  const int d = minilm().dim();
  DeviceMaps maps = allocate_maps(batch);
  DeviceMapPlan record = maps.record_plan();
  const std::vector<float> exact = gpu().embed(batch, &record);

  // Every sequence hits at every layer with every head: Q/K projections and QKᵀ skipped.
  const std::vector<bool> all(batch.size(), true);
  DeviceMapPlan full = maps.reuse_plan(~0ull, all);
  const Agreement a = compare(exact, gpu().embed(batch, &full), d);
  // Some heads reused, the others computed.
  DeviceMapPlan partial = maps.reuse_plan(0x0f0ull, all);
  const Agreement b = compare(exact, gpu().embed(batch, &partial), d);
  // Hits and misses in one batch (every other sequence).
  std::vector<bool> some(batch.size());
  for (size_t s = 0; s < some.size(); ++s) some[s] = s % 2 == 0;
  DeviceMapPlan mixed = maps.reuse_plan(~0ull, some);
  const Agreement c = compare(exact, gpu().embed(batch, &mixed), d);
  std::printf("  reuse vs exact, worst cosine: all heads %.6f, heads 4-7 %.6f, mixed batch %.6f\n",
              a.worst, b.worst, c.worst);
  EXPECT_GE(a.worst, 0.999);
  EXPECT_GE(b.worst, 0.999);
  EXPECT_GE(c.worst, 0.999);
  // Replayed as a graph too.
  const std::vector<float> again = gpu().embed(batch, &full);
  EXPECT_GE(compare(exact, again, d).worst, 0.999);
}

TEST(CudaBertEncoder, ReusingOneByteMapsIsCloseToTheExactPath) {
  SKIP_WITHOUT_GPU();
  const auto batch = edge_batch();
  const int d = minilm().dim();
  DeviceMaps maps = allocate_maps(batch);
  DeviceMapPlan record = maps.record_plan();
  const std::vector<float> exact = gpu().embed(batch, &record);
  for (const core::DType dtype : {core::DType::kP8, core::DType::kFP8}) {
    const char* name = core::dtype_name(dtype).data();
    // Copies made on the host (the map database's conversion) and on the device agree.
    std::vector<cuda::DeviceBuffer> copies;
    DeviceMapPlan plan;
    size_t mismatches = 0;
    for (const cuda::DeviceBuffer& buf : maps.buffers) {
      std::vector<uint16_t> bf16(buf.size() / 2);
      buf.download(bf16.data(), buf.size());
      std::vector<float> f32(bf16.size());
      core::convert_to_f32(core::DType::kBF16, bf16.data(), f32.size(), f32.data());
      std::vector<uint8_t> host(f32.size()), dev(f32.size());
      core::convert_from_f32(dtype, f32.data(), f32.size(), host.data());
      copies.emplace_back(host.size(), "test one-byte maps");
      if (dtype == core::DType::kP8) {
        cuda::maps_to_p8(buf.data(), copies.back().data(), host.size(), nullptr);
      } else {
        cuda::maps_to_fp8(buf.data(), copies.back().data(), host.size(), nullptr);
      }
      copies.back().download(dev.data(), dev.size());
      for (size_t i = 0; i < host.size(); ++i) mismatches += host[i] != dev[i];
      plan.slots.push_back({copies.back().data(), nullptr, ~0ull, dtype});
    }
    EXPECT_EQ(mismatches, 0u) << name;
    const Agreement a = compare(exact, gpu().embed(batch, &plan), d);
    std::printf("  %s maps reused vs exact: worst cosine %.6f\n", name, a.worst);
    EXPECT_GE(a.worst, 0.999) << name;
    // A dtype the kernels do not read is refused.
    plan.slots[0].dtype = core::DType::kF16;
    EXPECT_THROW(gpu().embed(batch, &plan), core::Error);
  }
}

TEST(CudaBertEncoder, CpuRecordedMapsReusedOnTheGpuMatchTheCpuEngine) {
  SKIP_WITHOUT_GPU();
  const auto batch = edge_batch();
  RecordHook hook;
  const std::vector<float> cpu = minilm().embed(batch, &hook);
  DeviceMaps maps;
  DeviceMapPlan plan;
  for (int l = 0; l < minilm().num_layers(); ++l) {
    for (size_t s = 0; s < batch.size(); ++s) {
      const std::vector<float>& m = hook.maps[{l, static_cast<int>(s)}];
      std::vector<uint16_t> bf16(m.size());
      core::convert_from_f32(core::DType::kBF16, m.data(), m.size(), bf16.data());
      maps.buffers.emplace_back(bf16.size() * 2, "test maps");
      maps.buffers.back().upload(bf16.data(), bf16.size() * 2);
      plan.slots.push_back({maps.buffers.back().data(), nullptr, ~0ull});
    }
  }
  const Agreement a = compare(cpu, gpu().embed(batch, &plan), minilm().dim());
  std::printf("  CPU maps reused on the GPU vs the CPU engine: worst cosine %.6f\n", a.worst);
  EXPECT_GE(a.worst, 0.999);
}

}  // namespace
}  // namespace attncache
