// Times the CPU encoder on fixed token sequences and reports throughput, latency and where the
// time goes. Driven by bench/embed_compare.py, which runs the peers on the same ids.
//
//   embed_bench --model DIR --ids FILE --batch B [--threads T] [--min-seconds S]
//
// FILE has one sequence per line (space-separated token ids, special tokens included); the first
// B lines form the batch. Prints one JSON object.
#include <omp.h>

#include <CLI/CLI.hpp>
#include <algorithm>
#include <cstdio>
#include <fstream>
#include <nlohmann/json.hpp>

#include "attncache/embedder.h"
#include "bench_util.h"
#include "core/error.h"
#include "core/stopwatch.h"

int main(int argc, char** argv) {
  CLI::App app("Time the attncache CPU encoder on fixed token ids; prints JSON.");
  std::string model, ids_path, embeddings_out;
  int batch_size = 1, threads = 0, min_reps = 5;
  double min_seconds = 2.0;
  app.add_option("--model", model, "model directory")->required();
  app.add_option("--ids", ids_path, "token ids, one sequence per line")->required();
  app.add_option("--batch", batch_size, "sequences per forward pass")->required();
  app.add_option("--threads", threads, "threads (0: all cores)");
  app.add_option("--min-seconds", min_seconds, "keep timing at least this long");
  app.add_option("--min-reps", min_reps, "and at least this many forward passes");
  app.add_option("--embeddings-out", embeddings_out, "write the batch's embeddings (f32) here");
  CLI11_PARSE(app, argc, argv);
  try {
    if (threads > 0) omp_set_num_threads(threads);
    const std::vector<std::vector<int32_t>> batch = bench::read_id_lines(ids_path, batch_size);

    attncache::Embedder embedder = attncache::Embedder::load(model);
    for (int i = 0; i < 2; ++i) embedder.embed(batch);  // warm up: page in weights, size buffers
    const double clock_ghz = bench::measure_clock_ghz();
    const double peak_gflops = bench::fp32_peak_gflops(clock_ghz);
    attncache::BertWorkspace& ws = embedder.workspace();
    ws.profile = true;
    ws.timings = {};
    std::vector<double> latencies;
    core::Stopwatch total;
    std::vector<float> out;
    while (static_cast<int>(latencies.size()) < min_reps || total.seconds() < min_seconds) {
      core::Stopwatch one;
      out = embedder.embed(batch);
      latencies.push_back(one.seconds());
    }
    std::vector<double> sorted = latencies;
    std::sort(sorted.begin(), sorted.end());
    const double median = sorted[sorted.size() / 2];
    const double reps = static_cast<double>(latencies.size());
    const attncache::ForwardProfile& p = ws.timings;
    const double forward = p.gemm_seconds + p.attention_seconds + p.other_seconds;
    nlohmann::json result = {
        {"engine", "attncache"},
        {"batch", batch_size},
        {"seq_len", batch[0].size()},
        {"threads", omp_get_max_threads()},
        {"reps", latencies.size()},
        {"median_batch_seconds", median},
        {"sentences_per_second", batch_size / median},
        {"per_sentence_ms", median * 1e3 / batch_size},
        {"profile",
         {{"gemm_share", p.gemm_seconds / forward},
          {"attention_share", p.attention_seconds / forward},
          {"other_share", p.other_seconds / forward},
          {"gemm_gflops", p.gemm_flops / p.gemm_seconds / 1e9},
          {"clock_ghz_measured", clock_ghz},
          {"peak_gflops", peak_gflops},
          {"gemm_fraction_of_peak", p.gemm_flops / p.gemm_seconds / 1e9 / peak_gflops},
          {"attention_gflops", p.attention_flops / p.attention_seconds / 1e9},
          {"forward_seconds_per_batch", forward / reps}}}};
    std::printf("%s\n", result.dump().c_str());
    if (!embeddings_out.empty()) {
      std::ofstream f(embeddings_out, std::ios::binary);
      f.write(reinterpret_cast<const char*>(out.data()), out.size() * sizeof(float));
    }
  } catch (const core::Error& e) {
    std::fprintf(stderr, "embed_bench: %s\n", e.what());
    return e.exit_code();
  }
  return 0;
}
