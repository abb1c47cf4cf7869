// The GPU decoder against the CPU engine (LlamaModel, itself checked against transformers): the
// tiny Llama (rope llama3, grouped-query), Qwen2 (q/k/v biases) and SmolLM-shaped models of
// tests/data/llama_hf, and random-weight models written here with head sizes 64 and 128 (the
// sizes of real Llama models). Then the AttnCache paths: recorded maps against the CPU engine's
// probabilities, reuse of an input's own maps (bf16, P8, some heads, some sequences) and of maps
// the CPU engine recorded, maps streamed from host memory, and the errors. Every test that needs
// a GPU skips without one.
#include "attncache/model/llama_cuda.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <map>
#include <memory>
#include <nlohmann/json.hpp>
#include <random>
#include <string>

#include "attncache/kernels/cuda/attention.h"
#include "attncache/kernels/cuda/check.h"
#include "attncache/kernels/cuda/runtime.h"
#include "attncache/kernels/stored_maps.h"
#include "attncache/memo/device_map_cache.h"
#include "attncache/model/cuda_forward.h"
#include "attncache/model/cuda_recording.h"
#include "core/dtype.h"
#include "core/error.h"
#include "support/safetensors_writer.h"
#include "support/temp_dir.h"
#include "support/test_paths.h"

namespace attncache {
namespace {

#define SKIP_WITHOUT_GPU() \
  if (cuda::device_count() == 0) GTEST_SKIP() << "no CUDA device"

using Batch = std::vector<std::vector<int32_t>>;

double cosine(const float* a, const float* b, size_t n) {
  double ab = 0, aa = 0, bb = 0;
  for (size_t i = 0; i < n; ++i)
    ab += double(a[i]) * b[i], aa += double(a[i]) * a[i], bb += double(b[i]) * b[i];
  return ab / std::sqrt(aa * bb + 1e-30);
}

// The worst cosine between corresponding rows of width d.
double worst_cosine(const std::vector<float>& a, const std::vector<float>& b, int d) {
  EXPECT_EQ(a.size(), b.size());
  double worst = 1.0;
  for (size_t r = 0; r < std::min(a.size(), b.size()) / d; ++r) {
    worst = std::min(worst, cosine(a.data() + r * d, b.data() + r * d, d));
  }
  return worst;
}

// A Llama-shaped Hugging Face directory with seeded random weights (N(0, 0.02²) projections,
// N(0, 1) embeddings, norms around 1), in `dir`.
void write_random_llama(const std::string& dir, int hidden, int heads, int kv_heads, int head_dim,
                        int layers, uint32_t seed) {
  const int ff = 2 * hidden, vocab = 512;
  std::filesystem::create_directories(dir);
  std::mt19937 rng(seed);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  auto tensor = [&](const std::string& name, std::vector<int64_t> shape, float scale,
                    float mean = 0.0f) {
    testing_support::TestTensor t{name, "F32", shape, {}};
    size_t n = 1;
    for (int64_t s : shape) n *= s;
    t.bytes.resize(4 * n);
    for (size_t i = 0; i < n; ++i) {
      const float v = mean + scale * normal(rng);
      std::memcpy(t.bytes.data() + 4 * i, &v, 4);
    }
    return t;
  };
  std::vector<testing_support::TestTensor> ts;
  ts.push_back(tensor("model.embed_tokens.weight", {vocab, hidden}, 1.0f));
  ts.push_back(tensor("model.norm.weight", {hidden}, 0.1f, 1.0f));
  for (int l = 0; l < layers; ++l) {
    const std::string p = "model.layers." + std::to_string(l) + ".";
    ts.push_back(tensor(p + "input_layernorm.weight", {hidden}, 0.1f, 1.0f));
    ts.push_back(tensor(p + "post_attention_layernorm.weight", {hidden}, 0.1f, 1.0f));
    ts.push_back(tensor(p + "self_attn.q_proj.weight", {heads * head_dim, hidden}, 0.08f));
    ts.push_back(tensor(p + "self_attn.k_proj.weight", {kv_heads * head_dim, hidden}, 0.08f));
    ts.push_back(tensor(p + "self_attn.v_proj.weight", {kv_heads * head_dim, hidden}, 0.05f));
    ts.push_back(tensor(p + "self_attn.o_proj.weight", {hidden, heads * head_dim}, 0.02f));
    ts.push_back(tensor(p + "mlp.gate_proj.weight", {ff, hidden}, 0.02f));
    ts.push_back(tensor(p + "mlp.up_proj.weight", {ff, hidden}, 0.02f));
    ts.push_back(tensor(p + "mlp.down_proj.weight", {hidden, ff}, 0.02f));
  }
  testing_support::write_file(dir + "/model.safetensors", testing_support::safetensors_bytes(ts));
  const nlohmann::json config = {{"model_type", "llama"},           {"hidden_size", hidden},
                                 {"intermediate_size", ff},         {"num_attention_heads", heads},
                                 {"num_key_value_heads", kv_heads}, {"head_dim", head_dim},
                                 {"num_hidden_layers", layers},     {"vocab_size", vocab},
                                 {"max_position_embeddings", 4096}, {"rms_norm_eps", 1e-5},
                                 {"rope_theta", 500000.0},          {"hidden_act", "silu"},
                                 {"tie_word_embeddings", true}};
  testing_support::write_file(dir + "/config.json", config.dump(2));
}

struct TestModel {
  std::string name;
  std::unique_ptr<LlamaModel> cpu;
  std::unique_ptr<CudaLlamaModel> gpu;
};

// The models, loaded once: three from tests/data/llama_hf, two written with random weights.
std::vector<TestModel>& models() {
  static std::vector<TestModel> all = [] {
    std::vector<TestModel> m;
    static testing_support::TempDir dir;
    write_random_llama(dir.path("dh64"), 256, 4, 2, 64, 2, 7);
    write_random_llama(dir.path("dh128"), 256, 2, 1, 128, 2, 11);
    for (const std::string name : {"llama3", "qwen2", "smollm"}) {
      m.push_back({name, LlamaModel::load(testing_paths::data_dir() + "/llama_hf/" + name), {}});
    }
    for (const std::string name : {"dh64", "dh128"}) {
      m.push_back({name, LlamaModel::load(dir.path(name)), {}});
    }
    for (auto& t : m) t.gpu = CudaLlamaModel::create(*t.cpu);
    return m;
  }();
  return all;
}

// Seeded random ids; lengths that cross the kernels' 64-row blocks.
Batch random_batch(const LlamaConfig& c, uint32_t seed) {
  std::mt19937 rng(seed);
  std::uniform_int_distribution<int32_t> id(0, c.vocab_size - 1);
  Batch batch;
  for (int n : {1, 5, 63, 64, 65, 130, 250}) {
    if (n > c.context_length) continue;
    std::vector<int32_t> ids(n);
    for (auto& x : ids) x = id(rng);
    batch.push_back(ids);
  }
  return batch;
}

// Each sequence's last row of an every-token output (rows of width d).
std::vector<float> last_rows(const std::vector<float>& all, const Batch& batch, int d) {
  std::vector<float> last;
  for (size_t s = 0, row = 0; s < batch.size(); row += batch[s].size(), ++s) {
    const size_t r = row + batch[s].size() - 1;
    last.insert(last.end(), all.begin() + r * d, all.begin() + (r + 1) * d);
  }
  return last;
}

TEST(CudaLlamaModel, NoDeviceIsAClearError) {
  if (cuda::device_count() != 0) GTEST_SKIP() << "a CUDA device is present";
  auto cpu = LlamaModel::load(testing_paths::data_dir() + "/llama_hf/llama3");
  try {
    CudaLlamaModel::create(*cpu);
    FAIL() << "created a GPU decoder without a GPU";
  } catch (const core::Error& e) {
    EXPECT_EQ(e.kind(), core::ErrorKind::kBadInput);
    EXPECT_NE(std::string(e.what()).find("no CUDA device"), std::string::npos) << e.what();
  }
}

TEST(CudaLlamaModel, ExactPathMatchesTheCpuEngine) {
  SKIP_WITHOUT_GPU();
  for (TestModel& m : models()) {
    const LlamaConfig& c = m.cpu->config();
    const Batch batch = random_batch(c, 3);
    LlamaWorkspace ws;
    const std::vector<float> all = m.cpu->forward(batch, ws);
    const std::vector<float> last_cpu = last_rows(all, batch, c.hidden_size);
    std::vector<float> logits_cpu(batch.size() * c.vocab_size);
    m.cpu->logits(last_cpu.data(), static_cast<int>(batch.size()), logits_cpu.data());

    const auto all_gpu = m.gpu->forward(batch, CudaLlamaModel::Output::kAllHidden);
    const auto last_gpu = m.gpu->forward(batch, CudaLlamaModel::Output::kLastHidden);
    const auto logits_gpu = m.gpu->forward(batch, CudaLlamaModel::Output::kLastLogits);
    const double tokens = worst_cosine(all, all_gpu, c.hidden_size);
    const double last = worst_cosine(last_cpu, last_gpu, c.hidden_size);
    const double logits = worst_cosine(logits_cpu, logits_gpu, c.vocab_size);
    int top1 = 0;
    for (size_t s = 0; s < batch.size(); ++s) {
      const float* a = logits_cpu.data() + s * c.vocab_size;
      const float* b = logits_gpu.data() + s * c.vocab_size;
      top1 +=
          std::max_element(a, a + c.vocab_size) - a == std::max_element(b, b + c.vocab_size) - b;
    }
    std::printf(
        "  %-7s worst cosine to the CPU: tokens %.5f, last %.5f, logits %.5f; top-1 %d/%zu\n",
        m.name.c_str(), tokens, last, logits, top1, batch.size());
    EXPECT_GE(tokens, 0.999) << m.name;
    EXPECT_GE(last, 0.999) << m.name;
    EXPECT_GE(logits, 0.999) << m.name;
  }
}

// Every token's next-token log-probability on the device (the LM head in slices of rows, reduced
// there) against the CPU engine's log-softmax of its logits, what `score text` computes; each
// sequence's last entry is 0. Slices of 3 rows give what one slice gives.
TEST(CudaLlamaModel, TokenLogProbsMatchTheCpuEngine) {
  SKIP_WITHOUT_GPU();
  for (TestModel& m : models()) {
    const LlamaConfig& c = m.cpu->config();
    const Batch batch = random_batch(c, 5);
    LlamaWorkspace ws;
    const std::vector<float> hidden = m.cpu->forward(batch, ws);
    const auto gpu = m.gpu->forward(batch, CudaLlamaModel::Output::kTokenLogProbs);
    CudaDecoderOptions sliced;
    sliced.logits_slice_bytes = 3 * static_cast<size_t>(c.vocab_size) * 4;
    const auto gpu_sliced = CudaLlamaModel::create(*m.cpu, sliced)
                                ->forward(batch, CudaLlamaModel::Output::kTokenLogProbs);
    size_t total = 0;
    for (const auto& seq : batch) total += seq.size();
    ASSERT_EQ(gpu.size(), total) << m.name;
    ASSERT_EQ(gpu_sliced.size(), total) << m.name;
    std::vector<float> logits(c.vocab_size);
    double worst = 0, worst_sliced = 0, mean_abs = 0;
    for (size_t s = 0, row = 0; s < batch.size(); ++s) {
      for (size_t i = 0; i < batch[s].size(); ++i, ++row) {
        worst_sliced = std::max(worst_sliced, std::abs(double(gpu[row]) - gpu_sliced[row]));
        if (i + 1 == batch[s].size()) {
          EXPECT_EQ(gpu[row], 0.0f) << m.name << " sequence " << s;
          continue;
        }
        m.cpu->logits(hidden.data() + row * c.hidden_size, 1, logits.data());
        const double top = *std::max_element(logits.begin(), logits.end());
        double sum = 0;
        for (float x : logits) sum += std::exp(x - top);
        const double expected = logits[batch[s][i + 1]] - (top + std::log(sum));
        worst = std::max(worst, std::abs(expected - gpu[row]));
        mean_abs += std::abs(expected);
      }
    }
    mean_abs /= static_cast<double>(total - batch.size());
    std::printf(
        "  %-7s token log-probs vs the CPU: worst |difference| %.4f (mean |log p| %.2f), "
        "3-row slices vs one: %.2e\n",
        m.name.c_str(), worst, mean_abs, worst_sliced);
    EXPECT_LT(worst, 0.02 * std::max(1.0, mean_abs)) << m.name;
    EXPECT_LT(worst_sliced, 1e-3) << m.name;
  }
}

// Sequences long enough, and a batch big enough, that the decoder runs the exact kernel with
// 128-row query blocks.
TEST(CudaLlamaModel, LongSequencesMatchTheCpuEngine) {
  SKIP_WITHOUT_GPU();
  TestModel& m = models()[3];
  const LlamaConfig& c = m.cpu->config();
  std::mt19937 rng(23);
  std::uniform_int_distribution<int32_t> id(0, c.vocab_size - 1);
  Batch batch(6, std::vector<int32_t>(1600));
  for (auto& seq : batch) {
    for (auto& x : seq) x = id(rng);
  }
  LlamaWorkspace ws;
  const std::vector<float> all = m.cpu->forward(batch, ws);
  const auto gpu = m.gpu->forward(batch, CudaLlamaModel::Output::kAllHidden);
  const double worst = worst_cosine(all, gpu, c.hidden_size);
  std::printf("  6 × 1600 tokens: worst token cosine to the CPU %.5f\n", worst);
  EXPECT_GE(worst, 0.999);
}

TEST(CudaLlamaModel, GraphReplayEqualsEagerRuns) {
  SKIP_WITHOUT_GPU();
  TestModel& m = models()[3];
  CudaDecoderOptions eager;
  eager.cuda_graphs = false;
  auto plain = CudaLlamaModel::create(*m.cpu, eager);
  const Batch batch = random_batch(m.cpu->config(), 5);
  const auto want = plain->forward(batch, CudaLlamaModel::Output::kLastLogits);
  for (int call = 0; call < 3; ++call) {  // eager, capture, replay
    EXPECT_EQ(m.gpu->forward(batch, CudaLlamaModel::Output::kLastLogits), want) << "call " << call;
  }
}

// Device maps for every (layer, sequence) of a batch, and plans over them.
struct DeviceMaps {
  std::vector<cuda::DeviceBuffer> buffers;  // [layer · batch + sequence]
  DeviceMaps(const CudaLlamaModel& gpu, const Batch& batch, core::DType dtype) {
    for (int l = 0; l < gpu.config().num_layers; ++l) {
      for (const auto& seq : batch) {
        buffers.emplace_back(gpu.map_bytes(static_cast<int>(seq.size()), dtype), "test maps");
      }
    }
  }
  DeviceMapPlan record_plan() const {
    DeviceMapPlan plan;
    for (const auto& b : buffers) plan.slots.push_back({nullptr, b.data(), ~0ull});
    return plan;
  }
  DeviceMapPlan reuse_plan(uint64_t heads, const std::vector<bool>& hit,
                           core::DType dtype = core::DType::kBF16) const {
    DeviceMapPlan plan;
    for (size_t i = 0; i < buffers.size(); ++i) {
      if (hit[i % hit.size()]) {
        plan.slots.push_back({buffers[i].data(), nullptr, heads, dtype});
      } else {
        plan.slots.push_back({});
      }
    }
    return plan;
  }
};

// The batch's own maps, recorded by the GPU decoder (bf16).
DeviceMaps recorded_maps(CudaLlamaModel& gpu, const Batch& batch) {
  DeviceMaps maps(gpu, batch, core::DType::kBF16);
  const DeviceMapPlan record = maps.record_plan();
  gpu.forward(batch, CudaLlamaModel::Output::kLastHidden, &record);
  return maps;
}

// P8 copies of bf16 maps, finished on return (the model's stream does not wait for them).
DeviceMaps p8_copies(const CudaLlamaModel& gpu, const Batch& batch, const DeviceMaps& bf16) {
  DeviceMaps p8(gpu, batch, core::DType::kP8);
  for (size_t i = 0; i < p8.buffers.size(); ++i) {
    cuda::maps_to_p8(bf16.buffers[i].data(), p8.buffers[i].data(), p8.buffers[i].size(), nullptr);
  }
  EXPECT_EQ(cudaDeviceSynchronize(), cudaSuccess);
  return p8;
}

// P4 copies of bf16 maps, finished on return.
DeviceMaps p4_copies(const CudaLlamaModel& gpu, const Batch& batch, const DeviceMaps& bf16) {
  DeviceMaps p4(gpu, batch, core::DType::kP4);
  for (size_t i = 0; i < p4.buffers.size(); ++i) {
    cuda::maps_to_p4(bf16.buffers[i].data(), cuda::MapFormat::kBF16,
                     static_cast<int>(batch[i % batch.size()].size()), gpu.config().num_heads,
                     p4.buffers[i].data(), nullptr);
  }
  EXPECT_EQ(cudaDeviceSynchronize(), cudaSuccess);
  return p4;
}

// Records the CPU engine's fp32 probabilities (packed lower triangles).
class RecordHook : public AttentionHook {
 public:
  explicit RecordHook(int heads) : heads_(heads) {}
  std::map<std::pair<int, int>, std::vector<float>> maps;
  float* record(int layer, int seq, int n) override {
    auto& m = maps[{layer, seq}];
    m.resize(heads_ * cpu::attention_map_size(n, true));
    return m.data();
  }

 private:
  int heads_;
};

TEST(CudaLlamaModel, RecordedMapsAreTheCpuEnginesProbabilities) {
  SKIP_WITHOUT_GPU();
  for (TestModel& m : models()) {
    const LlamaConfig& c = m.cpu->config();
    const Batch batch = random_batch(c, 9);
    DeviceMaps maps(*m.gpu, batch, core::DType::kBF16);
    const DeviceMapPlan plan = maps.record_plan();
    const auto with_record = m.gpu->forward(batch, CudaLlamaModel::Output::kLastHidden, &plan);
    EXPECT_EQ(with_record, m.gpu->forward(batch, CudaLlamaModel::Output::kLastHidden));
    RecordHook hook(c.num_heads);
    LlamaWorkspace ws;
    m.cpu->forward(batch, ws, &hook);
    double worst = 0, worst_row_sum = 0, above = 0;
    for (int l = 0; l < c.num_layers; ++l) {
      for (size_t s = 0; s < batch.size(); ++s) {
        const int n = static_cast<int>(batch[s].size());
        const cuda::DeviceBuffer& buf = maps.buffers[l * batch.size() + s];
        std::vector<uint16_t> dev(buf.size() / 2);
        buf.download(dev.data(), buf.size());
        const std::vector<float>& cpu = hook.maps[{l, static_cast<int>(s)}];
        const size_t per_head = cuda::causal_map_elements(n), packed = cpu.size() / c.num_heads;
        for (int h = 0; h < c.num_heads; ++h) {
          for (int i = 0; i < n; ++i) {
            const int rb = i / 64;
            double sum = 0;
            for (int j = 0; j < (rb + 1) * 64; ++j) {
              const size_t tile = static_cast<size_t>(rb) * (rb + 1) / 2 + j / 64;
              const float p =
                  core::bf16_to_f32(dev[h * per_head + tile * 4096 + (i % 64) * 64 + j % 64]);
              if (j > i) {
                above = std::max(above, double(std::fabs(p)));
                continue;
              }
              sum += p;
              const float want = cpu[h * packed + cpu::attention_map_row(n, i, true) + j];
              worst = std::max(worst, std::fabs(double(p) - want));
            }
            worst_row_sum = std::max(worst_row_sum, std::fabs(sum - 1.0));
          }
        }
      }
    }
    std::printf("  %-7s recorded P: max |GPU − CPU| %.2e, max |row sum − 1| %.2e\n", m.name.c_str(),
                worst, worst_row_sum);
    EXPECT_LT(worst, 0.05) << m.name;
    EXPECT_LT(worst_row_sum, 0.02) << m.name;
    EXPECT_EQ(above, 0.0) << m.name << ": the tiles hold values above the diagonal";
  }
}

// What `attncache build --device cuda` records: the GPU's maps handed to a hook as the CPU
// engine records them (packed lower triangles, fp32). Twice, with other batches: the second runs
// the captured CUDA graph with new record buffers.
TEST(CudaLlamaModel, RecordingForAHookGivesTheCpuEnginesLayout) {
  SKIP_WITHOUT_GPU();
  for (TestModel& m : models()) {
    const LlamaConfig& c = m.cpu->config();
    for (const uint32_t seed : {21u, 22u}) {
      const Batch batch = random_batch(c, seed);
      RecordHook on_gpu(c.num_heads), on_cpu(c.num_heads);
      const std::vector<float> out = cuda_forward::forward_recording(
          batch, c.num_layers, c.num_heads, true, on_gpu, [&](const DeviceMapPlan& plan) {
            return m.gpu->forward(batch, CudaLlamaModel::Output::kLastHidden, &plan);
          });
      EXPECT_EQ(out, m.gpu->forward(batch, CudaLlamaModel::Output::kLastHidden)) << m.name;
      LlamaWorkspace ws;
      m.cpu->forward(batch, ws, &on_cpu);
      ASSERT_EQ(on_gpu.maps.size(), on_cpu.maps.size()) << m.name;
      double worst = 0;
      for (const auto& [key, want] : on_cpu.maps) {
        const std::vector<float>& got = on_gpu.maps[key];
        ASSERT_EQ(got.size(), want.size()) << m.name;
        for (size_t i = 0; i < want.size(); ++i) {
          worst = std::max(worst, std::fabs(double(got[i]) - want[i]));
        }
      }
      std::printf("  %-7s maps for a hook: max |GPU − CPU| %.2e\n", m.name.c_str(), worst);
      EXPECT_LT(worst, 0.05) << m.name;
    }
  }
}

TEST(CudaLlamaModel, ReusingOwnMapsMatchesTheExactPath) {
  SKIP_WITHOUT_GPU();
  for (TestModel& m : models()) {
    const LlamaConfig& c = m.cpu->config();
    const int d = c.hidden_size;
    const Batch batch = random_batch(c, 13);
    const auto exact = m.gpu->forward(batch, CudaLlamaModel::Output::kAllHidden);
    const DeviceMaps maps = recorded_maps(*m.gpu, batch);
    const std::vector<bool> all(batch.size(), true);
    std::vector<bool> alternate(batch.size());
    for (size_t s = 0; s < batch.size(); ++s) alternate[s] = s % 2 == 0;
    const DeviceMapPlan full = maps.reuse_plan(~0ull, all);
    const DeviceMapPlan some_heads = maps.reuse_plan(0b01, all);
    const DeviceMapPlan some_seqs = maps.reuse_plan(~0ull, alternate);
    const DeviceMaps p8 = p8_copies(*m.gpu, batch, maps);
    DeviceMaps fp8(*m.gpu, batch, core::DType::kFP8);
    for (size_t i = 0; i < fp8.buffers.size(); ++i) {
      cuda::maps_to_fp8(maps.buffers[i].data(), fp8.buffers[i].data(), fp8.buffers[i].size(),
                        nullptr);
    }
    ASSERT_EQ(cudaDeviceSynchronize(), cudaSuccess);  // the model's stream does not wait for it
    const DeviceMaps p4 = p4_copies(*m.gpu, batch, maps);
    const DeviceMapPlan full_p8 = p8.reuse_plan(~0ull, all, core::DType::kP8);
    const DeviceMapPlan full_fp8 = fp8.reuse_plan(~0ull, all, core::DType::kFP8);
    const DeviceMapPlan full_p4 = p4.reuse_plan(~0ull, all, core::DType::kP4);
    const double w_full =
        worst_cosine(exact, m.gpu->forward(batch, CudaLlamaModel::Output::kAllHidden, &full), d);
    const double w_heads = worst_cosine(
        exact, m.gpu->forward(batch, CudaLlamaModel::Output::kAllHidden, &some_heads), d);
    const double w_seqs = worst_cosine(
        exact, m.gpu->forward(batch, CudaLlamaModel::Output::kAllHidden, &some_seqs), d);
    const double w_p8 =
        worst_cosine(exact, m.gpu->forward(batch, CudaLlamaModel::Output::kAllHidden, &full_p8), d);
    const double w_fp8 = worst_cosine(
        exact, m.gpu->forward(batch, CudaLlamaModel::Output::kAllHidden, &full_fp8), d);
    const double w_p4 =
        worst_cosine(exact, m.gpu->forward(batch, CudaLlamaModel::Output::kAllHidden, &full_p4), d);
    std::printf(
        "  %-7s reuse of own maps, worst token cosine: all %.5f, head 0 %.5f, "
        "every other sequence %.5f, P8 %.5f, FP8 %.5f, P4 %.5f\n",
        m.name.c_str(), w_full, w_heads, w_seqs, w_p8, w_fp8, w_p4);
    EXPECT_GE(w_full, 0.999) << m.name;
    EXPECT_GE(w_heads, 0.999) << m.name;
    EXPECT_GE(w_seqs, 0.999) << m.name;
    EXPECT_GE(w_p8, 0.995) << m.name;
    EXPECT_GE(w_fp8, 0.99) << m.name;
    EXPECT_GE(w_p4, 0.98) << m.name;
  }
}

// Long inputs take the grouped reuse kernel where the image has wgmma: head 64 at one sequence of
// 2,100 tokens, head 128 at one of 900 (head group by head group) and at two of about 1,070 (four
// bands). Reusing their own maps gives the exact path.
TEST(CudaLlamaModel, ReusingOwnMapsOfLongInputsMatchesTheExactPath) {
  SKIP_WITHOUT_GPU();
  for (const size_t which : {3u, 4u}) {  // head sizes 64 and 128
    TestModel& m = models()[which];
    const LlamaConfig& c = m.cpu->config();
    std::mt19937 rng(31);
    std::uniform_int_distribution<int32_t> id(0, c.vocab_size - 1);
    for (const std::vector<int>& lengths :
         {std::vector<int>{c.head_dim == 64 ? 2100 : 900}, std::vector<int>{1100, 1030}}) {
      Batch batch;
      for (const int n : lengths) {
        batch.emplace_back(n);
        for (auto& x : batch.back()) x = id(rng);
      }
      const auto exact = m.gpu->forward(batch, CudaLlamaModel::Output::kAllHidden);
      const DeviceMaps maps = recorded_maps(*m.gpu, batch);
      const DeviceMaps p8 = p8_copies(*m.gpu, batch, maps);
      const DeviceMaps p4 = p4_copies(*m.gpu, batch, maps);
      const std::vector<bool> all(batch.size(), true);
      const DeviceMapPlan full = maps.reuse_plan(~0ull, all);
      const DeviceMapPlan full_p8 = p8.reuse_plan(~0ull, all, core::DType::kP8);
      const DeviceMapPlan full_p4 = p4.reuse_plan(~0ull, all, core::DType::kP4);
      const int d = c.hidden_size;
      // Twice each: eager, then the captured graph.
      for (int run = 0; run < 2; ++run) {
        const double w_full = worst_cosine(
            exact, m.gpu->forward(batch, CudaLlamaModel::Output::kAllHidden, &full), d);
        const double w_p8 = worst_cosine(
            exact, m.gpu->forward(batch, CudaLlamaModel::Output::kAllHidden, &full_p8), d);
        const double w_p4 = worst_cosine(
            exact, m.gpu->forward(batch, CudaLlamaModel::Output::kAllHidden, &full_p4), d);
        std::printf(
            "  %-7s %zu × %d tokens, reuse of own maps, worst token cosine: %.5f, P8 %.5f, "
            "P4 %.5f\n",
            m.name.c_str(), batch.size(), lengths[0], w_full, w_p8, w_p4);
        EXPECT_GE(w_full, 0.999) << m.name;
        EXPECT_GE(w_p8, 0.995) << m.name;
        EXPECT_GE(w_p4, 0.98) << m.name;
      }
    }
  }
}

// An output of last rows runs the last layer on those rows only (its keys and values still over
// every token): it gives the every-token output's last rows, exactly computed or from reused P8
// maps (every sequence's, every other one's, head 0's: the exact and reuse kernels then share the
// gathered block), short inputs and long ones (where the other layers take the grouped reuse
// kernel), eager and from the captured graph.
TEST(CudaLlamaModel, LastRowOutputsAreTheLastRowsOfTheEveryTokenOutput) {
  SKIP_WITHOUT_GPU();
  for (TestModel& m : models()) {
    const LlamaConfig& c = m.cpu->config();
    const int d = c.hidden_size;
    std::vector<Batch> batches{random_batch(c, 17)};
    if (m.name == "dh64" || m.name == "dh128") {
      std::mt19937 rng(37);
      std::uniform_int_distribution<int32_t> id(0, c.vocab_size - 1);
      Batch& long_batch = batches.emplace_back();
      for (const int n : m.name == "dh64" ? std::vector<int>{2100} : std::vector<int>{1100, 1030}) {
        long_batch.emplace_back(n);
        for (auto& x : long_batch.back()) x = id(rng);
      }
    }
    for (const Batch& batch : batches) {
      const DeviceMaps p8 = p8_copies(*m.gpu, batch, recorded_maps(*m.gpu, batch));
      std::vector<bool> alternate(batch.size());
      for (size_t s = 0; s < batch.size(); ++s) alternate[s] = s % 2 == 0;
      const DeviceMapPlan all_p8 =
          p8.reuse_plan(~0ull, std::vector<bool>(batch.size(), true), core::DType::kP8);
      const DeviceMapPlan some_p8 = p8.reuse_plan(~0ull, alternate, core::DType::kP8);
      const DeviceMapPlan head0_p8 =
          p8.reuse_plan(0b01, std::vector<bool>(batch.size(), true), core::DType::kP8);
      for (const DeviceMapPlan* plan :
           {static_cast<const DeviceMapPlan*>(nullptr), &all_p8, &some_p8, &head0_p8}) {
        for (int run = 0; run < 2; ++run) {  // eager, then the captured graph
          const auto every = m.gpu->forward(batch, CudaLlamaModel::Output::kAllHidden, plan);
          const auto last = m.gpu->forward(batch, CudaLlamaModel::Output::kLastHidden, plan);
          ASSERT_EQ(last.size(), batch.size() * d) << m.name;
          const double worst = worst_cosine(last_rows(every, batch, d), last, d);
          if (run == 1) {
            std::printf("  %-7s %zu sequences, %s: last rows vs every token's, worst cosine %.6f\n",
                        m.name.c_str(), batch.size(),
                        plan == nullptr    ? "exact"
                        : plan == &all_p8  ? "P8 maps"
                        : plan == &some_p8 ? "P8 maps, some sequences"
                                           : "P8 maps, head 0",
                        worst);
          }
          EXPECT_GE(worst, 0.9999) << m.name << " " << batch.size() << " sequences, run " << run;
        }
      }
    }
  }
}

TEST(CudaLlamaModel, MapsTheCpuEngineRecordedAreReusedOnTheGpu) {
  SKIP_WITHOUT_GPU();
  TestModel& m = models()[4];  // head size 128
  const LlamaConfig& c = m.cpu->config();
  const Batch batch = random_batch(c, 17);
  RecordHook hook(c.num_heads);
  LlamaWorkspace ws;
  m.cpu->forward(batch, ws, &hook);
  DeviceMaps maps(*m.gpu, batch, core::DType::kBF16);
  for (int l = 0; l < c.num_layers; ++l) {
    for (size_t s = 0; s < batch.size(); ++s) {
      const int n = static_cast<int>(batch[s].size());
      const std::vector<float>& cpu = hook.maps[{l, static_cast<int>(s)}];
      std::vector<uint16_t> bf16(cpu.size());
      core::convert_from_f32(core::DType::kBF16, cpu.data(), cpu.size(), bf16.data());
      const size_t packed = cpu.size() / c.num_heads, per_head = cuda::causal_map_elements(n);
      std::vector<uint16_t> tiles(per_head * c.num_heads);
      for (int h = 0; h < c.num_heads; ++h) {
        cuda::causal_map_to_tiles(bf16.data() + h * packed, n, 2, tiles.data() + h * per_head);
      }
      maps.buffers[l * batch.size() + s].upload(tiles.data(), tiles.size() * 2);
    }
  }
  const DeviceMapPlan plan = maps.reuse_plan(~0ull, std::vector<bool>(batch.size(), true));
  const double w =
      worst_cosine(m.gpu->forward(batch, CudaLlamaModel::Output::kAllHidden),
                   m.gpu->forward(batch, CudaLlamaModel::Output::kAllHidden, &plan), c.hidden_size);
  std::printf("  CPU-recorded maps reused on the GPU: worst token cosine to exact %.5f\n", w);
  EXPECT_GE(w, 0.999);
}

TEST(CudaLlamaModel, MapsStreamedFromHostMemoryGiveTheSameResult) {
  SKIP_WITHOUT_GPU();
  TestModel& m = models()[3];
  const Batch batch = random_batch(m.cpu->config(), 19);
  DeviceMaps maps(*m.gpu, batch, core::DType::kBF16);
  const DeviceMapPlan record = maps.record_plan();
  m.gpu->forward(batch, CudaLlamaModel::Output::kLastHidden, &record);
  std::vector<cuda::PinnedHostBuffer> host;
  DeviceMapPlan streamed;
  streamed.host_resident = true;
  for (const auto& b : maps.buffers) {
    host.emplace_back(b.size(), "test maps");
    b.download(host.back().data(), b.size());
    streamed.slots.push_back({host.back().data(), nullptr, ~0ull});
  }
  const DeviceMapPlan resident = maps.reuse_plan(~0ull, std::vector<bool>(batch.size(), true));
  const auto want = m.gpu->forward(batch, CudaLlamaModel::Output::kLastHidden, &resident);
  for (int call = 0; call < 3; ++call) {  // eager, capture, replay
    EXPECT_EQ(m.gpu->forward(batch, CudaLlamaModel::Output::kLastHidden, &streamed), want)
        << "call " << call;
  }
}

// The kernels with 128 query rows per CTA (the decoder's choice for long sequences) against the
// 64-row kernels: each row sees the same key blocks in the same order (exact: fully masked
// blocks are skipped or add exp2(−∞) = 0; reuse: the zero tiles past a warp's diagonal are
// skipped), so with mma.sync the results are bitwise equal; for the exact kernel, and for P·V
// from stored maps in each format. Where the loaded image multiplies with wgmma (sm_90a) the
// two sum in other orders and must agree up to the outputs' bf16 rounding. There, causal reuse
// also runs with one CTA for all the query heads of a KV head (2, 3 or 4 of them), which must
// agree with the 64-row kernel and leave the heads it does not reuse alone.
TEST(CudaLlamaModel, WideQueryBlocksEqualNarrowOnes) {
  SKIP_WITHOUT_GPU();
  const bool wgmma = cuda::attention_uses_wgmma();
  std::printf("  the loaded image's kernels for head sizes 64 and 128 multiply with %s\n",
              wgmma ? "wgmma" : "mma.sync");
  auto expect_equal = [wgmma](const std::vector<uint16_t>& a, const std::vector<uint16_t>& b,
                              const std::string& what) {
    if (!wgmma) {
      EXPECT_EQ(a, b) << what;
      return;
    }
    float largest = 0.0f;
    for (const uint16_t x : a) largest = std::max(largest, std::fabs(core::bf16_to_f32(x)));
    size_t differ = 0;
    for (size_t i = 0; i < a.size(); ++i) {
      const float x = core::bf16_to_f32(a[i]), y = core::bf16_to_f32(b[i]);
      differ += std::fabs(x - y) > 0.01f * std::fabs(x) + 1e-4f * largest;
    }
    EXPECT_EQ(differ, 0u) << what << " (wgmma)";
  };
  const std::vector<int> lengths = {1, 64, 127, 128, 129, 300};
  for (const int head_dim : {64, 128}) {
    for (const int group : {0, 2, 3, 4}) {  // query heads per KV head; 0: bidirectional
      const bool causal = group > 0;
      const int kv_heads = causal ? 2 : 4, heads = causal ? 2 * group : 4;
      const int width = (heads + 2 * kv_heads) * head_dim;
      int total = 0;
      std::vector<int> offsets, items, wide;
      for (size_t s = 0; s < lengths.size(); ++s) {
        offsets.push_back(total);
        total += lengths[s];
        for (int q = 0; q * 64 < lengths[s]; ++q) items.insert(items.end(), {int(s), q});
        for (int q = 0; q * 128 < lengths[s]; ++q) wide.insert(wide.end(), {int(s), q});
      }
      std::mt19937 rng(head_dim + group);
      std::normal_distribution<float> normal(0.0f, 2.0f);
      std::vector<float> qkv(static_cast<size_t>(total) * width);
      for (float& x : qkv) x = normal(rng);
      std::vector<uint16_t> qkv16(qkv.size());
      core::convert_from_f32(core::DType::kBF16, qkv.data(), qkv.size(), qkv16.data());
      auto upload = [](const void* data, size_t bytes) {
        cuda::DeviceBuffer b(bytes, "test input");
        b.upload(data, bytes);
        return b;
      };
      const cuda::DeviceBuffer d_qkv = upload(qkv16.data(), qkv16.size() * 2);
      const cuda::DeviceBuffer d_off = upload(offsets.data(), offsets.size() * 4);
      const cuda::DeviceBuffer d_len = upload(lengths.data(), lengths.size() * 4);
      const cuda::DeviceBuffer d_items = upload(items.data(), items.size() * 4);
      const cuda::DeviceBuffer d_wide = upload(wide.data(), wide.size() * 4);
      const size_t ctx_bytes = static_cast<size_t>(total) * heads * head_dim * 2;
      cuda::DeviceBuffer narrow_ctx(ctx_bytes, "ctx"), wide_ctx(ctx_bytes, "ctx");
      cuda::AttentionArgs args;
      args.qkv = d_qkv.data();
      args.seq_offset = d_off.as<int>();
      args.seq_len = d_len.as<int>();
      args.items = d_items.as<int>();
      args.num_items = static_cast<int>(items.size() / 2);
      args.num_heads = heads;
      args.num_kv_heads = kv_heads;
      args.head_dim = head_dim;
      args.causal = causal;
      args.ctx = narrow_ctx.data();
      cuda::attention_exact(args, false, nullptr);
      args.ctx = wide_ctx.data();
      args.wide_items = d_wide.as<int>();
      args.num_wide_items = static_cast<int>(wide.size() / 2);
      cuda::attention_exact(args, false, nullptr);
      std::vector<uint16_t> a(ctx_bytes / 2), b(ctx_bytes / 2);
      narrow_ctx.download(a.data(), ctx_bytes);
      wide_ctx.download(b.data(), ctx_bytes);
      expect_equal(a, b,
                   "exact, head size " + std::to_string(head_dim) + (causal ? ", causal" : "") +
                       ", " + std::to_string(heads) + " heads");

      // Stored maps, arbitrary values (no NaN codes): every head of every sequence reuses them.
      for (const cuda::MapFormat format :
           {cuda::MapFormat::kBF16, cuda::MapFormat::kP8, cuda::MapFormat::kFP8}) {
        const int bytes = format == cuda::MapFormat::kBF16 ? 2 : 1;
        std::vector<size_t> map_offset;
        size_t map_bytes = 0;
        for (const int n : lengths) {
          map_offset.push_back(map_bytes);
          const size_t per_head = causal ? cuda::causal_map_elements(n) : size_t(n) * n;
          map_bytes += (per_head * heads * bytes + 15) / 16 * 16;
        }
        std::vector<uint8_t> maps(map_bytes);
        std::uniform_int_distribution<int> byte(0, 0x77);  // below e4m3's NaN codes
        for (size_t i = 0; i < maps.size(); ++i) {
          maps[i] = static_cast<uint8_t>(bytes == 2 && i % 2 == 1 ? 0x3c : byte(rng));
        }
        const cuda::DeviceBuffer d_maps = upload(maps.data(), maps.size());
        std::vector<cuda::DeviceMapSlot> slots(lengths.size());
        for (size_t s = 0; s < lengths.size(); ++s) {
          slots[s].stored = static_cast<const char*>(d_maps.data()) + map_offset[s];
          slots[s].format = format;
        }
        const cuda::DeviceBuffer d_slots =
            upload(slots.data(), slots.size() * sizeof(cuda::DeviceMapSlot));
        args.maps = d_slots.as<cuda::DeviceMapSlot>();
        args.ctx = narrow_ctx.data();
        args.wide_items = nullptr;
        args.num_wide_items = 0;
        cuda::attention_reuse(args, format, nullptr);
        args.ctx = wide_ctx.data();
        args.wide_items = d_wide.as<int>();
        args.num_wide_items = static_cast<int>(wide.size() / 2);
        cuda::attention_reuse(args, format, nullptr);
        narrow_ctx.download(a.data(), ctx_bytes);
        wide_ctx.download(b.data(), ctx_bytes);
        const std::string what = "reuse, map format " + std::to_string(static_cast<int>(format)) +
                                 ", head size " + std::to_string(head_dim) +
                                 (causal ? ", causal" : "") + ", " + std::to_string(heads) +
                                 " heads";
        expect_equal(a, b, what);
        EXPECT_TRUE(std::any_of(a.begin(), a.end(), [](uint16_t x) { return x != 0; }));
        if (wgmma && causal) {
          // One CTA for the query heads of a KV head (reuse_pv_grouped), head 3's maps not
          // reused: it leaves that head's columns alone. With one CTA per unit, and with 3
          // CTAs taking every unit in turn, their buffer ring going on from one into the next;
          // units head group by head group, item by item, and in bands of 5 items.
          std::vector<cuda::DeviceMapSlot> grouped = slots;
          for (auto& slot : grouped) slot.heads = ~(1ull << 3);
          const cuda::DeviceBuffer d_grouped =
              upload(grouped.data(), grouped.size() * sizeof(cuda::DeviceMapSlot));
          args.maps = d_grouped.as<cuda::DeviceMapSlot>();
          args.wide_items = nullptr;
          args.num_wide_items = 0;
          args.group_heads = true;
          for (const auto& [ctas, band] : {std::pair{0, 0}, {3, 0}, {0, 1}, {3, 1}, {3, 5}}) {
            cuda::check(cudaMemset(wide_ctx.data(), 0xff, ctx_bytes), "cudaMemset");
            args.grouped_ctas = ctas;
            args.grouped_band_items = band;
            cuda::attention_reuse(args, format, nullptr);
            wide_ctx.download(b.data(), ctx_bytes);
            const std::string how = what + ", grouped, " + std::to_string(ctas) +
                                    " CTAs, bands of " + std::to_string(band) + " items";
            for (size_t i = 0; i < b.size(); ++i) {
              if (i / head_dim % heads == 3) {
                ASSERT_EQ(b[i], 0xffff) << how << ": head 3 was written";
                b[i] = a[i];
              }
            }
            expect_equal(a, b, how);
          }
          args.grouped_ctas = 0;
          args.grouped_band_items = 0;
          args.group_heads = false;
        }
        args.maps = nullptr;
      }
    }
  }
}

// Which reuse calls the grouped kernel takes, and with how many query heads per CTA (no device
// needed): every head of a KV head's group where 2, 3 or (with head 64) 4 of them share it, a
// divisor otherwise; none without group_heads, bidirectional, with 128-row blocks, or without
// grouped-query heads.
TEST(AttentionArgs, GroupedReuseTakesTheHeadsThatShareAKvHead) {
  auto heads_per_cta = [](int heads, int kv_heads, int head_dim) {
    cuda::AttentionArgs args;
    args.num_heads = heads;
    args.num_kv_heads = kv_heads;
    args.head_dim = head_dim;
    args.causal = true;
    args.group_heads = true;
    return cuda::reuse_heads_per_cta(args);
  };
  EXPECT_EQ(heads_per_cta(24, 8, 128), 3);  // Llama-3.2-3B
  EXPECT_EQ(heads_per_cta(32, 8, 64), 4);   // Llama-3.2-1B
  EXPECT_EQ(heads_per_cta(32, 8, 128), 2);  // Llama-3-8B: four would leave wgmma too few registers
  EXPECT_EQ(heads_per_cta(16, 8, 128), 2);
  EXPECT_EQ(heads_per_cta(48, 8, 128), 3);  // six per KV head, in threes
  EXPECT_EQ(heads_per_cta(40, 8, 128), 0);  // five: no divisor in 2..4
  EXPECT_EQ(heads_per_cta(8, 8, 128), 0);   // multi-head attention
  EXPECT_EQ(heads_per_cta(8, 0, 64), 0);    // 0 KV heads: multi-head attention
  EXPECT_EQ(heads_per_cta(24, 8, 32), 0);   // head sizes without wgmma kernels
  cuda::AttentionArgs args;
  args.num_heads = 24;
  args.num_kv_heads = 8;
  args.head_dim = 128;
  args.causal = true;
  EXPECT_EQ(cuda::reuse_heads_per_cta(args), 0);  // not asked for
  args.group_heads = true;
  args.causal = false;
  EXPECT_EQ(cuda::reuse_heads_per_cta(args), 0);
  args.causal = true;
  const int wide_items[2] = {0, 0};
  args.wide_items = wide_items;
  args.num_wide_items = 1;
  EXPECT_EQ(cuda::reuse_heads_per_cta(args), 0);
}

// Causal maps between the packed lower triangle (the CPU engine's and the database's layout) and
// the GPU's block triangle (no device needed): every stored value lands in its tile, the rest
// of each tile is zero, and the way back gives the triangle again; both value widths.
TEST(CausalMapTiles, PackedTriangleRoundTripsThroughTheBlockTriangle) {
  for (const int n : {1, 63, 64, 65, 130}) {
    for (const int bytes : {1, 2}) {
      const size_t packed = static_cast<size_t>(n) * (n + 1) / 2;
      std::vector<unsigned char> triangle(packed * bytes);
      for (size_t i = 0; i < triangle.size(); ++i)
        triangle[i] = static_cast<unsigned char>(1 + i % 251);
      std::vector<unsigned char> tiles(cuda::causal_map_elements(n) * bytes, 0xAB);
      cuda::causal_map_to_tiles(triangle.data(), n, bytes, tiles.data());
      // Row i, key j ≤ i sits at row i % 64, column j % 64 of tile (i / 64, j / 64).
      const int i = n - 1, j = n / 2, tile = (i / 64) * (i / 64 + 1) / 2 + j / 64;
      const size_t at = (static_cast<size_t>(tile) * 64 * 64 + (i % 64) * 64 + j % 64) * bytes;
      EXPECT_EQ(tiles[at], triangle[(packed - n + j) * bytes]) << n;
      size_t nonzero = 0;
      for (unsigned char v : tiles) nonzero += v != 0;
      EXPECT_EQ(nonzero, triangle.size()) << n << " " << bytes;  // zeros everywhere else
      std::vector<unsigned char> back(triangle.size(), 0);
      cuda::causal_map_from_tiles(tiles.data(), n, bytes, back.data());
      EXPECT_EQ(back, triangle) << n << " " << bytes;
    }
  }
}

// Recording on the GPU fills a hook's record buffers only: a hook that offers stored maps is bad
// input, refused before anything runs (no device needed).
TEST(ForwardRecording, RefusesAHookWithStoredMaps) {
  class Reusing : public AttentionHook {
   public:
    StoredProbs stored(int, int, int) override { return {maps.data(), core::DType::kF32}; }
    std::vector<float> maps = std::vector<float>(16, 0.25f);
  } hook;
  bool ran = false;
  try {
    cuda_forward::forward_recording({{1, 2}}, 2, 2, true, hook, [&](const DeviceMapPlan&) {
      ran = true;
      return std::vector<float>{};
    });
    FAIL() << "a hook with stored maps was accepted";
  } catch (const core::Error& e) {
    EXPECT_EQ(e.kind(), core::ErrorKind::kBadInput);
    EXPECT_NE(std::string(e.what()).find("reads no stored maps"), std::string::npos) << e.what();
  }
  EXPECT_FALSE(ran);
}

// The graph cache keeps the graphs of shapes that recur while a server's one-off batch shapes
// stream past: more than kMaxSeen shapes seen once, and more than kMaxGraphs shapes seen twice,
// neither push out a shape replayed all along (before, either limit cleared every graph).
TEST(GraphCache, KeepsTheGraphsOfRecurringShapesAmongManyOthers) {
  SKIP_WITHOUT_GPU();
  cudaStream_t stream = nullptr;
  ASSERT_EQ(cudaStreamCreate(&stream), cudaSuccess);
  cuda::DeviceBuffer buffer(4, "test buffer");
  // Each shape's graph sets the buffer's bytes to its own value.
  auto fill = [&](int value) {
    return [&, value] { cuda::check(cudaMemsetAsync(buffer.data(), value, 4, stream), "memset"); };
  };
  auto bytes_now = [&] {
    uint8_t out[4];
    EXPECT_EQ(cudaStreamSynchronize(stream), cudaSuccess);
    EXPECT_EQ(cudaMemcpy(out, buffer.data(), 4, cudaMemcpyDeviceToHost), cudaSuccess);
    return out[0];
  };
  cuda_forward::GraphCache cache;
  const std::vector<int64_t> hot = {1, 7};
  EXPECT_FALSE(cache.replay(hot, stream, fill(0x11)));  // first sighting: run eagerly
  EXPECT_TRUE(cache.replay(hot, stream, fill(0x11)));   // second: captured and launched
  EXPECT_EQ(bytes_now(), 0x11);
  const int one_off = static_cast<int>(cuda_forward::GraphCache::kMaxSeen) * 2;
  const int twice = static_cast<int>(cuda_forward::GraphCache::kMaxGraphs) + 50;
  for (int i = 0; i < one_off + twice; ++i) {
    const std::vector<int64_t> other = {2, i};
    EXPECT_FALSE(cache.replay(other, stream, fill(0x22)));  // first sighting
    if (i >= one_off) {
      EXPECT_TRUE(cache.replay(other, stream, fill(0x22)));  // seen twice: captured
    }
    if (i % 64 == 0) {
      ASSERT_TRUE(cache.replay(hot, stream, fill(0x11))) << "after " << i << " other shapes";
      EXPECT_EQ(bytes_now(), 0x11);
    }
  }
  EXPECT_LE(cache.graphs(), cuda_forward::GraphCache::kMaxGraphs);
  EXPECT_TRUE(cache.replay(hot, stream, fill(0x11)));
  EXPECT_EQ(bytes_now(), 0x11);
  cache.clear();
  EXPECT_EQ(cache.graphs(), 0u);
  EXPECT_EQ(cudaStreamDestroy(stream), cudaSuccess);
}

// The host image of a GPU model's weights (no device needed): the storing pass lays tensors out
// where the measuring pass said, converts them (bf16 rounding to nearest even), zeroes the
// alignment gaps, and refuses a layout that outgrows the measured size.
TEST(WeightImage, StoresWhereItMeasuredConvertedWithZeroGaps) {
  std::vector<float> big(3 << 20), small = {1.0f, -2.5f, 3.0f};  // big: converted in chunks
  for (size_t i = 0; i < big.size(); ++i) big[i] = std::sin(static_cast<float>(i)) * 1e3f;
  auto lay_out = [&](cuda_forward::WeightImage& image, std::vector<size_t>* offsets) {
    offsets->push_back(image.add_f32(small));
    offsets->push_back(image.add_bf16(big));
    offsets->push_back(image.add_bf16(small));
  };
  cuda_forward::WeightImage measured;
  std::vector<size_t> at_measure, at_store;
  lay_out(measured, &at_measure);
  EXPECT_EQ(measured.data(), nullptr);
  EXPECT_EQ(at_measure, (std::vector<size_t>{0, 256, 256 + ((big.size() * 2 + 255) / 256) * 256}));
  EXPECT_EQ(measured.size(), at_measure[2] + small.size() * 2);
  cuda_forward::WeightImage image(measured.size());
  lay_out(image, &at_store);
  EXPECT_EQ(at_store, at_measure);
  ASSERT_EQ(image.size(), measured.size());
  const uint8_t* d = image.data();
  EXPECT_EQ(std::memcmp(d, small.data(), small.size() * 4), 0);
  EXPECT_TRUE(std::all_of(d + small.size() * 4, d + 256, [](uint8_t b) { return b == 0; }));
  std::vector<uint16_t> expected(big.size());
  core::convert_from_f32(core::DType::kBF16, big.data(), big.size(), expected.data());
  for (size_t i = 0; i < big.size(); i += 4099) {
    ASSERT_EQ(expected[i], core::f32_to_bf16(big[i]));  // the chunked path rounds as one value
  }
  EXPECT_EQ(std::memcmp(d + 256, expected.data(), big.size() * 2), 0);
  cuda_forward::WeightImage too_small(measured.size() - 1);
  std::vector<size_t> ignored;
  EXPECT_THROW(lay_out(too_small, &ignored), core::Error);
}

// Random attention rows (each sums to one) for `layers` × `heads` maps of n tokens, in `dtype`:
// packed lower triangles when causal, else N×N; P4 rows for kP4.
std::vector<uint8_t> random_maps(int layers, int heads, int n, bool causal, core::DType dtype,
                                 uint32_t seed) {
  std::mt19937 rng(seed);
  std::uniform_real_distribution<float> u(0.0f, 1.0f);
  std::vector<float> p;
  for (int m = 0; m < layers * heads; ++m) {
    for (int i = 0; i < n; ++i) {
      const int width = causal ? i + 1 : n;
      std::vector<float> row(width);
      float sum = 0;
      for (float& x : row) sum += (x = u(rng));
      for (float& x : row) p.push_back(x / sum);
    }
  }
  const size_t layer = stored_layer_bytes(n, heads, causal, dtype);
  std::vector<uint8_t> out(layers * layer);
  for (int l = 0; l < layers; ++l) {
    store_layer(dtype, p.data() + p.size() / layers * l, n, heads, causal, out.data() + l * layer);
  }
  return out;
}

// What the cache must hold on the device for those maps held as P4: each layer's P4 block
// triangles (made from P4 rows as they are, else from the values the maps decode to, fp16 and
// bf16 ones rounded to bf16 as the cache stages them), each layer's bytes padded to 256.
std::vector<uint8_t> device_p4_layout(const std::vector<uint8_t>& host, int layers, int heads,
                                      int n, core::DType dtype) {
  const size_t layer = (cuda::p4_map_bytes(n, heads) + 255) / 256 * 256;
  const size_t in_layer = stored_layer_bytes(n, heads, true, dtype);
  std::vector<uint8_t> result(layers * layer, 0);
  for (int l = 0; l < layers; ++l) {
    const uint8_t* in = host.data() + l * in_layer;
    if (dtype == core::DType::kP4) {
      cuda::p4_rows_to_tiles(in, n, heads, result.data() + l * layer);
    } else {
      std::vector<float> f32(heads * cpu::attention_map_size(n, true));
      core::convert_to_f32(dtype, in, f32.size(), f32.data());
      if (core::dtype_size(dtype) == 2) {
        for (float& x : f32) x = core::bf16_to_f32(core::f32_to_bf16(x));
      }
      cuda::causal_maps_to_p4(f32.data(), n, heads, result.data() + l * layer);
    }
  }
  return result;
}

// What the cache must hold on the device for those maps.
std::vector<uint8_t> device_layout(const std::vector<uint8_t>& host, int layers, int heads, int n,
                                   bool causal, core::DType dtype, bool p4) {
  if (p4 || dtype == core::DType::kP4) return device_p4_layout(host, layers, heads, n, dtype);
  const size_t in_elements = causal ? size_t(n) * (n + 1) / 2 : size_t(n) * n;
  std::vector<float> f32(in_elements * layers * heads);
  core::convert_to_f32(dtype, host.data(), f32.size(), f32.data());
  const bool one_byte = core::dtype_size(dtype) == 1;  // P8, FP8: copied as they are
  const core::DType out = one_byte ? dtype : core::DType::kBF16;
  const size_t bytes = core::dtype_size(out);
  std::vector<uint8_t> converted(f32.size() * bytes);
  if (one_byte) {
    converted = host;
  } else {
    core::convert_from_f32(out, f32.data(), f32.size(), converted.data());
  }
  const size_t head = causal ? cuda::causal_map_elements(n) : in_elements;
  const size_t layer = (heads * head * bytes + 255) / 256 * 256;
  std::vector<uint8_t> result(layers * layer, 0);
  for (int m = 0; m < layers * heads; ++m) {
    uint8_t* dst = result.data() + (m / heads) * layer + (m % heads) * head * bytes;
    const uint8_t* src = converted.data() + m * in_elements * bytes;
    if (causal) {
      cuda::causal_map_to_tiles(src, n, static_cast<int>(bytes), dst);
    } else {
      std::copy(src, src + in_elements * bytes, dst);
    }
  }
  return result;
}

// Every source type, held as stored and as P4 (causal maps only), staged and from page-locked
// memory: the device bytes, the LRU's hits, misses and evictions.
TEST(DeviceMapCache, ConvertsEvictsTheLeastRecentlyUsedAndCountsHits) {
  SKIP_WITHOUT_GPU();
  for (const bool causal : {true, false}) {
    for (const core::DType dtype : {core::DType::kF16, core::DType::kBF16, core::DType::kP8,
                                    core::DType::kFP8, core::DType::kP4}) {
      for (const int variant : {0, 1, 2, 3}) {
        const bool p4 = variant % 2 == 1, pinned = variant >= 2;
        if (!causal && (p4 || dtype == core::DType::kP4)) continue;
        if (p4 && dtype == core::DType::kP4) continue;  // held as P4 either way
        SCOPED_TRACE(std::string(core::dtype_name(dtype)) + (p4 ? " as P4" : "") +
                     (causal ? ", causal" : "") + (pinned ? ", page-locked" : ""));
        // Nine layers: staged in pieces of two (an eighth, rounded up), the last of one, through
        // the staging ring more than once per entry.
        const int layers = 9, heads = 3;
        const std::vector<int> lengths = {5, 70, 130};
        std::vector<std::vector<uint8_t>> host;
        std::vector<cuda::PinnedHostBuffer> page_locked;  // copies of the entries, if pinned
        std::vector<const uint8_t*> maps;
        for (size_t e = 0; e < lengths.size(); ++e) {
          host.push_back(random_maps(layers, heads, lengths[e], causal, dtype, 7 + e));
          maps.push_back(host.back().data());
          if (pinned) {
            page_locked.emplace_back(host.back().size(), "test maps");
            std::copy(host.back().begin(), host.back().end(),
                      static_cast<uint8_t*>(page_locked.back().data()));
            maps.back() = static_cast<const uint8_t*>(page_locked.back().data());
          }
          ASSERT_EQ(cuda::page_locked(maps.back()), pinned);
        }
        auto source = [&](int64_t e) { return memo::HostMaps{lengths[e], maps[e], dtype}; };
        // Room for entries 1 and 2 together, not for all three.
        memo::DeviceMapCache probe(source, layers, heads, causal, 1, p4);
        const size_t room = probe.entry_bytes(70, dtype) + probe.entry_bytes(130, dtype);
        memo::DeviceMapCache cache(source, layers, heads, causal, room, p4);
        const DeviceMapPlan plan = cache.plan({0, -1, 1});
        ASSERT_EQ(plan.slots.size(), static_cast<size_t>(layers) * 3);
        for (int s : {0, 2}) {
          const int e = s == 0 ? 0 : 1;
          const auto want = device_layout(host[e], layers, heads, lengths[e], causal, dtype, p4);
          const bool held_as_p4 = p4 || dtype == core::DType::kP4;
          for (int l = 0; l < layers; ++l) {
            const auto& slot = plan.slots[l * 3 + s];
            ASSERT_NE(slot.stored, nullptr);
            EXPECT_EQ(reinterpret_cast<uintptr_t>(slot.stored) % 16, 0u);
            EXPECT_EQ(slot.dtype, held_as_p4                   ? core::DType::kP4
                                  : dtype == core::DType::kF16 ? core::DType::kBF16
                                                               : dtype);
            const size_t layer_bytes = want.size() / layers;
            // Layers are made on the device: the padding after them is never written.
            const size_t head =
                causal ? cuda::causal_map_elements(lengths[e]) : size_t(lengths[e]) * lengths[e];
            const size_t used = held_as_p4 ? cuda::p4_map_bytes(lengths[e], heads)
                                           : heads * head * core::dtype_size(slot.dtype);
            std::vector<uint8_t> got(used);
            ASSERT_EQ(cudaMemcpy(got.data(), slot.stored, used, cudaMemcpyDeviceToHost),
                      cudaSuccess);
            EXPECT_TRUE(std::equal(got.begin(), got.end(), want.begin() + l * layer_bytes))
                << "entry " << e << " layer " << l;
          }
        }
        EXPECT_EQ(plan.slots[1].stored, nullptr);  // −1: exact
        cache.plan({1});                           // a hit; entry 0 is no longer in use
        cache.prefetch({2});                       // evicts entry 0, the least recently used
        cache.plan({1, 2});                        // two hits
        const auto st = cache.stats();
        EXPECT_EQ(st.misses, 3u);
        EXPECT_EQ(st.hits, 3u);
        EXPECT_EQ(st.evictions, 1u);
        EXPECT_EQ(st.resident_entries, 2u);
        EXPECT_EQ(st.resident_bytes, room);
        // Staging: three pieces of two of the largest entry's layers; none for page-locked
        // sources. Arrival buffers: two of its stored layers, wherever the device converts.
        const size_t stored_layer = stored_layer_bytes(130, heads, causal, dtype);
        EXPECT_EQ(st.staging_bytes, pinned ? 0 : 3 * 2 * stored_layer);
        const bool converts = causal || dtype == core::DType::kF16;
        EXPECT_EQ(st.scratch_bytes >= 2 * stored_layer, converts);
        EXPECT_EQ(st.scratch_bytes == 0, !converts);
        // A batch whose entries do not fit together, an entry larger than the cache.
        EXPECT_THROW(cache.plan({0, 1, 2}), core::Error);
        memo::DeviceMapCache small(source, layers, heads, causal, 1024, p4);
        EXPECT_THROW(small.plan({2}), core::Error);
      }
    }
  }
}

// What --pin-maps makes of a map database: its bytes, in page-locked memory.
TEST(DeviceMapCache, PageLockedCopyHoldsTheBytesInPageLockedMemory) {
  SKIP_WITHOUT_GPU();
  std::vector<uint8_t> bytes((size_t{40} << 20) + 3);  // over 16 MiB: copied in parts
  for (size_t i = 0; i < bytes.size(); ++i) bytes[i] = static_cast<uint8_t>(i * 131 % 251);
  ASSERT_FALSE(cuda::page_locked(bytes.data()));
  const cuda::PinnedHostBuffer copy = memo::page_locked_copy(bytes.data(), bytes.size(), "test");
  ASSERT_EQ(copy.size(), bytes.size());
  EXPECT_TRUE(cuda::page_locked(copy.data()));
  EXPECT_TRUE(std::equal(bytes.begin(), bytes.end(), static_cast<const uint8_t*>(copy.data())));
  EXPECT_EQ(memo::page_locked_copy(bytes.data(), 0, "test").data(), nullptr);
}

TEST(DeviceMapCache, MapsTheCpuEngineRecordedRunThroughTheCache) {
  SKIP_WITHOUT_GPU();
  TestModel& m = models()[3];
  const LlamaConfig& c = m.cpu->config();
  const Batch batch = random_batch(c, 29);
  RecordHook hook(c.num_heads);
  LlamaWorkspace ws;
  m.cpu->forward(batch, ws, &hook);
  // Each sequence's maps, all layers, as a causal map database holds them: fp16 packed
  // triangles, and P4 rows.
  std::vector<std::vector<uint16_t>> stored(batch.size());
  std::vector<std::vector<unsigned char>> stored_p4(batch.size());
  for (size_t s = 0; s < batch.size(); ++s) {
    const int n = static_cast<int>(batch[s].size());
    const size_t p4_layer = stored_layer_bytes(n, c.num_heads, true, core::DType::kP4);
    stored_p4[s].resize(c.num_layers * p4_layer);
    for (int l = 0; l < c.num_layers; ++l) {
      const auto& f32 = hook.maps[{l, static_cast<int>(s)}];
      const size_t at = stored[s].size();
      stored[s].resize(at + f32.size());
      core::convert_from_f32(core::DType::kF16, f32.data(), f32.size(), stored[s].data() + at);
      store_layer(core::DType::kP4, f32.data(), n, c.num_heads, true,
                  stored_p4[s].data() + l * p4_layer);
    }
  }
  std::vector<int64_t> entries(batch.size());
  for (size_t s = 0; s < batch.size(); ++s) entries[s] = static_cast<int64_t>(s);
  const auto exact = m.gpu->forward(batch, CudaLlamaModel::Output::kAllHidden);
  // As the source stores them (bf16 on the device), as P4 encoded on the device, and from P4 rows.
  for (const core::DType dtype : {core::DType::kF16, core::DType::kP4}) {
    auto source = [&](int64_t e) {
      const void* maps = dtype == core::DType::kP4 ? static_cast<const void*>(stored_p4[e].data())
                                                   : static_cast<const void*>(stored[e].data());
      return memo::HostMaps{static_cast<int>(batch[e].size()), maps, dtype};
    };
    for (const bool p4 : {false, true}) {
      if (dtype == core::DType::kP4 && p4) continue;
      const bool held_as_p4 = p4 || dtype == core::DType::kP4;
      memo::DeviceMapCache cache(source, c.num_layers, c.num_heads, true, size_t{64} << 20, p4);
      const DeviceMapPlan plan = cache.plan(entries);
      EXPECT_EQ(plan.slots[0].dtype, held_as_p4 ? core::DType::kP4 : core::DType::kBF16);
      const double w = worst_cosine(
          exact, m.gpu->forward(batch, CudaLlamaModel::Output::kAllHidden, &plan), c.hidden_size);
      std::printf("  CPU maps (%s) through the device cache%s: worst token cosine to exact %.5f\n",
                  dtype == core::DType::kP4 ? "P4 rows" : "fp16 packed", p4 ? " as P4" : "", w);
      EXPECT_GE(w, held_as_p4 ? 0.98 : 0.999);
    }
  }
  auto source = [&](int64_t e) {
    return memo::HostMaps{static_cast<int>(batch[e].size()), stored[e].data(), core::DType::kF16};
  };
  // Bidirectional maps have no P4 form: neither held as P4 nor from a P4 source.
  EXPECT_THROW(memo::DeviceMapCache(source, c.num_layers, c.num_heads, false, 1 << 20, true),
               core::Error);
  auto p4_source = [&](int64_t e) {
    return memo::HostMaps{static_cast<int>(batch[e].size()), stored_p4[e].data(), core::DType::kP4};
  };
  memo::DeviceMapCache bidirectional(p4_source, c.num_layers, c.num_heads, false, 1 << 20);
  try {
    bidirectional.plan({0});
    ADD_FAILURE() << "a bidirectional cache took P4 maps";
  } catch (const core::Error& e) {
    EXPECT_EQ(e.kind(), core::ErrorKind::kBadInput);
    EXPECT_NE(std::string(e.what()).find("P4"), std::string::npos) << e.what();
  }
}

TEST(CudaLlamaModel, BadBatchesAndPlansAreRefused) {
  SKIP_WITHOUT_GPU();
  TestModel& m = models()[0];
  CudaLlamaModel& gpu = *m.gpu;
  const LlamaConfig& c = m.cpu->config();
  auto refused = [&](const Batch& batch, const DeviceMapPlan* plan, const std::string& words) {
    try {
      gpu.forward(batch, CudaLlamaModel::Output::kLastHidden, plan);
      ADD_FAILURE() << "accepted a batch that should fail with '" << words << "'";
    } catch (const core::Error& e) {
      EXPECT_EQ(e.kind(), core::ErrorKind::kBadInput);
      EXPECT_NE(std::string(e.what()).find(words), std::string::npos) << e.what();
    }
  };
  refused({{1, 2}, {}}, nullptr, "empty");
  refused({{1, c.vocab_size}}, nullptr, "outside the vocabulary");
  refused({std::vector<int32_t>(c.context_length + 1, 1)}, nullptr, "context");
  const Batch batch = {{1, 2, 3}};
  DeviceMaps maps(gpu, batch, core::DType::kBF16);
  DeviceMapPlan short_plan = maps.reuse_plan(~0ull, {true});
  short_plan.slots.pop_back();
  refused(batch, &short_plan, "slots");
  DeviceMapPlan misaligned = maps.reuse_plan(~0ull, {true});
  misaligned.slots[0].stored = static_cast<const char*>(misaligned.slots[0].stored) + 2;
  refused(batch, &misaligned, "aligned");
  DeviceMapPlan f16 = maps.reuse_plan(~0ull, {true}, core::DType::kF16);
  refused(batch, &f16, "BF16, P8 or FP8");
  DeviceMapPlan host_record = maps.record_plan();
  host_record.host_resident = true;
  refused(batch, &host_record, "device memory only");
  // Still usable.
  EXPECT_EQ(gpu.forward(batch, CudaLlamaModel::Output::kLastHidden).size(),
            static_cast<size_t>(c.hidden_size));

  CudaDecoderOptions tiny;
  tiny.memory_limit = 1u << 20;
  try {
    CudaLlamaModel::create(*m.cpu, tiny);
    ADD_FAILURE() << "created a GPU decoder in 1 MiB";
  } catch (const core::Error& e) {
    EXPECT_EQ(e.kind(), core::ErrorKind::kBadInput);
    EXPECT_NE(std::string(e.what()).find("too little GPU memory"), std::string::npos) << e.what();
  }
}

}  // namespace
}  // namespace attncache
