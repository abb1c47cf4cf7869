// Times the GPU decoder on a Llama-shaped model (a Hugging Face directory; the benchmark uses
// seeded random weights written by bench/gpu_decoder_torch.py): for each batch × tokens, the
// exact path (CUDA graph), AttnCache per hit with every layer's maps read from device memory
// and streamed from page-locked host memory (bf16, P8, FP8 and P4), the phases of an eager
// forward, and the attention kernels alone. One JSON object out; gpu_decoder_torch.py times
// PyTorch on the same ids for the ratio and checks our logits against its own.
//
//   gpu_decoder_bench --model DIR [--batches 1,8,32] [--lengths 189,835,2048,4096]
//                     [--min-seconds S] [--pool-gib G] [--host-pool-gib G] [--stream-max-gib G]
//                     [--out FILE] [--logits-dir DIR]
//   gpu_decoder_bench --attention-only HEADS,KV_HEADS,HEAD_DIM [--batches …] [--lengths …]
//                     [--out FILE]
//
// --attention-only times one layer's attention kernels alone on random inputs (no model): the
// exact kernel with 64- and 128-row query blocks, recording, and P·V from stored maps; the file
// is rewritten after each shape, so a run cut short keeps what it measured.
//
// End-to-end times are host wall-clock per call, from token ids in host memory to the last
// token's logits in host memory (what scoring needs). Token ids: sequence s, position i holds
// (1000003·s + 7919·i + 17) mod 32000, the formula gpu_decoder_torch.py uses.
//
// A hit's maps are one block triangle per head, layer and sequence. Real hits read distinct maps,
// so the maps of a call come from a pool bigger than the 50 MB L2 (--pool-gib of device memory,
// --host-pool-gib of page-locked host memory), slot after slot, wrapping around: each call reads
// as many map bytes from HBM (or over PCIe) as real hits would. Shapes whose maps per call exceed
// --stream-max-gib are not streamed (the time is then bytes / the measured copy bandwidth).
#include <cuda_runtime.h>

#include <CLI/CLI.hpp>
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "attncache/kernels/cuda/attention.h"
#include "attncache/kernels/cuda/check.h"
#include "attncache/kernels/cuda/runtime.h"
#include "attncache/model/llama.h"
#include "attncache/model/llama_cuda.h"
#include "core/error.h"
#include "core/stopwatch.h"
#include "gpu_bench_util.h"

namespace {

using attncache::CudaDecoderOptions;
using attncache::CudaLlamaModel;
using attncache::DeviceMapPlan;
using Output = CudaLlamaModel::Output;
namespace cuda = attncache::cuda;
using gpu_bench::parse_list;
using gpu_bench::time_calls;
using gpu_bench::Timing;
using gpu_bench::timing_json;
constexpr double kGiB = 1073741824.0;

std::vector<std::vector<int32_t>> bench_ids(int batch, int n) {
  std::vector<std::vector<int32_t>> ids(batch, std::vector<int32_t>(n));
  for (int s = 0; s < batch; ++s) {
    for (int i = 0; i < n; ++i)
      ids[s][i] = static_cast<int32_t>((1000003ll * s + 7919ll * i + 17) % 32000);
  }
  return ids;
}

// A plan whose slots take consecutive `bytes`-sized pieces of `pool`, wrapping around; null when
// one piece does not fit.
bool pool_plan(const void* pool, size_t pool_bytes, size_t bytes, size_t slots, core::DType dtype,
               bool host, DeviceMapPlan* plan) {
  const size_t piece = (bytes + 255) / 256 * 256;
  const size_t pieces = pool_bytes / piece;
  if (pieces == 0) return false;
  plan->slots.clear();
  plan->host_resident = host;
  for (size_t i = 0; i < slots; ++i) {
    plan->slots.push_back(
        {static_cast<const char*>(pool) + (i % pieces) * piece, nullptr, ~0ull, dtype});
  }
  return true;
}

// Host → device copy bandwidth from page-locked memory, GB/s (one 1 GiB copy, median of 5).
double copy_bandwidth(const cuda::PinnedHostBuffer& host) {
  const size_t bytes = std::min<size_t>(host.size(), size_t{1} << 30);
  cuda::DeviceBuffer dev(bytes, "bandwidth probe");
  std::vector<double> gbps;
  for (int i = 0; i < 5; ++i) {
    core::Stopwatch t;
    cuda::check(cudaMemcpy(dev.data(), host.data(), bytes, cudaMemcpyHostToDevice), "cudaMemcpy");
    gbps.push_back(bytes / t.seconds() / 1e9);
  }
  std::sort(gbps.begin(), gbps.end());
  return gbps[2];
}

// --attention-only: one layer's attention kernels per shape, the JSON rewritten after each.
int attention_kernels(int heads, int kv_heads, int head_dim, const std::vector<int>& batches,
                      const std::vector<int>& lengths, const std::string& out_path) {
  nlohmann::json out = {
      {"bench", "gpu_decoder_bench --attention-only"},
      {"device", cuda::describe_device(0)},
      {"wide_kernels_multiply_with", cuda::attention_uses_wgmma() ? "wgmma" : "mma.sync"},
      {"config", {{"heads", heads}, {"kv_heads", kv_heads}, {"head_dim", head_dim}}},
      {"timing", "CUDA events, median per launch; causal"},
      {"results", nlohmann::json::array()}};
  for (int n : lengths) {
    for (int b : batches) {
      nlohmann::json r = gpu_bench::attention_only(b, n, heads, kv_heads, head_dim, true);
      std::fprintf(stderr,
                   "B=%-3d N=%-5d exact %9.1f us, 128 rows %9.1f; reuse bf16 %9.1f / %9.1f, "
                   "P8 %9.1f / %9.1f (64 / 128 rows)\n",
                   b, n, r["exact_ms"].get<double>() * 1e3,
                   r["exact_128_rows_ms"].get<double>() * 1e3, r["reuse_ms"].get<double>() * 1e3,
                   r["reuse_128_rows_ms"].get<double>() * 1e3, r["reuse_p8_ms"].get<double>() * 1e3,
                   r["reuse_p8_128_rows_ms"].get<double>() * 1e3);
      r["batch"] = b;
      r["tokens"] = n;
      out["results"].push_back(r);
      if (!out_path.empty()) std::ofstream(out_path) << out.dump(1) << "\n";
    }
  }
  std::printf("%s\n", out.dump(1).c_str());
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app(
      "Time the attncache GPU decoder (exact, AttnCache per hit with maps in device or "
      "host memory); prints JSON.");
  std::string model_dir, out_path, logits_dir, batches_arg = "1,8,32",
                                               lengths_arg = "189,835,2048,4096";
  double min_seconds = 1.0, pool_gib = 16, host_pool_gib = 8, stream_max_gib = 24;
  app.add_option("--model", model_dir, "Hugging Face model directory (Llama / Qwen2)");
  app.add_option("--batches", batches_arg, "batch sizes, comma-separated");
  app.add_option("--lengths", lengths_arg, "tokens per sequence, comma-separated");
  app.add_option("--min-seconds", min_seconds, "time each configuration at least this long");
  app.add_option("--pool-gib", pool_gib, "device memory for stored maps, GiB");
  app.add_option("--host-pool-gib", host_pool_gib, "page-locked host memory for stored maps, GiB");
  app.add_option("--stream-max-gib", stream_max_gib,
                 "stream maps from host memory only when a call moves at most this many GiB");
  app.add_option("--out", out_path, "write the JSON here as well as to stdout");
  app.add_option("--logits-dir", logits_dir,
                 "write each shape's last-token logits here (B{b}_N{n}.f32) for the PyTorch check");
  std::string attention_shape;
  app.add_option("--attention-only", attention_shape,
                 "HEADS,KV_HEADS,HEAD_DIM: time the attention kernels alone (no model)");
  CLI11_PARSE(app, argc, argv);
  if (model_dir.empty() == attention_shape.empty()) {
    std::fprintf(stderr, "gpu_decoder_bench: give --model or --attention-only (one of them)\n");
    return 2;
  }
  try {
    const std::vector<int> batches = parse_list(batches_arg), lengths = parse_list(lengths_arg);
    if (!attention_shape.empty()) {
      const std::vector<int> shape = parse_list(attention_shape);
      if (shape.size() != 3 || !cuda::attention_supports_head_dim(shape[2])) {
        std::fprintf(stderr,
                     "gpu_decoder_bench: --attention-only wants HEADS,KV_HEADS,HEAD_DIM "
                     "with a head size of 16, 32, 64 or 128\n");
        return 2;
      }
      return attention_kernels(shape[0], shape[1], shape[2], batches, lengths, out_path);
    }
    const int max_tokens = *std::max_element(batches.begin(), batches.end()) *
                           *std::max_element(lengths.begin(), lengths.end());
    core::Stopwatch load_time;
    const auto host = attncache::LlamaModel::load(model_dir);
    const attncache::LlamaConfig& c = host->config();
    CudaDecoderOptions graph_options, profile_options;
    graph_options.max_batch_tokens = max_tokens;
    profile_options.max_batch_tokens = max_tokens;
    profile_options.cuda_graphs = false;
    profile_options.profile = true;
    auto model = CudaLlamaModel::create(*host, graph_options);
    auto profiled = CudaLlamaModel::create(*host, profile_options);
    std::fprintf(stderr, "loaded %s in %.1f s: %s\n", model_dir.c_str(), load_time.seconds(),
                 model->device_description().c_str());
    cuda::DeviceBuffer pool(static_cast<size_t>(pool_gib * kGiB), "the map pool");
    cuda::check(cudaMemset(pool.data(), 0x3c, pool.size()), "cudaMemset");  // p ≈ 0.011 (bf16)
    cuda::PinnedHostBuffer host_pool(static_cast<size_t>(host_pool_gib * kGiB),
                                     "the host map pool");
    std::memset(host_pool.data(), 0x3c, host_pool.size());
    const double h2d_gbps = copy_bandwidth(host_pool);
    std::fprintf(stderr, "host → device copies: %.1f GB/s\n", h2d_gbps);

    nlohmann::json out = {
        {"bench", "gpu_decoder_bench"},
        {"device", model->device_description()},
        {"wide_kernels_multiply_with", cuda::attention_uses_wgmma() ? "wgmma" : "mma.sync"},
        {"model", model_dir},
        {"config",
         {{"layers", c.num_layers},
          {"hidden", c.hidden_size},
          {"heads", c.num_heads},
          {"kv_heads", c.num_kv_heads},
          {"head_dim", c.head_dim},
          {"intermediate", c.intermediate_size},
          {"vocab", c.vocab_size}}},
        {"weights_bytes", model->weight_bytes()},
        // A version marker for the render script: since this, the timed calls (which record no
        // maps) run the last layer past attention on the rows the output needs, so its P·V is
        // one query block per sequence.
        {"last_layer_on_last_rows", true},
        {"h2d_gbps", h2d_gbps},
        {"timing",
         "host wall-clock per call, ids in host memory to last-token logits in host memory; "
         "median"},
        {"results", nlohmann::json::array()}};
    for (int n : lengths) {
      for (int b : batches) {
        const auto batch = bench_ids(b, n);
        const size_t slots = static_cast<size_t>(c.num_layers) * b;
        const double tokens = double(b) * n;
        auto timed = [&](const DeviceMapPlan* plan) {
          return time_calls([&] { model->forward(batch, Output::kLastLogits, plan); }, min_seconds,
                            3, 2);
        };
        nlohmann::json r = {{"batch", b}, {"tokens", n}};
        const Timing exact = timed(nullptr);
        r["exact_graph"] = timing_json(exact);
        r["exact_tokens_per_s"] = tokens / exact.median_ms * 1e3;
        std::fprintf(stderr, "B=%-3d N=%-5d exact %9.3f ms (%.0f tok/s)", b, n, exact.median_ms,
                     tokens / exact.median_ms * 1e3);
        if (!logits_dir.empty()) {
          std::filesystem::create_directories(logits_dir);
          const auto logits = model->forward(batch, Output::kLastLogits);
          std::ofstream(logits_dir + "/B" + std::to_string(b) + "_N" + std::to_string(n) + ".f32",
                        std::ios::binary)
              .write(reinterpret_cast<const char*>(logits.data()),
                     static_cast<std::streamsize>(logits.size() * 4));
        }
        // Phases of eager calls (CUDA events between phases).
        profiled->forward(batch, Output::kLastLogits);
        profiled->reset_profile();
        for (int i = 0; i < 3; ++i) profiled->forward(batch, Output::kLastLogits);
        const attncache::CudaProfile& p = profiled->profile();
        r["phases_exact_eager"] = {{"qkv_ms", p.qkv_ms / p.calls},
                                   {"attention_ms", p.attention_ms / p.calls},
                                   {"gemm_ms", p.gemm_ms / p.calls},
                                   {"other_ms", p.other_ms / p.calls}};
        for (const core::DType dtype :
             {core::DType::kBF16, core::DType::kP8, core::DType::kFP8, core::DType::kP4}) {
          const std::string name = dtype == core::DType::kP8    ? "p8"
                                   : dtype == core::DType::kFP8 ? "fp8"
                                   : dtype == core::DType::kP4  ? "p4"
                                                                : "bf16";
          const size_t bytes = model->map_bytes(n, dtype);
          r["map_bytes_per_hit_" + name] = double(bytes) * c.num_layers;
          DeviceMapPlan plan;
          if (pool_plan(pool.data(), pool.size(), bytes, slots, dtype, false, &plan)) {
            const Timing hit = timed(&plan);
            r["reuse_device_" + name] = timing_json(hit);
            r["reuse_device_" + name + "_speedup_per_hit"] = exact.median_ms / hit.median_ms;
            std::fprintf(stderr, "  device %s %.2fx", name.c_str(),
                         exact.median_ms / hit.median_ms);
            if (dtype == core::DType::kP8 || dtype == core::DType::kP4) {
              // The per-hit ratio again, exact and hit calls alternating: the runs above
              // come one after the other, and clocks drift between them by a few percent.
              const gpu_bench::PairedTiming paired = gpu_bench::time_pairs(
                  [&] { model->forward(batch, Output::kLastLogits, nullptr); },
                  [&] { model->forward(batch, Output::kLastLogits, &plan); }, min_seconds);
              r["reuse_device_" + name + "_alternating"] = {
                  {"exact", timing_json(paired.a)},
                  {"hit", timing_json(paired.b)},
                  {"speedup_per_hit", paired.median_ratio}};
              std::fprintf(stderr, " (alternating %.2fx)", paired.median_ratio);
            }
          }
          const double call_bytes = double(bytes) * slots;
          if (call_bytes <= stream_max_gib * kGiB &&
              pool_plan(host_pool.data(), host_pool.size(), bytes, slots, dtype, true, &plan)) {
            const Timing hit = timed(&plan);
            r["reuse_host_" + name] = timing_json(hit);
            r["reuse_host_" + name + "_speedup_per_hit"] = exact.median_ms / hit.median_ms;
            std::fprintf(stderr, "  host %s %.2fx", name.c_str(), exact.median_ms / hit.median_ms);
          } else {
            r["reuse_host_" + name + "_copy_ms_estimate"] = call_bytes / (h2d_gbps * 1e9) * 1e3;
          }
        }
        r["attention_kernels_one_layer"] =
            gpu_bench::attention_only(b, n, c.num_heads, c.num_kv_heads, c.head_dim, true);
        std::fprintf(
            stderr, "  attention %.1f us (128 rows %.1f, reuse %.1f, P8 %.1f, FP8 %.1f, P4 %.1f)\n",
            r["attention_kernels_one_layer"]["exact_ms"].get<double>() * 1e3,
            r["attention_kernels_one_layer"]["exact_128_rows_ms"].get<double>() * 1e3,
            r["attention_kernels_one_layer"]["reuse_ms"].get<double>() * 1e3,
            r["attention_kernels_one_layer"]["reuse_p8_ms"].get<double>() * 1e3,
            r["attention_kernels_one_layer"]["reuse_fp8_ms"].get<double>() * 1e3,
            r["attention_kernels_one_layer"]["reuse_p4_ms"].get<double>() * 1e3);
        out["results"].push_back(r);
        if (!out_path.empty()) std::ofstream(out_path) << out.dump(1) << "\n";  // so far
      }
    }
    const std::string text = out.dump(1);
    std::printf("%s\n", text.c_str());
    if (!out_path.empty()) std::ofstream(out_path) << text << "\n";
    return 0;
  } catch (const core::Error& e) {
    std::fprintf(stderr, "gpu_decoder_bench: %s\n", e.what());
    return e.exit_code();
  }
}
