#include "attncache/cli/memo_command.h"

#include <omp.h>
#include <unistd.h>

#include <cstdio>
#include <filesystem>
#include <memory>
#include <sstream>

#include "attncache/device_embedder.h"
#include "attncache/memo/evaluation.h"
#include "attncache/memo/gpu_evaluation.h"
#include "attncache/memo/map_database.h"
#include "attncache/prefill_model.h"
#include "attncache/tasks/multiple_choice.h"
#include "core/atomic_file.h"
#include "core/error.h"
#include "core/text_lines.h"

namespace attncache::cli {
namespace {

struct BuildCliOptions {
  std::string model = "all-MiniLM-L6-v2";
  std::string corpus;
  std::string mmlu;
  std::string mmlu_split = "validation";
  int shots = 5;
  std::string db;
  size_t max_entries = 0;
  int max_length = 0;
  std::string map_dtype = "F16";
  std::string index = "Flat";
  int epochs = 3;
  uint64_t seed = 1;
  float length_weight = 0.02f;
  int threads = 0;
  std::string device = "cpu";
};

struct EvalCliOptions {
  std::string model = "all-MiniLM-L6-v2";
  std::string db;
  std::string queries;
  std::string json;
  double threshold = 0.995;
  int batch = 32;
  int threads = 0;
  int search_breadth = 0;
  std::string layers = "all";
  std::string heads = "all";
  bool skip_crc_check = false;
  bool allow_longer = false;
  bool paper_mode = false;
  float max_tv = 0.02f;
  std::string device = "cpu";
  size_t gpu_cache_mib = 4096;
  std::string gpu_maps = "stored";
  bool pin_maps = false;
};

std::unique_ptr<PrefillModel> load_model(const std::string& model, int threads) {
  if (threads > 0) omp_set_num_threads(threads);
  return load_prefill_model(model);
}

int checked_max_tokens(const PrefillModel& model, int max_length) {
  const int limit = model.context_limit();
  const int max_tokens = max_length > 0 ? max_length : model.max_tokens();
  if (max_tokens > limit) {
    core::throw_bad_input("--max-length ", max_tokens, " exceeds the model's ", limit,
                          " positions");
  }
  return max_tokens;
}

// The build's inputs: the corpus's lines, or MMLU prompts for a decoder.
std::vector<std::string> build_inputs(const BuildCliOptions& o, const PrefillModel& model) {
  if (o.mmlu.empty()) return core::read_lines(o.corpus);
  if (!model.causal()) core::throw_bad_input("--mmlu prompts are for decoder models");
  const std::vector<tasks::McQuestion> dev = tasks::read_mmlu_split(o.mmlu, "dev");
  std::vector<tasks::McQuestion> questions = tasks::read_mmlu_split(o.mmlu, o.mmlu_split);
  return tasks::mmlu_prompts(questions, dev, o.shots);
}

void run_build(const BuildCliOptions& o) {
  if (o.corpus.empty() == o.mmlu.empty()) {
    core::throw_bad_input("give the inputs with exactly one of --corpus and --mmlu");
  }
  std::unique_ptr<PrefillModel> model = load_model(o.model, o.threads);
  memo::BuildOptions options;
  options.max_tokens = checked_max_tokens(*model, o.max_length);
  options.max_entries = o.max_entries;
  options.map_dtype = memo::parse_map_dtype(o.map_dtype, "--map-dtype");
  options.index_spec = o.index;
  options.train.epochs = o.epochs;
  options.train.seed = o.seed;
  options.label.length_weight = o.length_weight;
  options.progress = true;
  const std::vector<std::string> texts = build_inputs(o, *model);
  DeviceEmbedder device(*model, parse_device(o.device));  // cpu: loads nothing
  if (device.on_gpu()) {
    std::fprintf(stderr, "recording maps on %s\n", device.where().c_str());
    options.forward = [&device](const std::vector<std::vector<int32_t>>& batch,
                                AttentionHook& hook) {
      return device.embed_recording(batch, hook);
    };
  }
  const memo::BuildReport r = memo::MapDatabase::build(*model, texts, o.db, options);
  std::printf(
      "built %s: %zu entries from %zu lines (%zu empty, %zu duplicate, %zu truncated to "
      "%d tokens)\n",
      o.db.c_str(), r.entries, r.lines, r.empty_lines, r.duplicates, r.truncated,
      options.max_tokens);
  const auto& loss = r.training.epoch_loss;
  std::printf(
      "  maps %.1f s (forward %.1f s, conversion %.1f s), projector %.1f s (labels %.1f s; %zu "
      "epochs, loss %.4f -> %.4f)",
      r.collect_seconds, r.forward_seconds, r.convert_seconds, r.train_seconds, r.label_seconds,
      loss.size(), loss.empty() ? 0.0 : loss.front(), loss.empty() ? 0.0 : loss.back());
  std::printf(", index %.2f s\n  %.1f MB on disk, %.2f MB per entry\n", r.index_seconds,
              r.bytes / 1e6, r.bytes / 1e6 / r.entries);
}

std::string fmt(double v, const char* spec = "%.3f") {
  if (std::isnan(v)) return "-";
  char buf[64];
  std::snprintf(buf, sizeof buf, spec, v);
  return buf;
}

void print_report(const nlohmann::json& r) {
  auto num = [](const nlohmann::json& j) { return j.is_number() ? j.get<double>() : NAN; };
  const auto& fid = r["fidelity"];
  const auto& cos = fid["cosine_on_hits"];
  std::printf("queries %zu (mean %.1f tokens), threshold %g, batch %d\n",
              r["queries"].get<size_t>(), num(r["mean_tokens"]), num(r["threshold"]),
              r["batch"].get<int>());
  std::printf(
      "hit rate %.1f%% (%zu hits; %zu queries had a stored input of their length); "
      "exact-input cache hit rate %.1f%%\n",
      100 * num(r["hit_rate"]), r["hits"].get<size_t>(), r["same_length_candidates"].get<size_t>(),
      100 * num(r["exact_result_cache_hit_rate"]));
  std::printf(
      "fidelity on hits: cosine mean %s, p5 %s, min %s; recall@%d vs exact: all %s, "
      "hits %s\n",
      fmt(num(cos.value("mean", nlohmann::json())), "%.5f").c_str(),
      fmt(num(cos.value("p5", nlohmann::json())), "%.5f").c_str(),
      fmt(num(cos.value("min", nlohmann::json())), "%.5f").c_str(), fid["recall_at_k"].get<int>(),
      fmt(num(fid["recall_all_queries"])).c_str(), fmt(num(fid["recall_on_hits"])).c_str());
  std::printf("\n%-36s %10s %10s %12s %12s %9s\n", "path (lookup + loading timed)", "total s",
              "queries/s", "ms/query", "batch p95 ms", "vs exact");
  const double exact = num(r["timing"]["exact"]["seconds"]);
  for (const char* path :
       {"exact", "attncache", "exact_result_cache", "exact_result_cache_then_attncache"}) {
    const auto& t = r["timing"][path];
    std::printf("%-36s %10.3f %10.1f %12.3f %12.2f %8.3fx\n", path, num(t["seconds"]),
                num(t["queries_per_second"]), num(t["mean_ms_per_query"]),
                num(t["batch_latency_ms_p95"]), exact / num(t["seconds"]));
  }
  std::printf("lookup (features + projector + Faiss): %.3f ms per query\n",
              num(r["timing"]["lookup_ms_per_query"]));
  for (const char* key : {"per_hit", "per_hit_batch1"}) {
    const auto& h = r[key];
    if (h.is_null()) continue;
    std::printf(
        "per hit (%zu timed, batch %d): attention %.2fx over all layers, %.2fx per reused "
        "layer; end to end %.3fx%s\n",
        h["queries"].get<size_t>(), h["batch"].get<int>(), num(h["attention_speedup"]),
        num(h["attention_speedup_reused_layers"]), num(h["end_to_end_speedup"]),
        h["timed_on"] == "hits" ? "" : " (forced reuse: fewer than 8 hits)");
  }
  std::printf("\n%10s | %-40s | %-40s\n", "", "paper rule (projector only)",
              "verified (layer 0 measured)");
  std::printf("%10s | %8s %10s %10s %9s | %8s %10s %10s %9s\n", "threshold", "hit rate", "cos mean",
              "cos p5", "speedup", "hit rate", "cos mean", "cos p5", "speedup");
  for (const auto& s : r["sweep"]) {
    std::printf("%10g", num(s["threshold"]));
    for (const char* mode : {"paper", "verified"}) {
      const auto& m = s[mode];
      const auto& c = m["cosine_on_hits"];
      std::printf(" | %7.1f%% %10s %10s %8.3fx", 100 * num(m["hit_rate"]),
                  fmt(num(c.value("mean", nlohmann::json())), "%.5f").c_str(),
                  fmt(num(c.value("p5", nlohmann::json())), "%.5f").c_str(),
                  num(m["modelled_workload_speedup"]));
    }
    std::printf("\n");
  }
  std::printf("(speedups in the sweep are modelled from measured per-query costs)\n");
  const auto& db = r["database"];
  std::printf("\ndatabase: %zu entries, %.1f MB on disk, %.3f MB per entry (%s maps, %s index)\n",
              db["entries"].get<size_t>(), num(db["bytes_on_disk"]) / 1e6,
              num(db["bytes_per_entry"]) / 1e6, db["map_dtype"].get<std::string>().c_str(),
              db["index"].get<std::string>().c_str());
}

void print_gpu_report(const nlohmann::json& r) {
  auto num = [](const nlohmann::json& v) { return v.is_number() ? v.get<double>() : NAN; };
  std::printf("\n%zu queries (mean %.1f tokens) on %s, threshold %g, batch %d, %s\n",
              r["queries"].get<size_t>(), num(r["mean_tokens"]),
              r["device"].get<std::string>().c_str(), num(r["threshold"]), r["batch"].get<int>(),
              r["rule"].get<std::string>().c_str());
  const auto& cos = r["fidelity"]["cosine_on_hits"];
  std::printf(
      "hit rate %.1f%% (%zu hits; %zu queries had a stored input of their length); exact-input "
      "cache hit rate %.1f%%; cosine on hits mean %s, min %s\n",
      100 * num(r["hit_rate"]), r["hits"].get<size_t>(), r["same_length_candidates"].get<size_t>(),
      100 * num(r["exact_result_cache_hit_rate"]),
      fmt(num(cos.value("mean", nlohmann::json())), "%.5f").c_str(),
      fmt(num(cos.value("min", nlohmann::json())), "%.5f").c_str());
  std::printf("\n%-36s %10s %10s %12s %12s %9s\n", "path (lookup + loading timed)", "total s",
              "queries/s", "ms/query", "batch p95 ms", "vs exact");
  for (const char* path :
       {"exact", "attncache_cold_maps", "exact_result_cache", "exact_result_cache_then_attncache",
        "exact_second_pass", "attncache_resident_maps"}) {
    const auto& t = r["timing"][path];
    // The resident pass compares with the exact path's second pass, which it alternated with.
    const bool second = std::string(path) == "attncache_resident_maps";
    const double exact = num(r["timing"][second ? "exact_second_pass" : "exact"]["seconds"]);
    std::printf("%-36s %10.3f %10.1f %12.3f %12.2f %8.3fx\n", path, num(t["seconds"]),
                num(t["queries_per_second"]), num(t["mean_ms_per_query"]),
                num(t["batch_latency_ms_p95"]), exact / num(t["seconds"]));
  }
  std::printf(
      "AttnCache's time, ms per query: lookups on the CPU (a batch over %d threads) / "
      "map cache / GPU forward\n",
      omp_get_max_threads());
  for (const char* pass : {"cold_maps", "resident_maps"}) {
    const auto& p = r["timing"][std::string("attncache_") + pass + "_phases"];
    std::printf("  %-14s %.4f / %.4f / %.4f\n", pass, num(p["lookup_ms_per_query"]),
                num(p["map_cache_ms_per_query"]), num(p["forward_ms_per_query"]));
  }
  const auto& c = r["map_cache"]["after_first_pass"];
  std::printf("device map cache (%.0f MiB): %zu entries loaded, %zu reused, %zu evicted\n",
              num(r["map_cache"]["budget_bytes"]) / (1 << 20), c["misses"].get<size_t>(),
              c["hits"].get<size_t>(), c["evictions"].get<size_t>());
  std::printf("  entries came from: %s\n", c["host_source"].get<std::string>().c_str());
  const auto& h = r["per_hit"];
  if (h.is_object() && h.contains("end_to_end_speedup")) {
    std::printf("per hit (forced reuse of %zu same-length candidates, maps resident): %.3fx\n",
                h["queries"].get<size_t>(), num(h["end_to_end_speedup"]));
  } else if (h.is_object()) {
    std::printf("per hit: not measured (%s)\n", h["error"].get<std::string>().c_str());
  }
}

void run_eval(const EvalCliOptions& o) {
  if (!(o.threshold >= 0.0 && o.threshold <= 1.0)) {
    core::throw_bad_input("--threshold ", o.threshold, " is out of range: it must lie in [0, 1]");
  }
  std::unique_ptr<PrefillModel> model = load_model(o.model, o.threads);
  memo::MapDatabase db = memo::MapDatabase::open(o.db, model->fingerprint(), !o.skip_crc_check);
  if (o.search_breadth > 0) db.index().set_search_breadth(o.search_breadth);
  const std::vector<std::string> lines = core::read_lines(o.queries);
  const int max_tokens = db.max_tokens() > 0 ? db.max_tokens() : model->max_tokens();
  const int longest = db.max_stored_tokens();
  std::vector<std::vector<int32_t>> queries;
  for (size_t i = 0; i < lines.size(); ++i) {
    if (lines[i].find_first_not_of(" \t\r") == std::string::npos) continue;
    Encoding enc;
    try {
      enc = model->tokenize(lines[i], max_tokens);
    } catch (const core::Error& e) {
      core::throw_bad_input(o.queries, ": line ", i + 1, ": ", e.what());
    }
    if (static_cast<int>(enc.ids.size()) > longest && !o.allow_longer) {
      core::throw_bad_input(o.queries, ": line ", i + 1, " has ", enc.ids.size(),
                            " tokens but the longest stored input has ", longest,
                            ", so it can never hit; rebuild the database with longer inputs or "
                            "pass --allow-longer to evaluate it as a miss");
    }
    queries.push_back(std::move(enc.ids));
  }
  if (queries.empty()) core::throw_bad_input(o.queries, ": no non-empty query lines");
  memo::EvalOptions options;
  options.threshold = o.threshold;
  options.batch = o.batch;
  options.policy.layers = memo::ReusePolicy::parse_mask(o.layers, db.layers(), "--layers");
  options.policy.heads = memo::ReusePolicy::parse_mask(o.heads, db.heads(), "--heads");
  options.verification = {!o.paper_mode, o.max_tv};
  options.progress = true;
  nlohmann::json report;
  Device run_on = parse_device(o.device);
  if (!o.paper_mode) {
    run_on = device_for_cpu_only_work(run_on, memo::kLayer0CheckOnCpu, memo::kLayer0CheckRemedy);
  }
  // The GPU model is loaded only where it would run; auto falls back to the CPU with a note.
  DeviceEmbedder gpu(*model, run_on);
  const bool on_gpu = gpu.on_gpu();
  if (on_gpu) {
    memo::GpuEvalOptions gpu_options;
    gpu_options.threshold = options.threshold;
    gpu_options.batch = options.batch;
    gpu_options.policy = options.policy;
    gpu_options.cache_bytes = o.gpu_cache_mib << 20;
    gpu_options.p4_maps = o.gpu_maps == "p4";
    gpu_options.pin_host_maps = o.pin_maps;
    gpu_options.progress = true;
    report = memo::evaluate_on_gpu(*model, gpu, db, queries, gpu_options);
  } else {
    report = memo::evaluate(*model, db, queries, options);
  }
  report["model"] = o.model;
  report["db"] = o.db;
  report["queries_file"] = o.queries;
  report["threads"] = omp_get_max_threads();
  if (on_gpu) {
    print_gpu_report(report);
  } else {
    print_report(report);
  }
  if (!o.json.empty()) {
    core::AtomicFileWriter out(o.json);
    out.write(report.dump(2) + "\n");
    out.commit();
  }
}

}  // namespace

void add_gpu_map_cache_options(CLI::App& cmd, bool& pin_maps, std::string& gpu_maps) {
  cmd.add_flag(
      "--pin-maps", pin_maps,
      "on the GPU: copy the map database into page-locked host memory first (as much host "
      "memory again), so the map cache's misses transfer at full PCIe speed with no staging "
      "copy");
  cmd.add_option("--gpu-maps", gpu_maps,
                 "on the GPU, how its map cache holds a decoder's maps: stored (as the database: "
                 "bf16 for fp16 or bf16, else P8 or FP8); p4 (4 bits a value and a scale per row, "
                 "a quarter of bf16's bytes; docs/gpu.md measures what it costs in accuracy)")
      ->capture_default_str()
      ->check(CLI::IsMember({"stored", "p4"}));
}

void add_build_command(CLI::App& app) {
  auto o = std::make_shared<BuildCliOptions>();
  CLI::App* cmd = app.add_subcommand(
      "build",
      "Build an attention-map database: run the model over a corpus (one text per line), store "
      "every layer's attention probabilities and the projector input per distinct input, train "
      "the feature projector on pairs, and index one projection per input with Faiss.");
  cmd->add_option("-m,--model", o->model, "model name or directory")->capture_default_str();
  cmd->add_option("--corpus", o->corpus, "text file, one input per line");
  cmd->add_option("--mmlu", o->mmlu,
                  "instead of --corpus, for a decoder: an MMLU folder (dev/, validation/, test/ "
                  "of <subject>_<split>.csv); its --mmlu-split questions as k-shot prompts");
  cmd->add_option("--mmlu-split", o->mmlu_split, "the split whose prompts are stored")
      ->capture_default_str();
  cmd->add_option("--shots", o->shots, "solved dev examples before each stored question")
      ->capture_default_str()
      ->check(CLI::Range(0, 5));
  cmd->add_option("--db", o->db,
                  "database directory (created; an existing database there is "
                  "replaced atomically)")
      ->required();
  cmd->add_option("--max-entries", o->max_entries, "store at most this many inputs (0: all)")
      ->capture_default_str();
  cmd->add_option("--max-length", o->max_length,
                  "truncate inputs to this many tokens (0: the model's max_seq_length)")
      ->capture_default_str()
      ->check(CLI::Range(0, 1 << 20));
  cmd->add_option("--map-dtype", o->map_dtype,
                  "stored map precision: F16, BF16, P8 (one byte per probability, "
                  "square-root companded: half of F16's bytes), FP8 (one byte, fp8 e4m3 of "
                  "256·p: what Hopper GPUs convert in one instruction; less accurate than P8 on "
                  "large probabilities) or, for decoders, P4 (4 bits a value relative to the "
                  "row's largest, each row decoded to sum to 1: about half of P8's bytes, and "
                  "less accurate; docs/gpu.md measures it)")
      ->capture_default_str()
      ->check(CLI::IsMember({"F16", "BF16", "P8", "FP8", "P4"}));
  cmd->add_option("--index", o->index,
                  "Faiss index: Flat (exact), IVF<lists>,Flat or HNSW<M> for large databases")
      ->capture_default_str();
  cmd->add_option(
         "--epochs", o->epochs,
         "projector training epochs (the paper: 3); more run when needed to reach 300 SGD steps")
      ->capture_default_str()
      ->check(CLI::Range(1, 1000));
  cmd->add_option("--seed", o->seed, "projector initialization and batch order")
      ->capture_default_str();
  cmd->add_option("--length-weight", o->length_weight,
                  "label weight α of |Δ token count| for pairs of different lengths")
      ->capture_default_str()
      ->check(CLI::Range(0.0, 10.0));
  cmd->add_option("-t,--threads", o->threads, "worker threads (0: all cores)")
      ->capture_default_str()
      ->check(CLI::Range(0, 1024));
  cmd->add_option("--device", o->device,
                  "where the model runs to record the maps: cpu; cuda (the GPU's bf16 "
                  "probabilities, within about 0.05 of the CPU engine's; exit 2 without a usable "
                  "GPU); auto (the GPU where one is usable, else the CPU). Training and indexing "
                  "run on the CPU")
      ->capture_default_str()
      ->check(CLI::IsMember({"cpu", "cuda", "auto"}));
  cmd->callback([o] { run_build(*o); });
}

void add_eval_command(CLI::App& app) {
  auto o = std::make_shared<EvalCliOptions>();
  CLI::App* cmd = app.add_subcommand(
      "eval",
      "Evaluate AttnCache on queries (one per line): hit rate, fidelity on hits (cosine, "
      "recall@10 against the database's inputs), and the exact path, an exact-input cache, "
      "AttnCache and both together timed side by side with lookup and map loading inside the "
      "timed region; per-hit attention and end-to-end ratios; a threshold sweep.");
  cmd->add_option("-m,--model", o->model, "model name or directory")->capture_default_str();
  cmd->add_option("--db", o->db, "database directory made by `attncache build`")->required();
  cmd->add_option("--queries", o->queries, "text file, one query per line")->required();
  cmd->add_option("--threshold", o->threshold,
                  "hit when 1 − (squared projector distance) ≥ threshold, in [0, 1]")
      ->capture_default_str();
  cmd->add_option("--json", o->json, "write the full report as JSON here");
  cmd->add_option("-b,--batch", o->batch, "queries per forward pass")
      ->capture_default_str()
      ->check(CLI::Range(1, 4096));
  cmd->add_option("--layers", o->layers, "layers that reuse maps on a hit: all or e.g. 0-3")
      ->capture_default_str();
  cmd->add_option("--heads", o->heads, "heads that reuse maps on a hit: all or e.g. 0-5")
      ->capture_default_str();
  cmd->add_option("--search-breadth", o->search_breadth,
                  "IVF nprobe or HNSW efSearch (0: a default from the index size)")
      ->capture_default_str();
  cmd->add_option("--max-tv", o->max_tv,
                  "accept a candidate when its measured layer-0 attention differs from the "
                  "stored one by at most this mean total variation distance")
      ->capture_default_str()
      ->check(CLI::Range(0.0, 1.0));
  cmd->add_flag("--paper", o->paper_mode,
                "the paper's rule alone: reuse every layer on a projector hit, no layer-0 check");
  cmd->add_flag("--skip-crc-check", o->skip_crc_check,
                "skip checking every stored record's CRC-32");
  cmd->add_flag("--allow-longer", o->allow_longer,
                "evaluate queries longer than every stored input (as misses)");
  cmd->add_option("-t,--threads", o->threads, "worker threads (0: all cores)")
      ->capture_default_str()
      ->check(CLI::Range(0, 1024));
  cmd->add_option("--device", o->device,
                  "cpu; cuda: the exact path and AttnCache on the GPU (lookups stay on the "
                  "CPU; hits' maps go through a device map cache; needs --paper; exit 2 "
                  "without a usable GPU); auto: the GPU with --paper where one is usable, else "
                  "the CPU")
      ->capture_default_str()
      ->check(CLI::IsMember({"cpu", "cuda", "auto"}));
  cmd->add_option("--gpu-cache-mib", o->gpu_cache_mib,
                  "on the GPU: its memory for stored maps (least recently used out)")
      ->capture_default_str()
      ->check(CLI::Range(1, 1 << 24));
  add_gpu_map_cache_options(*cmd, o->pin_maps, o->gpu_maps);
  cmd->callback([o] { run_eval(*o); });
}

}  // namespace attncache::cli
