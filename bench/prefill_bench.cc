// Times prefill of the CPU Llama decoder on fixed token sequences: the forward pass over every
// token plus the LM head for the last token of each sequence (what a prefill-only scorer
// computes), and reports throughput, latency and where the time goes. Driven by
// bench/prefill_compare.py, which runs the peers on the same ids.
//
//   prefill_bench --model FILE.gguf --ids FILE --batch B [--threads T] [--min-seconds S]
//                 [--min-reps R] [--warmup W] [--logits-out FILE]
//
// FILE has one sequence per line (space-separated token ids); the first B lines form the batch,
// run as one forward call. Prints one JSON object; --logits-out writes the B last-token logit
// rows (f32, little-endian, B × vocab).
#include <omp.h>

#include <CLI/CLI.hpp>
#include <algorithm>
#include <cstdio>
#include <fstream>
#include <nlohmann/json.hpp>

#include "attncache/model/llama.h"
#include "bench_util.h"
#include "core/error.h"
#include "core/stopwatch.h"

int main(int argc, char** argv) {
  CLI::App app(
      "Time prefill (forward + last-token LM head) of the attncache Llama decoder on "
      "fixed token ids; prints JSON.");
  std::string model_path, ids_path, logits_out;
  int batch_size = 1, threads = 0, min_reps = 5, warmup = 2;
  double min_seconds = 2.0;
  app.add_option("--model", model_path, "GGUF file")->required();
  app.add_option("--ids", ids_path, "token ids, one sequence per line")->required();
  app.add_option("--batch", batch_size, "sequences per forward pass")
      ->required()
      ->check(CLI::PositiveNumber);
  app.add_option("--threads", threads, "threads (0: all cores)");
  app.add_option("--min-seconds", min_seconds, "keep timing at least this long");
  app.add_option("--min-reps", min_reps, "and at least this many passes")
      ->check(CLI::PositiveNumber);
  app.add_option("--warmup", warmup, "untimed passes first")->check(CLI::NonNegativeNumber);
  app.add_option("--logits-out", logits_out, "write the last tokens' logits (f32) here");
  CLI11_PARSE(app, argc, argv);
  try {
    if (threads > 0) omp_set_num_threads(threads);
    const std::vector<std::vector<int32_t>> batch = bench::read_id_lines(ids_path, batch_size);
    size_t tokens = 0;
    for (const auto& s : batch) tokens += s.size();

    core::Stopwatch load_watch;
    const std::unique_ptr<attncache::LlamaModel> model = attncache::LlamaModel::load(model_path);
    const double load_seconds = load_watch.seconds();
    const attncache::LlamaConfig& c = model->config();
    const int d = c.hidden_size, vocab = c.vocab_size;
    attncache::LlamaWorkspace ws;
    std::vector<float> logits(static_cast<size_t>(batch_size) * vocab);
    double lm_head_seconds = 0;
    // One prefill: all tokens through the decoder (its last layer past attention on each
    // sequence's last row only, as llama.cpp's graph does), then the LM head on those rows.
    auto prefill = [&] {
      const std::vector<float>& last = model->forward(batch, ws, nullptr, nullptr, nullptr,
                                                      attncache::LlamaModel::Rows::kLast);
      core::Stopwatch head;
      model->logits(last.data(), batch_size, logits.data());
      lm_head_seconds += head.seconds();
    };
    for (int i = 0; i < warmup; ++i) prefill();  // page in weights, size buffers
    const double clock_ghz = bench::measure_clock_ghz();
    const double peak_gflops = bench::fp32_peak_gflops(clock_ghz);
    ws.profile = true;
    ws.timings = {};
    lm_head_seconds = 0;
    std::vector<double> latencies;
    core::Stopwatch total;
    while (static_cast<int>(latencies.size()) < min_reps || total.seconds() < min_seconds) {
      core::Stopwatch one;
      prefill();
      latencies.push_back(one.seconds());
    }
    std::vector<double> sorted = latencies;
    std::sort(sorted.begin(), sorted.end());
    const double median = sorted[sorted.size() / 2];
    const double reps = static_cast<double>(latencies.size());

    const attncache::ForwardProfile& p = ws.timings;
    const double forward = p.qkv_seconds + p.gemm_seconds + p.attention_seconds + p.other_seconds;
    const double all = forward + lm_head_seconds;
    const double gemm_seconds = p.qkv_seconds + p.gemm_seconds;
    const double lm_head_flops = 2.0 * batch_size * vocab * d * reps;
    std::vector<int> top1(batch_size);
    for (int s = 0; s < batch_size; ++s) {
      const float* row = logits.data() + static_cast<size_t>(s) * vocab;
      top1[s] = static_cast<int>(std::max_element(row, row + vocab) - row);
    }
    nlohmann::json result = {
        {"engine", "attncache"},
        {"model", c.name},
        {"batch", batch_size},
        {"seq_len", batch[0].size()},
        {"tokens", tokens},
        {"threads", omp_get_max_threads()},
        {"reps", latencies.size()},
        {"load_seconds", load_seconds},
        {"latencies", latencies},
        {"median_batch_seconds", median},
        {"tokens_per_second", tokens / median},
        {"per_sequence_ms", median * 1e3 / batch_size},
        {"top1", top1},
        {"profile",
         {{"qkv_share", p.qkv_seconds / all},
          {"attention_share", p.attention_seconds / all},
          {"other_gemm_share", p.gemm_seconds / all},
          {"other_share", p.other_seconds / all},
          {"lm_head_share", lm_head_seconds / all},
          {"seconds_per_batch",
           {{"qkv", p.qkv_seconds / reps},
            {"attention", p.attention_seconds / reps},
            {"other_gemm", p.gemm_seconds / reps},
            {"other", p.other_seconds / reps},
            {"lm_head", lm_head_seconds / reps},
            {"total", all / reps}}},
          {"gemm_gflops", p.gemm_flops / gemm_seconds / 1e9},
          {"qkv_gemm_share_of_gemm_seconds", p.qkv_seconds / gemm_seconds},
          {"lm_head_gflops", lm_head_flops / lm_head_seconds / 1e9},
          {"attention_gflops", p.attention_flops / p.attention_seconds / 1e9},
          {"clock_ghz_measured", clock_ghz},
          {"peak_gflops", peak_gflops},
          {"gemm_fraction_of_peak", p.gemm_flops / gemm_seconds / 1e9 / peak_gflops}}}};
    std::printf("%s\n", result.dump().c_str());
    if (!logits_out.empty()) {
      const std::string tmp = logits_out + ".tmp";
      std::ofstream f(tmp, std::ios::binary);
      f.write(reinterpret_cast<const char*>(logits.data()),
              static_cast<std::streamsize>(logits.size() * sizeof(float)));
      f.close();
      if (!f || std::rename(tmp.c_str(), logits_out.c_str()) != 0) {
        core::throw_bad_input("cannot write ", logits_out);
      }
    }
  } catch (const core::Error& e) {
    std::fprintf(stderr, "prefill_bench: %s\n", e.what());
    return e.exit_code();
  }
  return 0;
}
