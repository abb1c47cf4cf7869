// Times the device map cache loading decoder entries it does not hold: what a miss costs before
// its hit can run. Entries are Llama-3.2-3B-shaped by default (28 layers × 24 heads) of random
// softmax rows, held in host memory as a map database holds them: P8 packed triangles, or P4
// rows. The cache transfers them as stored and lays them out on the device; per length:
//   P8 -> P8                   as block triangles (a P8 database);
//   P8 -> P4 (device encode)   then encoded to P4 (--gpu-maps p4 on a P8 database);
//   P4 rows -> P4              as P4 block triangles (a P4 database);
// each from ordinary memory (copied into page-locked staging first, in pieces) and from
// page-locked memory, where --pin-maps puts a map database (the JSON says how long the copy
// there took). A load is plan() of an entry that is not resident (the cache holds one entry,
// and loads alternate between two), until its copies and conversions are done. Also times a
// plain copy of the P8 entry's bytes from page-locked memory (the PCIe floor) and, on one
// thread, the host P4 encoder that a P4 database build runs per layer.
//
//   map_cache_bench [--lengths 835,2048] [--heads 24] [--layers 28] [--loads 5] [--json FILE]
#include <omp.h>

#include <CLI/CLI.hpp>
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <fstream>
#include <nlohmann/json.hpp>
#include <random>
#include <string>
#include <vector>

#include "attncache/kernels/cuda/check.h"
#include "attncache/kernels/cuda/runtime.h"
#include "attncache/kernels/stored_maps.h"
#include "attncache/memo/device_map_cache.h"
#include "core/dtype.h"
#include "core/error.h"
#include "core/stopwatch.h"

namespace {

using attncache::memo::DeviceMapCache;
using attncache::memo::HostMaps;

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

// One layer of `heads` causal maps of random softmax rows (packed lower triangles).
std::vector<float> random_layer(int n, int heads) {
  std::vector<float> maps(static_cast<size_t>(heads) * n * (n + 1) / 2);
#pragma omp parallel for schedule(dynamic)
  for (int h = 0; h < heads; ++h) {
    std::mt19937 rng(h + 1);
    std::exponential_distribution<float> scores(1.0f);
    float* head = maps.data() + static_cast<size_t>(h) * n * (n + 1) / 2;
    for (int i = 0; i < n; ++i) {
      float* row = head + static_cast<size_t>(i) * (i + 1) / 2;
      float sum = 0;
      for (int k = 0; k <= i; ++k) sum += row[k] = std::exp(2.0f * scores(rng));
      for (int k = 0; k <= i; ++k) row[k] /= sum;
    }
  }
  return maps;
}

// `layers` copies of one layer's stored bytes (the cache's work does not depend on the values).
std::vector<unsigned char> entry_of(const std::vector<unsigned char>& layer, int layers) {
  std::vector<unsigned char> entry(layer.size() * layers);
#pragma omp parallel for
  for (int l = 0; l < layers; ++l)
    std::copy(layer.begin(), layer.end(), entry.begin() + l * layer.size());
  return entry;
}

}  // namespace

int main(int argc, char** argv) {
  namespace cuda = attncache::cuda;
  CLI::App app{"Times the device map cache loading entries it does not hold"};
  std::vector<int> lengths = {835, 2048};
  int heads = 24, layers = 28, loads = 5;
  std::string json_path;
  app.add_option("--lengths", lengths, "tokens per entry")->delimiter(',')->capture_default_str();
  app.add_option("--heads", heads, "heads per layer")
      ->capture_default_str()
      ->check(CLI::Range(1, 64));
  app.add_option("--layers", layers, "layers per entry")
      ->capture_default_str()
      ->check(CLI::Range(1, 1024));
  app.add_option("--loads", loads, "timed loads per case (the median is kept)")
      ->capture_default_str()
      ->check(CLI::Range(1, 100));
  app.add_option("--json", json_path, "write the results here as well");
  CLI11_PARSE(app, argc, argv);
  std::setvbuf(stdout, nullptr, _IOLBF, 0);  // each line as it is done, into a pipe or file too
  try {
    if (cuda::device_count() == 0) core::throw_bad_input("no CUDA device");
    std::string command = "map_cache_bench";
    for (int i = 1; i < argc; ++i) command += std::string(" ") + argv[i];
    nlohmann::json out = {{"command", command},
                          {"heads", heads},
                          {"layers", layers},
                          {"host_threads", omp_get_max_threads()},
                          {"device", cuda::describe_device(0)},
                          {"results", nlohmann::json::array()}};
    for (const int n : lengths) {
      if (n < 1 || n > 8192) core::throw_bad_input("--lengths must be 1..8192, not ", n);
      const std::vector<float> f32 = random_layer(n, heads);
      std::vector<unsigned char> p8(f32.size()), p4(attncache::p4_layer_bytes(n, heads));
      core::convert_from_f32(core::DType::kP8, f32.data(), f32.size(), p8.data());
      std::vector<double> encode_ms;
      for (int r = 0; r < 3; ++r) {
        core::Stopwatch watch;
        attncache::p4_encode_layer(f32.data(), n, heads, p4.data());
        encode_ms.push_back(watch.seconds() * 1e3);
      }
      const std::vector<unsigned char> p8_entry = entry_of(p8, layers);
      const std::vector<unsigned char> p4_entry = entry_of(p4, layers);
      nlohmann::json result = {
          {"tokens", n},
          {"p8_entry_bytes", p8_entry.size()},
          {"p4_entry_bytes", p4_entry.size()},
          {"host_p4_encode_ms_per_layer_one_thread", median(encode_ms)},
          {"host_p4_encode_ns_per_value", median(encode_ms) * 1e6 / f32.size()}};
      {  // the PCIe floor: the P8 entry's bytes from page-locked memory
        cuda::PinnedHostBuffer pinned(p8_entry.size(), "bench staging");
        std::copy(p8_entry.begin(), p8_entry.end(), static_cast<unsigned char*>(pinned.data()));
        cuda::DeviceBuffer device(p8_entry.size(), "bench copy");
        std::vector<double> ms;
        for (int r = 0; r <= loads; ++r) {
          core::Stopwatch watch;
          cuda::check(
              cudaMemcpy(device.data(), pinned.data(), p8_entry.size(), cudaMemcpyHostToDevice),
              "cudaMemcpy");
          if (r > 0) ms.push_back(watch.seconds() * 1e3);
        }
        result["pinned_copy_p8_entry_ms"] = median(ms);
        result["pinned_copy_gb_per_s"] = p8_entry.size() / median(ms) / 1e6;
      }
      struct Case {
        const char* name;
        core::DType source;
        bool p4;
      };
      // The entries in page-locked memory, as --pin-maps holds a map database.
      std::vector<cuda::PinnedHostBuffer> pinned;
      for (const auto* entry : {&p8_entry, &p4_entry}) {
        core::Stopwatch watch;
        pinned.push_back(
            attncache::memo::page_locked_copy(entry->data(), entry->size(), "an entry"));
        result["page_lock_ms"].push_back(watch.seconds() * 1e3);
      }
      for (const bool page_locked : {false, true}) {
        for (const Case& c : {Case{"P8 -> P8", core::DType::kP8, false},
                              Case{"P8 -> P4 (device encode)", core::DType::kP8, true},
                              Case{"P4 rows -> P4", core::DType::kP4, false}}) {
          const int which = c.source == core::DType::kP4 ? 1 : 0;
          const void* bytes = page_locked  ? static_cast<const void*>(pinned[which].data())
                              : which == 0 ? static_cast<const void*>(p8_entry.data())
                                           : static_cast<const void*>(p4_entry.data());
          auto source = [&](int64_t) { return HostMaps{n, bytes, c.source}; };
          DeviceMapCache probe(source, layers, heads, true, 1, c.p4);
          const size_t entry_bytes = probe.entry_bytes(n, c.source);
          DeviceMapCache cache(source, layers, heads, true, entry_bytes, c.p4);
          std::vector<double> ms;
          for (int r = 0; r <= loads; ++r) {  // the first load allocates buffers: not timed
            core::Stopwatch watch;
            cache.plan({r % 2});
            if (r > 0) ms.push_back(watch.seconds() * 1e3);
          }
          const size_t host_bytes =
              c.source == core::DType::kP4 ? p4_entry.size() : p8_entry.size();
          const DeviceMapCache::Stats stats = cache.stats();
          const std::string name = std::string(c.name) + (page_locked ? ", page-locked" : "");
          result["cases"].push_back({{"case", name},
                                     {"page_locked_source", page_locked},
                                     {"host_bytes", host_bytes},
                                     {"device_bytes", entry_bytes},
                                     {"staging_bytes", stats.staging_bytes},
                                     {"scratch_bytes", stats.scratch_bytes},
                                     {"load_ms", median(ms)},
                                     {"host_gb_per_s", host_bytes / median(ms) / 1e6}});
          std::printf(
              "%5d tokens  %-40s %8.1f ms a load  (%.2f GB from host, %.2f GB on the device; "
              "%.2f GB page-locked staging, %.2f GB device scratch)\n",
              n, name.c_str(), median(ms), host_bytes / 1e9, entry_bytes / 1e9,
              stats.staging_bytes / 1e9, stats.scratch_bytes / 1e9);
        }
      }
      std::printf(
          "%5d tokens  pinned copy of the P8 entry %8.1f ms; host P4 encode %.1f ms a layer "
          "(one thread)\n",
          n, result["pinned_copy_p8_entry_ms"].get<double>(), median(encode_ms));
      out["results"].push_back(result);
    }
    if (!json_path.empty()) std::ofstream(json_path) << out.dump(1) << "\n";
  } catch (const core::Error& e) {
    std::fprintf(stderr, "map_cache_bench: %s\n", e.what());
    return e.exit_code();
  }
  return 0;
}
