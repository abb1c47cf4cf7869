// Times the GPU encoder on real MiniLM weights and real text: the exact path (CUDA graph and
// eager), the AttnCache reuse path with every map a hit and resident in device memory, the cost
// of recording maps, and the attention kernels alone. One JSON object out; bench/gpu_torch_bench.py
// runs PyTorch on the same token ids (--ids-out) for the ratio.
//
//   gpu_bench --model DIR --corpus FILE [--batches 1,32] [--lengths 128,512] [--min-seconds S]
//             [--out FILE] [--ids-out FILE]
//
// End-to-end times are host wall-clock per call, from token ids in host memory to embeddings in
// host memory (upload, forward, pooling, download, synchronization); tokenization is excluded.
// Kernel times use CUDA events. Each number is the median of at least 20 calls after warm-up.
#include <cuda_runtime.h>

#include <CLI/CLI.hpp>
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <fstream>
#include <functional>
#include <nlohmann/json.hpp>
#include <random>

#include "attncache/embedder.h"
#include "attncache/kernels/cuda/attention.h"
#include "attncache/kernels/cuda/check.h"
#include "attncache/kernels/cuda/runtime.h"
#include "attncache/model/bert_cuda.h"
#include "core/error.h"
#include "core/stopwatch.h"
#include "core/text_lines.h"
#include "gpu_bench_util.h"

namespace {

using attncache::CudaBertEncoder;
using attncache::CudaEncoderOptions;
using attncache::DeviceMapPlan;
namespace cuda = attncache::cuda;
using gpu_bench::attention_only;
using gpu_bench::parse_list;
using gpu_bench::time_calls;
using gpu_bench::Timing;
using gpu_bench::timing_json;

}  // namespace

int main(int argc, char** argv) {
  CLI::App app("Time the attncache GPU encoder (exact and reuse paths); prints JSON.");
  std::string model, corpus_path, out_path, ids_out, batches_arg = "1,32", lengths_arg = "128,512";
  double min_seconds = 1.0;
  app.add_option("--model", model, "model directory")->required();
  app.add_option("--corpus", corpus_path, "text, one input per line")->required();
  app.add_option("--batches", batches_arg, "batch sizes, comma-separated");
  app.add_option("--lengths", lengths_arg, "tokens per sequence, comma-separated");
  app.add_option("--min-seconds", min_seconds, "time each configuration at least this long");
  app.add_option("--out", out_path, "write the JSON here as well as to stdout");
  app.add_option("--ids-out", ids_out, "write the token ids used (JSON) for the PyTorch run");
  CLI11_PARSE(app, argc, argv);
  try {
    attncache::Embedder cpu = attncache::Embedder::load(model);
    const auto& c = cpu.config().bert;
    const std::vector<std::string> corpus = core::read_lines(corpus_path);
    CudaEncoderOptions graph_options, eager_options, profile_options;
    eager_options.cuda_graphs = false;
    profile_options.cuda_graphs = false;
    profile_options.profile = true;
    auto graphed = CudaBertEncoder::create(cpu.config(), graph_options);
    auto eager = CudaBertEncoder::create(cpu.config(), eager_options);
    auto profiled = CudaBertEncoder::create(cpu.config(), profile_options);
    // Phase times per call (CUDA events between phases of eager calls).
    auto phases = [&](const std::vector<std::vector<int32_t>>& batch, const DeviceMapPlan* plan) {
      for (int i = 0; i < 3; ++i) profiled->embed(batch, plan);
      profiled->reset_profile();
      for (int i = 0; i < 20; ++i) profiled->embed(batch, plan);
      const attncache::CudaProfile& p = profiled->profile();
      return nlohmann::json{{"qkv_ms", p.qkv_ms / p.calls},
                            {"attention_ms", p.attention_ms / p.calls},
                            {"gemm_ms", p.gemm_ms / p.calls},
                            {"other_ms", p.other_ms / p.calls}};
    };

    nlohmann::json out = {{"bench", "gpu_bench"},
                          {"device", graphed->device_description()},
                          {"model", model},
                          {"layers", c.num_layers},
                          {"hidden", c.hidden_size},
                          {"heads", c.num_heads},
                          {"weights", "bf16 GEMM weights, fp32 embeddings/LayerNorm"},
                          {"timing",
                           "host wall-clock per call, ids in host memory to "
                           "embeddings in host memory; median"},
                          {"results", nlohmann::json::array()}};
    nlohmann::json ids_json = nlohmann::json::array();
    for (int n : parse_list(lengths_arg)) {
      for (int batch_size : parse_list(batches_arg)) {
        // Distinct real text for each sequence: consecutive corpus lines, cut at n tokens.
        std::vector<std::vector<int32_t>> batch;
        for (int s = 0; s < batch_size; ++s) {
          std::string text;
          for (size_t i = 61 * s; text.size() < 8u * n; ++i)
            text += corpus[i % corpus.size()] + " ";
          batch.push_back(cpu.tokenize(text, n).ids);
          if (static_cast<int>(batch.back().size()) != n) core::throw_internal("short input");
        }
        ids_json.push_back({{"batch", batch_size}, {"tokens", n}, {"ids", batch}});
        const double tokens = double(batch_size) * n;

        const Timing exact = time_calls([&] { graphed->embed(batch); }, min_seconds);
        const Timing exact_eager = time_calls([&] { eager->embed(batch); }, min_seconds);
        // Maps for every (layer, sequence), recorded by the exact path itself.
        std::vector<cuda::DeviceBuffer> maps;
        DeviceMapPlan record, reuse;
        for (int l = 0; l < c.num_layers; ++l) {
          for (int s = 0; s < batch_size; ++s) {
            maps.emplace_back(graphed->map_bytes(n), "bench maps");
            record.slots.push_back({nullptr, maps.back().data(), ~0ull});
            reuse.slots.push_back({maps.back().data(), nullptr, ~0ull});
          }
        }
        const Timing recording = time_calls([&] { eager->embed(batch, &record); }, min_seconds);
        const std::vector<float> reference = graphed->embed(batch, &record);
        const Timing hit = time_calls([&] { graphed->embed(batch, &reuse); }, min_seconds);
        // The same maps compressed to one byte (P8, FP8) on the device.
        std::vector<cuda::DeviceBuffer> maps8, maps_fp8;
        DeviceMapPlan reuse8, reuse_fp8;
        for (size_t i = 0; i < maps.size(); ++i) {
          maps8.emplace_back(maps[i].size() / 2, "bench P8 maps");
          cuda::maps_to_p8(maps[i].data(), maps8.back().data(), maps[i].size() / 2, nullptr);
          reuse8.slots.push_back({maps8.back().data(), nullptr, ~0ull, core::DType::kP8});
          maps_fp8.emplace_back(maps[i].size() / 2, "bench FP8 maps");
          cuda::maps_to_fp8(maps[i].data(), maps_fp8.back().data(), maps[i].size() / 2, nullptr);
          reuse_fp8.slots.push_back({maps_fp8.back().data(), nullptr, ~0ull, core::DType::kFP8});
        }
        cuda::check(cudaDeviceSynchronize(), "maps_to_p8");
        const Timing hit8 = time_calls([&] { graphed->embed(batch, &reuse8); }, min_seconds);
        const std::vector<float> reused8 = graphed->embed(batch, &reuse8);
        const Timing hit_fp8 = time_calls([&] { graphed->embed(batch, &reuse_fp8); }, min_seconds);
        const std::vector<float> reused_fp8 = graphed->embed(batch, &reuse_fp8);
        const Timing hit_eager = time_calls([&] { eager->embed(batch, &reuse); }, min_seconds);
        const std::vector<float> reused = graphed->embed(batch, &reuse);
        auto worst_cosine = [&](const std::vector<float>& x) {
          double worst = 1.0;
          for (int s = 0; s < batch_size; ++s) {
            double dot = 0, na = 0, nb = 0;
            for (int k = 0; k < c.hidden_size; ++k) {
              const double a = reference[s * c.hidden_size + k], b = x[s * c.hidden_size + k];
              dot += a * b, na += a * a, nb += b * b;
            }
            worst = std::min(worst, dot / std::sqrt(na * nb));
          }
          return worst;
        };
        const double worst = worst_cosine(reused);
        nlohmann::json r = {
            {"batch", batch_size},
            {"tokens", n},
            {"exact_graph", timing_json(exact)},
            {"exact_eager", timing_json(exact_eager)},
            {"exact_record_eager", timing_json(recording)},
            {"reuse_graph", timing_json(hit)},
            {"reuse_eager", timing_json(hit_eager)},
            {"exact_tokens_per_s", tokens / exact.median_ms * 1e3},
            {"reuse_tokens_per_s", tokens / hit.median_ms * 1e3},
            {"reuse_speedup_per_hit", exact.median_ms / hit.median_ms},
            {"reuse_worst_cosine_to_exact", worst},
            {"reuse_p8_graph", timing_json(hit8)},
            {"reuse_p8_speedup_per_hit", exact.median_ms / hit8.median_ms},
            {"reuse_p8_worst_cosine_to_exact", worst_cosine(reused8)},
            {"reuse_fp8_graph", timing_json(hit_fp8)},
            {"reuse_fp8_speedup_per_hit", exact.median_ms / hit_fp8.median_ms},
            {"reuse_fp8_worst_cosine_to_exact", worst_cosine(reused_fp8)},
            {"phases_exact_eager", phases(batch, nullptr)},
            {"phases_reuse_eager", phases(batch, &reuse)},
            {"map_bytes_all_layers", double(graphed->map_bytes(n)) * batch_size * c.num_layers},
            {"attention_kernels_one_layer",
             attention_only(batch_size, n, c.num_heads, c.num_heads, c.head_dim(), false)}};
        std::fprintf(stderr,
                     "B=%-3d N=%-4d exact %.3f ms (eager %.3f)  reuse %.3f ms (eager %.3f) P8 %.3f "
                     "ms FP8 %.3f ms  "
                     "%.0f tok/s  per-hit %.2fx (P8 %.2fx)  attention exact %.1f us reuse %.1f us "
                     "P8 %.1f us\n",
                     batch_size, n, exact.median_ms, exact_eager.median_ms, hit.median_ms,
                     hit_eager.median_ms, hit8.median_ms, hit_fp8.median_ms,
                     tokens / exact.median_ms * 1e3, exact.median_ms / hit.median_ms,
                     exact.median_ms / hit8.median_ms,
                     r["attention_kernels_one_layer"]["exact_ms"].get<double>() * 1e3,
                     r["attention_kernels_one_layer"]["reuse_ms"].get<double>() * 1e3,
                     r["attention_kernels_one_layer"]["reuse_p8_ms"].get<double>() * 1e3);
        out["results"].push_back(r);
      }
    }
    const std::string text = out.dump(1);
    std::printf("%s\n", text.c_str());
    if (!out_path.empty()) std::ofstream(out_path) << text << "\n";
    if (!ids_out.empty()) std::ofstream(ids_out) << ids_json.dump() << "\n";
    return 0;
  } catch (const core::Error& e) {
    std::fprintf(stderr, "gpu_bench: %s\n", e.what());
    return e.exit_code();
  }
}
