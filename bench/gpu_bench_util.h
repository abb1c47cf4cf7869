// What the GPU benchmarks (gpu_bench, gpu_decoder_bench) share: wall-clock timing of calls,
// CUDA-event timing of kernels, and the attention kernels timed alone on random inputs.
#pragma once

#include <cuda_runtime.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <functional>
#include <nlohmann/json.hpp>
#include <random>
#include <sstream>
#include <string>
#include <tuple>
#include <utility>
#include <vector>

#include "attncache/kernels/cuda/attention.h"
#include "attncache/kernels/cuda/check.h"
#include "attncache/kernels/cuda/runtime.h"
#include "core/dtype.h"
#include "core/stopwatch.h"

namespace gpu_bench {

namespace cuda = attncache::cuda;

struct Timing {
  double median_ms = 0, min_ms = 0;
  int calls = 0;
  // When the timed calls ran (Unix seconds, warm-ups excluded): to line up with a log of the
  // GPU's clocks and power (device_run.sh samples nvidia-smi during the decoder stages).
  double start_unix_s = 0, end_unix_s = 0;
};

inline double unix_seconds() {
  return std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch())
      .count();
}

// Median and fastest of calls' times (ms), timed from `start_unix_s` until now.
inline Timing summarize(std::vector<double> ms, double start_unix_s) {
  std::sort(ms.begin(), ms.end());
  return {ms[ms.size() / 2], ms.front(), static_cast<int>(ms.size()), start_unix_s,
          unix_seconds()};
}

// Median of at least `min_calls` calls and `min_seconds`, after `warmups` calls (GEMM plans,
// module loading, graph capture).
inline Timing time_calls(const std::function<void()>& call, double min_seconds, int min_calls = 20,
                         int warmups = 3) {
  for (int i = 0; i < warmups; ++i) call();
  std::vector<double> ms;
  const double start = unix_seconds();
  core::Stopwatch total;
  while (static_cast<int>(ms.size()) < min_calls || total.seconds() < min_seconds) {
    core::Stopwatch one;
    call();
    ms.push_back(one.seconds() * 1e3);
  }
  return summarize(std::move(ms), start);
}

// Two calls timed in alternation (a, b, a, b, …, at least `min_pairs` pairs and `min_seconds`,
// after two warm-up pairs), so that a drift of clocks or temperature over the run falls on both
// alike: each call's timing, and the median of the per-pair ratios time(a) / time(b).
struct PairedTiming {
  Timing a, b;
  double median_ratio = 0;
};
inline PairedTiming time_pairs(const std::function<void()>& a, const std::function<void()>& b,
                               double min_seconds, int min_pairs = 5) {
  for (int i = 0; i < 2; ++i) {
    a();
    b();
  }
  std::vector<double> ta, tb, ratio;
  const double start = unix_seconds();
  core::Stopwatch total;
  while (static_cast<int>(ratio.size()) < min_pairs || total.seconds() < min_seconds) {
    core::Stopwatch one;
    a();
    ta.push_back(one.seconds() * 1e3);
    one.reset();
    b();
    tb.push_back(one.seconds() * 1e3);
    ratio.push_back(ta.back() / tb.back());
  }
  return {summarize(std::move(ta), start), summarize(std::move(tb), start),
          summarize(std::move(ratio), start).median_ms};
}

// Per-launch time: median over samples of back-to-back launches timed with CUDA events (back to
// back, so host launch gaps do not count for short kernels). A sample holds up to 20 launches
// and about 2 ms of work; there are 5 to 30 samples, about `budget_s` in all, so long kernels
// (tens of ms at 32 × 4096) do not take minutes. launch(i) gets the launch's index, for
// rotating inputs.
inline double time_kernel(const std::function<void(int)>& launch, double budget_s = 0.25) {
  cudaEvent_t start, stop;
  cuda::check(cudaEventCreate(&start), "cudaEventCreate");
  cuda::check(cudaEventCreate(&stop), "cudaEventCreate");
  for (int i = 0; i < 2; ++i) launch(i);
  auto sample = [&](int first, int inner) {
    cuda::check(cudaEventRecord(start), "cudaEventRecord");
    for (int i = 0; i < inner; ++i) launch(first + i);
    cuda::check(cudaEventRecord(stop), "cudaEventRecord");
    cuda::check(cudaEventSynchronize(stop), "cudaEventSynchronize");
    float t = 0;
    cuda::check(cudaEventElapsedTime(&t, start, stop), "cudaEventElapsedTime");
    return static_cast<double>(t) / inner;
  };
  const double one = std::max(sample(2, 1), 1e-3);
  const int inner = std::clamp(static_cast<int>(2.0 / one), 1, 20);
  const int reps = std::clamp(static_cast<int>(budget_s * 1e3 / (one * inner)), 5, 30);
  std::vector<double> ms;
  for (int r = 0; r < reps; ++r) ms.push_back(sample(3 + r * inner, inner));
  cudaEventDestroy(start);
  cudaEventDestroy(stop);
  std::sort(ms.begin(), ms.end());
  return ms[ms.size() / 2];
}

inline nlohmann::json timing_json(const Timing& t) {
  return {{"median_ms", t.median_ms},
          {"min_ms", t.min_ms},
          {"calls", t.calls},
          {"start_unix_s", t.start_unix_s},
          {"end_unix_s", t.end_unix_s}};
}

// The attention kernels alone on B sequences of N tokens with random Q, K, V: exact, exact while
// recording P, and P·V from stored bf16 and P8 maps. Causal attention (maps as block triangles)
// with kv_heads < heads is a grouped-query decoder's; bidirectional with kv_heads = heads BERT's.
inline nlohmann::json attention_only(int batch, int n, int heads, int kv_heads, int head_dim,
                                     bool causal) {
  const size_t tokens = static_cast<size_t>(batch) * n;
  const int width = heads * head_dim, qkv_width = (heads + 2 * kv_heads) * head_dim;
  // Random normal Q, K, V: a block of up to 4 Mi values drawn on the host, repeated on the
  // device (drawing 0.7 G values for 32 × 4096 on the host would take longer than the timing).
  const size_t values = tokens * qkv_width, block = std::min<size_t>(values, size_t{1} << 22);
  std::mt19937 rng(7);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  std::vector<float> host(block);
  for (float& x : host) x = normal(rng);
  std::vector<uint16_t> host16(block);
  core::convert_from_f32(core::DType::kBF16, host.data(), block, host16.data());
  cuda::DeviceBuffer qkv(values * 2, "bench qkv"), ctx(tokens * width * 2, "bench ctx");
  qkv.upload(host16.data(), block * 2);
  for (size_t at = block; at < values; at += block) {
    cuda::check(cudaMemcpy(static_cast<uint16_t*>(qkv.data()) + at, qkv.data(),
                           std::min(block, values - at) * 2, cudaMemcpyDeviceToDevice),
                "cudaMemcpy (bench qkv)");
  }

  std::vector<int> offsets(batch), lengths(batch, n), items, wide_items;
  // The last query blocks (the most keys, when causal) first, as the decoder orders them.
  for (int q = (n - 1) / cuda::kAttentionRows; q >= 0; --q) {
    for (int s = 0; s < batch; ++s) items.insert(items.end(), {s, q});
  }
  for (int q = (n - 1) / (2 * cuda::kAttentionRows); q >= 0; --q) {
    for (int s = 0; s < batch; ++s) wide_items.insert(wide_items.end(), {s, q});
  }
  for (int s = 0; s < batch; ++s) offsets[s] = s * n;
  const size_t map_bytes =
      static_cast<size_t>(heads) * (causal ? cuda::causal_map_elements(n) : size_t(n) * n) * 2;
  // Enough copies of the maps that the reuse kernel reads them from device memory, not from the
  // 50 MB L2 (as it would in a forward pass, where each layer has its own maps).
  const size_t copies = std::max<size_t>(1, (256u << 20) / (map_bytes * batch));
  cuda::DeviceBuffer maps(map_bytes * batch * copies, "bench maps");
  std::vector<cuda::DeviceMapSlot> record(batch), reuse(batch * copies);
  for (int s = 0; s < batch; ++s)
    record[s].record = static_cast<char*>(maps.data()) + map_bytes * s;
  for (size_t i = 0; i < reuse.size(); ++i) {
    reuse[i].stored = static_cast<char*>(maps.data()) + map_bytes * i;
  }
  cuda::DeviceBuffer meta_offsets(batch * 4, "meta"), meta_lengths(batch * 4, "meta"),
      meta_items(items.size() * 4, "meta"), meta_wide(wide_items.size() * 4, "meta"),
      meta_record(batch * sizeof(cuda::DeviceMapSlot), "m"),
      meta_reuse(reuse.size() * sizeof(cuda::DeviceMapSlot), "meta");
  meta_offsets.upload(offsets.data(), batch * 4);
  meta_lengths.upload(lengths.data(), batch * 4);
  meta_items.upload(items.data(), items.size() * 4);
  meta_wide.upload(wide_items.data(), wide_items.size() * 4);
  meta_record.upload(record.data(), batch * sizeof(cuda::DeviceMapSlot));
  meta_reuse.upload(reuse.data(), reuse.size() * sizeof(cuda::DeviceMapSlot));

  cuda::AttentionArgs args;
  args.qkv = qkv.data();
  args.ctx = ctx.data();
  args.seq_offset = meta_offsets.as<int>();
  args.seq_len = meta_lengths.as<int>();
  args.items = meta_items.as<int>();
  args.num_items = static_cast<int>(items.size() / 2);
  args.num_heads = heads;
  args.num_kv_heads = kv_heads;
  args.head_dim = head_dim;
  args.causal = causal;
  const double exact_ms = time_kernel([&](int) { cuda::attention_exact(args, false, nullptr); });
  // 128-row query blocks (4 warps of 32 rows) for the exact and the reuse kernels.
  auto use_wide = [&](bool on) {
    args.wide_items = on ? meta_wide.as<int>() : nullptr;
    args.num_wide_items = on ? static_cast<int>(wide_items.size() / 2) : 0;
  };
  use_wide(true);
  const double exact_wide_ms =
      time_kernel([&](int) { cuda::attention_exact(args, false, nullptr); });
  use_wide(false);
  args.maps = meta_record.as<cuda::DeviceMapSlot>();
  const double record_ms =
      time_kernel([&](int) { cuda::attention_exact(args, true, nullptr); }, 0.1);
  for (size_t c = 1; c < copies; ++c) {
    cuda::check(cudaMemcpy(static_cast<char*>(maps.data()) + map_bytes * batch * c, maps.data(),
                           map_bytes * batch, cudaMemcpyDeviceToDevice),
                "cudaMemcpy (map copies)");
  }
  auto time_reuse = [&] {
    return time_kernel([&](int i) {
      args.maps = meta_reuse.as<cuda::DeviceMapSlot>() + (i % copies) * batch;
      cuda::attention_reuse(args, cuda::MapFormat::kBF16, nullptr);
    });
  };
  // The grouped reuse kernel (reuse_pv_grouped: the query heads that share a KV head in one
  // CTA); NaN (null in the JSON) where it does not apply.
  args.group_heads = true;
  const bool groupable = cuda::attention_uses_wgmma() && cuda::reuse_heads_per_cta(args) > 0;
  args.group_heads = false;
  // Timed twice: one CTA per unit, and persistent (a CTA per SM, each taking units in turn).
  int sms = 0;
  cuda::check(cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, 0),
              "cudaDeviceGetAttribute");
  auto time_grouped = [&](const std::function<double()>& timed) {
    if (!groupable) return std::pair{std::nan(""), std::nan("")};
    args.group_heads = true;
    const double per_unit = timed();
    args.grouped_ctas = sms;
    const double persistent = timed();
    args.grouped_ctas = 0;
    args.group_heads = false;
    return std::pair{per_unit, persistent};
  };
  const double reuse_ms = time_reuse();
  use_wide(true);
  const double reuse_wide_ms = time_reuse();
  use_wide(false);
  const auto [reuse_grouped_ms, reuse_grouped_persistent_ms] = time_grouped(time_reuse);
  nlohmann::json grouped_orders = nlohmann::json::object();
  // The same maps in a one-byte format, twice as many copies in the same bytes.
  auto time_one_byte = [&](cuda::MapFormat format) {
    const size_t copies8 = 2 * copies;
    cuda::DeviceBuffer maps8(map_bytes / 2 * batch * copies8, "bench one-byte maps");
    for (size_t c = 0; c < copies8; ++c) {
      void* to = static_cast<char*>(maps8.data()) + map_bytes / 2 * batch * c;
      if (format == cuda::MapFormat::kP8) {
        cuda::maps_to_p8(maps.data(), to, map_bytes / 2 * batch, nullptr);
      } else {
        cuda::maps_to_fp8(maps.data(), to, map_bytes / 2 * batch, nullptr);
      }
    }
    std::vector<cuda::DeviceMapSlot> reuse8(batch * copies8);
    for (size_t i = 0; i < reuse8.size(); ++i) {
      reuse8[i].stored = static_cast<char*>(maps8.data()) + map_bytes / 2 * i;
      reuse8[i].format = format;
    }
    cuda::DeviceBuffer meta_reuse8(reuse8.size() * sizeof(cuda::DeviceMapSlot), "meta");
    meta_reuse8.upload(reuse8.data(), reuse8.size() * sizeof(cuda::DeviceMapSlot));
    auto timed = [&] {
      return time_kernel([&](int i) {
        args.maps = meta_reuse8.as<cuda::DeviceMapSlot>() + (i % copies8) * batch;
        cuda::attention_reuse(args, format, nullptr);
      });
    };
    const double narrow = timed();
    use_wide(true);
    const double wide = timed();
    use_wide(false);
    if (!groupable || format != cuda::MapFormat::kP8) {
      const auto [grouped, persistent] = time_grouped(timed);
      return std::tuple{narrow, wide, grouped, persistent};
    }
    // P8: the grouped kernel's unit orders (AttentionArgs::grouped_band_items); the default
    // one (0, head group by head group) also gives the plain grouped figures.
    const std::pair<const char*, int> orders[] = {
        {"group_major", 0}, {"bands_4", cuda::grouped_four_bands(args.num_items)}, {"item_major", 1}};
    std::pair<double, double> by_default;
    for (const auto& [name, band] : orders) {
      args.grouped_band_items = band;
      const auto times = time_grouped(timed);
      grouped_orders[name] = {{"one_cta_per_unit_ms", times.first},
                              {"persistent_ms", times.second}};
      if (band == 0) by_default = times;
    }
    args.grouped_band_items = 0;
    return std::tuple{narrow, wide, by_default.first, by_default.second};
  };
  const auto [reuse8_ms, reuse8_wide_ms, reuse8_grouped_ms, reuse8_persistent_ms] =
      time_one_byte(cuda::MapFormat::kP8);
  const auto [reuse_fp8_ms, reuse_fp8_wide_ms, reuse_fp8_grouped_ms, reuse_fp8_persistent_ms] =
      time_one_byte(cuda::MapFormat::kFP8);
  // P4 (causal maps only): each sequence's recorded maps converted by maps_to_p4, enough copies
  // to miss L2; the 64-row kernel, and the grouped one as the decoder runs it (persistent, four
  // bands).
  double reuse_p4_ms = std::nan(""), reuse_p4_grouped_ms = std::nan("");
  const size_t p4_bytes = causal ? (cuda::p4_map_bytes(n, heads) + 255) / 256 * 256 : 0;
  if (causal) {
    const size_t copies4 = std::max<size_t>(1, (256u << 20) / (p4_bytes * batch));
    cuda::DeviceBuffer maps4(p4_bytes * batch * copies4, "bench P4 maps");
    std::vector<cuda::DeviceMapSlot> reuse4(batch * copies4);
    for (size_t i = 0; i < reuse4.size(); ++i) {
      void* to = static_cast<char*>(maps4.data()) + p4_bytes * i;
      cuda::maps_to_p4(static_cast<const char*>(maps.data()) + map_bytes * (i % batch),
                       cuda::MapFormat::kBF16, n, heads, to, nullptr);
      reuse4[i].stored = to;
      reuse4[i].format = cuda::MapFormat::kP4;
    }
    cuda::DeviceBuffer meta_reuse4(reuse4.size() * sizeof(cuda::DeviceMapSlot), "meta");
    meta_reuse4.upload(reuse4.data(), reuse4.size() * sizeof(cuda::DeviceMapSlot));
    auto timed = [&] {
      return time_kernel([&](int i) {
        args.maps = meta_reuse4.as<cuda::DeviceMapSlot>() + (i % copies4) * batch;
        cuda::attention_reuse(args, cuda::MapFormat::kP4, nullptr);
      });
    };
    reuse_p4_ms = timed();
    args.grouped_band_items = cuda::grouped_four_bands(args.num_items);
    reuse_p4_grouped_ms = time_grouped(timed).second;
    args.grouped_band_items = 0;
  }
  cuda::check(cudaDeviceSynchronize(), "attention kernels");
  // Causal: half the products (FlashAttention's convention).
  const double flops = (causal ? 2.0 : 4.0) * batch * heads * double(n) * n * head_dim;
  const double reuse_bytes =  // P, V, ctx
      double(map_bytes) * batch + tokens * (kv_heads * head_dim + width) * 2.0;
  return {{"exact_ms", exact_ms},
          {"exact_128_rows_ms", exact_wide_ms},
          {"exact_128_rows_tflops", flops / exact_wide_ms / 1e9},
          {"reuse_128_rows_ms", reuse_wide_ms},
          {"reuse_p8_128_rows_ms", reuse8_wide_ms},
          {"reuse_fp8_128_rows_ms", reuse_fp8_wide_ms},
          {"reuse_grouped_ms", reuse_grouped_ms},
          {"reuse_p8_grouped_ms", reuse8_grouped_ms},
          {"reuse_fp8_grouped_ms", reuse_fp8_grouped_ms},
          {"reuse_grouped_persistent_ms", reuse_grouped_persistent_ms},
          {"reuse_p8_grouped_persistent_ms", reuse8_persistent_ms},
          {"reuse_fp8_grouped_persistent_ms", reuse_fp8_persistent_ms},
          {"reuse_p8_grouped_orders", grouped_orders},
          {"exact_record_ms", record_ms},
          {"reuse_ms", reuse_ms},
          {"exact_tflops", flops / exact_ms / 1e9},
          {"reuse_tbps", reuse_bytes / reuse_ms / 1e9},
          {"reuse_p8_ms", reuse8_ms},
          {"reuse_p8_tbps", (reuse_bytes - double(map_bytes) * batch / 2) / reuse8_ms / 1e9},
          {"reuse_p8_speedup", exact_ms / reuse8_ms},
          {"reuse_fp8_ms", reuse_fp8_ms},
          {"reuse_fp8_speedup", exact_ms / reuse_fp8_ms},
          {"reuse_p4_ms", reuse_p4_ms},
          {"reuse_p4_grouped_bands_4_persistent_ms", reuse_p4_grouped_ms},
          {"p4_map_bytes_per_layer", double(p4_bytes) * batch},
          {"map_bytes_per_layer", double(map_bytes) * batch},
          {"reuse_speedup", exact_ms / reuse_ms}};
}

inline std::vector<int> parse_list(const std::string& s) {
  std::vector<int> out;
  std::stringstream ss(s);
  for (std::string item; std::getline(ss, item, ',');) out.push_back(std::stoi(item));
  return out;
}

}  // namespace gpu_bench
