// Times the host P4 encoder (cuda::causal_maps_to_p4, what the device map cache runs for each
// entry it loads with --gpu-maps p4) on one layer of a Llama-3.2-3B-shaped entry: 24 heads of
// random softmax rows, one thread. Runs without a GPU.
//
//   p4_encode_bench [--lengths 835,2048] [--heads 24] [--layers 28] [--repeats 3]
#include <CLI/CLI.hpp>
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <nlohmann/json.hpp>
#include <random>
#include <vector>

#include "attncache/kernels/cuda/attention.h"

int main(int argc, char** argv) {
  CLI::App app{"Times the host P4 encoder on one layer of causal maps"};
  std::vector<int> lengths = {835, 2048};
  int heads = 24, layers = 28, repeats = 3;
  app.add_option("--lengths", lengths, "tokens per entry")->delimiter(',')->capture_default_str();
  app.add_option("--heads", heads, "heads per layer")
      ->capture_default_str()
      ->check(CLI::Range(1, 64));
  app.add_option("--layers", layers, "layers per entry (for the per-entry estimate)")
      ->capture_default_str()
      ->check(CLI::Range(1, 1024));
  app.add_option("--repeats", repeats, "timed runs per length (the median is kept)")
      ->capture_default_str()
      ->check(CLI::Range(1, 100));
  CLI11_PARSE(app, argc, argv);
  nlohmann::json out = {{"heads", heads}, {"layers", layers}, {"threads", 1}, {"results", {}}};
  for (const int n : lengths) {
    if (n < 1 || n > 16384) {
      std::fprintf(stderr, "p4_encode_bench: --lengths must be 1..16384, not %d\n", n);
      return 2;
    }
    std::vector<float> maps(static_cast<size_t>(heads) * n * (n + 1) / 2);
    std::mt19937 rng(1);
    std::uniform_real_distribution<float> uniform(0.0f, 1.0f);
    for (size_t at = 0, h = 0; h < static_cast<size_t>(heads); ++h) {
      for (int i = 0; i < n; at += ++i) {
        float sum = 0;
        for (int k = 0; k <= i; ++k) sum += maps[at + k] = uniform(rng);
        for (int k = 0; k <= i; ++k) maps[at + k] /= sum;
      }
    }
    std::vector<unsigned char> p4(attncache::cuda::p4_map_bytes(n, heads));
    std::vector<double> ms;
    for (int r = 0; r <= repeats; ++r) {  // the first run warms up
      const auto t0 = std::chrono::steady_clock::now();
      attncache::cuda::causal_maps_to_p4(maps.data(), n, heads, p4.data());
      const std::chrono::duration<double, std::milli> t = std::chrono::steady_clock::now() - t0;
      if (r > 0) ms.push_back(t.count());
    }
    std::sort(ms.begin(), ms.end());
    const double median = ms[ms.size() / 2];
    out["results"].push_back({{"tokens", n},
                              {"values_per_layer", maps.size()},
                              {"layer_ms", median},
                              {"ns_per_value", median * 1e6 / maps.size()},
                              {"entry_s_one_thread", median * layers / 1e3}});
    std::fprintf(stderr,
                 "N=%-5d one layer %.1f ms (%.2f ns a value); an entry of %d layers %.2f s\n", n,
                 median, median * 1e6 / maps.size(), layers, median * layers / 1e3);
  }
  std::printf("%s\n", out.dump(1).c_str());
  return 0;
}
