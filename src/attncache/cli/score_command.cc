#include "attncache/cli/score_command.h"

#include <omp.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <functional>
#include <map>
#include <memory>
#include <sstream>

#include "attncache/cli/memo_command.h"
#include "attncache/decoder.h"
#include "attncache/device_embedder.h"
#include "attncache/memo/gpu_evaluation.h"
#include "attncache/memo/map_database.h"
#include "attncache/tasks/mc_scoring.h"
#include "core/atomic_file.h"
#include "core/error.h"
#include "core/text_lines.h"

namespace attncache::cli {
namespace {

struct MmluOptions {
  std::string model = "SmolLM2-135M-Instruct";
  std::string data = "data/mmlu";
  std::string split = "test";
  std::string subjects = "all";
  std::string paths = "exact,prefix_kv";
  std::string db;
  std::string device = "cpu";
  std::string gpu_maps = "stored";
  bool pin_maps = false;
  std::string json;
  int shots = 5;
  int limit = 0;
  int batch = 8;
  int threads = 0;
  double threshold = 0.995;
  bool paper_mode = false;
  float max_tv = 0.02f;
};

std::unique_ptr<Decoder> load_decoder(const std::string& model, int threads) {
  if (threads > 0) omp_set_num_threads(threads);
  return Decoder::load(model);
}

void write_json(const std::string& path, const nlohmann::json& j) {
  if (path.empty()) return;
  core::AtomicFileWriter out(path);
  out.write(j.dump(2) + "\n");
  out.commit();
}

std::vector<std::string> split_list(const std::string& s) {
  std::vector<std::string> out;
  std::stringstream in(s);
  std::string part;
  while (std::getline(in, part, ',')) {
    if (!part.empty()) out.push_back(part);
  }
  return out;
}

std::vector<tasks::McQuestion> select_questions(const MmluOptions& o) {
  std::vector<tasks::McQuestion> all = tasks::read_mmlu_split(o.data, o.split);
  std::map<std::string, int> wanted;
  if (o.subjects != "all") {
    for (const std::string& s : split_list(o.subjects)) wanted[s] = 0;
  }
  std::vector<tasks::McQuestion> out;
  std::map<std::string, int> taken;
  for (tasks::McQuestion& q : all) {
    if (!wanted.empty()) {
      auto it = wanted.find(q.subject);
      if (it == wanted.end()) continue;
      ++it->second;
    }
    if (o.limit > 0 && taken[q.subject] >= o.limit) continue;
    ++taken[q.subject];
    out.push_back(std::move(q));
  }
  for (const auto& [subject, count] : wanted) {
    if (count == 0) {
      core::throw_bad_input("--subjects: no questions of '", subject, "' in ", o.data, "/",
                            o.split);
    }
  }
  return out;
}

void run_mmlu(const MmluOptions& o) {
  std::vector<tasks::McPath> paths;
  for (const std::string& p : split_list(o.paths)) {
    if (p == "exact") {
      paths.push_back(tasks::McPath::kExact);
    } else if (p == "prefix_kv") {
      paths.push_back(tasks::McPath::kPrefixKv);
    } else if (p == "attncache") {
      paths.push_back(tasks::McPath::kAttnCache);
    } else {
      core::throw_bad_input("--paths: unknown path '", p, "' (exact, prefix_kv, attncache)");
    }
  }
  if (!o.db.empty() &&
      std::find(paths.begin(), paths.end(), tasks::McPath::kAttnCache) == paths.end()) {
    paths.push_back(tasks::McPath::kAttnCache);
  }
  const bool attncache =
      std::find(paths.begin(), paths.end(), tasks::McPath::kAttnCache) != paths.end();
  if (attncache && o.db.empty()) core::throw_bad_input("the attncache path needs --db");
  // Paths that run on the CPU only keep every path there, so that the times compare: refused
  // with --device cuda, taken as the choice with --device auto.
  const bool prefix_kv =
      std::find(paths.begin(), paths.end(), tasks::McPath::kPrefixKv) != paths.end();
  Device run_on = parse_device(o.device);
  if (prefix_kv) {
    run_on = device_for_cpu_only_work(run_on,
                                      "prefix_kv runs on the CPU only, and its times would not "
                                      "compare with the GPU's",
                                      "--paths exact or exact,attncache leave it out");
  } else if (attncache && !o.paper_mode) {
    run_on = device_for_cpu_only_work(run_on, memo::kLayer0CheckOnCpu, memo::kLayer0CheckRemedy);
  }
  // Exact runs first: the others are compared with it.
  if (std::find(paths.begin(), paths.end(), tasks::McPath::kExact) == paths.end()) {
    paths.insert(paths.begin(), tasks::McPath::kExact);
  }
  std::stable_partition(paths.begin(), paths.end(),
                        [](tasks::McPath p) { return p == tasks::McPath::kExact; });

  const std::vector<tasks::McQuestion> questions = select_questions(o);
  if (questions.empty()) core::throw_bad_input(o.data, "/", o.split, ": no questions");
  const std::vector<tasks::McQuestion> dev = tasks::read_mmlu_split(o.data, "dev");
  std::unique_ptr<Decoder> decoder = load_decoder(o.model, o.threads);
  const tasks::McPrompts prompts =
      tasks::build_mc_prompts(*decoder, questions, dev, o.shots, decoder->context_limit());

  tasks::McOptions options;
  options.shots = o.shots;
  options.batch = o.batch;
  options.progress = true;
  DeviceEmbedder device(*decoder, run_on);
  const bool on_gpu = device.where() != "cpu";
  std::unique_ptr<memo::MapDatabase> db;
  std::unique_ptr<memo::AttnCache> cache;
  bool attncache_left_gpu = false;
  std::function<nlohmann::json()> map_cache_report;  // AttnCache on the GPU
  auto make_cpu_cache = [&] {
    cache = std::make_unique<memo::AttnCache>(*decoder, *db, o.threshold, memo::ReusePolicy{},
                                              memo::HitVerification{!o.paper_mode, o.max_tv});
  };
  if (attncache) {
    db = std::make_unique<memo::MapDatabase>(
        memo::MapDatabase::open(o.db, decoder->fingerprint(), true));
    if (on_gpu) {
      memo::GpuEvalOptions gpu_options;
      gpu_options.threshold = o.threshold;
      gpu_options.batch = o.batch;
      gpu_options.p4_maps = o.gpu_maps == "p4";
      gpu_options.pin_host_maps = o.pin_maps;
      options.attncache_embed = memo::with_cpu_fallback(
          memo::gpu_attncache(*decoder, device, *db, gpu_options, &map_cache_report),
          [&]() -> memo::GpuAttnCacheFn {
            make_cpu_cache();
            return [c = cache.get()](const std::vector<std::vector<int32_t>>& batch,
                                     std::vector<memo::Lookup>* found) {
              return c->embed(batch, found);
            };
          },
          &attncache_left_gpu);
    } else {
      make_cpu_cache();
    }
  }
  if (on_gpu) {
    std::fprintf(stderr, "exact%s path on %s\n", attncache ? " and attncache" : "",
                 device.where().c_str());
    options.exact_embed = [&device](const std::vector<std::vector<int32_t>>& batch) {
      return device.embed(batch);
    };
    device.embed({prompts.ids[0]});  // warm up: GEMM plans, buffers
  }
  decoder->embed({prompts.ids[0]});  // warm up: page in weights, size buffers

  const std::vector<tasks::McRun> runs =
      tasks::score_mc(*decoder, prompts, paths, options, cache.get());
  nlohmann::json report = {{"model", o.model},
                           {"data", o.data},
                           {"split", o.split},
                           {"shots", o.shots},
                           {"questions", questions.size()},
                           {"batch", o.batch},
                           {"threads", omp_get_max_threads()},
                           {"exact_device", device.where()},
                           {"attncache_device", !attncache           ? ""
                                                : attncache_left_gpu ? "cpu"
                                                                     : device.where()},
                           {"paths", nlohmann::json::array()}};
  for (const tasks::McRun& run : runs) {
    report["paths"].push_back(tasks::summarize(run, &runs.front(), questions));
  }
  if (db) {
    report["db"] = {{"dir", o.db},
                    {"entries", db->size()},
                    {"bytes_on_disk", db->bytes_on_disk()},
                    {"threshold", o.threshold},
                    {"verification", !o.paper_mode}};
  }
  if (map_cache_report && !attncache_left_gpu) {
    report["attncache_map_cache"] = map_cache_report();
  }
  // Per-subject accuracy of the exact path, and every answer of every path.
  std::map<std::string, std::pair<int, int>> by_subject;
  nlohmann::json answers = nlohmann::json::array();
  for (size_t i = 0; i < questions.size(); ++i) {
    auto& [right, total] = by_subject[questions[i].subject];
    total += questions[i].answer >= 0;
    right += questions[i].answer >= 0 && runs[0].answers[i].predicted == questions[i].answer;
    nlohmann::json a = {
        {"subject", questions[i].subject},
        {"tokens", runs[0].answers[i].tokens},
        {"answer", questions[i].answer >= 0 ? std::string(1, char('A' + questions[i].answer))
                                            : std::string()}};
    for (const tasks::McRun& r : runs) {
      a[tasks::mc_path_name(r.path)] = {
          {"predicted", std::string(1, char('A' + r.answers[i].predicted))},
          {"log_probs", r.answers[i].log_probs}};
      if (r.path == tasks::McPath::kAttnCache) a["attncache"]["hit"] = r.answers[i].hit;
    }
    answers.push_back(std::move(a));
  }
  nlohmann::json subjects = nlohmann::json::object();
  for (const auto& [s, rt] : by_subject) {
    subjects[s] = {{"questions", rt.second},
                   {"accuracy", rt.second > 0 ? double(rt.first) / rt.second : NAN}};
  }
  report["exact_accuracy_by_subject"] = subjects;

  std::printf("%s, MMLU %s, %zu questions, %d-shot, batch %d, %d threads\n\n", o.model.c_str(),
              o.split.c_str(), questions.size(), o.shots, o.batch, omp_get_max_threads());
  std::printf("%-11s %9s %10s %12s %10s %10s %9s\n", "path", "accuracy", "agreement", "ms/question",
              "speedup", "computed", "hit rate");
  for (const auto& p : report["paths"]) {
    auto get = [&](const char* k) { return p.contains(k) ? p[k].get<double>() : NAN; };
    std::printf("%-11s %8.1f%% %9.1f%% %12.1f %9.2fx %9.0f%% %8s\n",
                p["path"].get<std::string>().c_str(), 100 * get("accuracy"),
                100 * get("agreement_with_exact"), get("ms_per_question"), get("speedup_vs_exact"),
                100 * get("computed_tokens") / get("prompt_tokens"),
                p.contains("hit_rate")
                    ? (std::to_string(int(std::lround(100 * get("hit_rate")))) + "%").c_str()
                    : "-");
  }
  std::printf(
      "\n(computed: prompt tokens run through the model; the rest come from the cached "
      "header)\n");
  report["answers"] = std::move(answers);
  write_json(o.json, report);
}

struct TextOptions {
  std::string model = "SmolLM2-135M-Instruct";
  std::string input = "-";
  std::string json;
  std::string device = "cpu";
  int max_length = 0;
  int batch_tokens = 8192;
  int threads = 0;
};

void run_text(const TextOptions& o) {
  const std::vector<std::string> lines = core::read_lines(o.input);
  std::unique_ptr<Decoder> decoder = load_decoder(o.model, o.threads);
  const int limit = o.max_length > 0 ? o.max_length : decoder->max_tokens();
  if (limit > decoder->context_limit()) {
    core::throw_bad_input("--max-length ", limit, " exceeds the model's context of ",
                          decoder->context_limit(), " tokens");
  }
  // Every line is checked before any is scored: bad input stops the run before it prints.
  std::vector<std::vector<int32_t>> ids(lines.size());
  for (size_t i = 0; i < lines.size(); ++i) {
    try {
      ids[i] = decoder->tokenize(lines[i], 0).ids;
    } catch (const core::Error& err) {
      core::throw_bad_input(o.input, ": line ", i + 1, ": ", err.what());
    }
    if (static_cast<int>(ids[i].size()) > limit) {
      core::throw_bad_input(o.input, ": line ", i + 1, " has ", ids[i].size(),
                            " tokens; the limit is ", limit, " (--max-length)");
    }
  }
  DeviceEmbedder device(*decoder, parse_device(o.device));
  nlohmann::json rows = nlohmann::json::array();
  double total_lp = 0;
  size_t total_tokens = 0;
  const auto t0 = std::chrono::steady_clock::now();
  std::printf("%6s %8s %14s %10s\n", "line", "tokens", "log-likelihood", "perplexity");
  // Lines of two or more tokens in batches of at most --batch-tokens tokens (a longer line alone),
  // one forward pass each, printed in order.
  for (size_t begin = 0; begin < lines.size();) {
    std::vector<size_t> members;
    std::vector<std::vector<int32_t>> batch;
    size_t tokens = 0, end = begin;
    for (; end < lines.size(); ++end) {
      if (ids[end].size() < 2) continue;
      if (!batch.empty() && tokens + ids[end].size() > static_cast<size_t>(o.batch_tokens)) break;
      tokens += ids[end].size();
      members.push_back(end);
      batch.push_back(ids[end]);
    }
    const std::vector<std::vector<double>> lps =
        batch.empty() ? std::vector<std::vector<double>>{} : device.token_log_probs(batch);
    for (size_t i = begin, k = 0; i < end; ++i) {
      if (k == members.size() || members[k] != i) {
        rows.push_back({{"line", i + 1}, {"tokens", ids[i].size()}, {"scored_tokens", 0}});
        continue;
      }
      const std::vector<double>& lp = lps[k++];
      double sum = 0;
      for (double v : lp) sum += v;
      total_lp += sum;
      total_tokens += lp.size();
      const double ppl = std::exp(-sum / lp.size());
      std::printf("%6zu %8zu %14.3f %10.2f\n", i + 1, ids[i].size(), sum, ppl);
      rows.push_back({{"line", i + 1},
                      {"tokens", ids[i].size()},
                      {"scored_tokens", lp.size()},
                      {"log_likelihood", sum},
                      {"perplexity", ppl},
                      {"token_log_probs", lp}});
    }
    begin = end;
  }
  const double seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  const double ppl = total_tokens > 0 ? std::exp(-total_lp / total_tokens) : NAN;
  std::printf(
      "\n%zu lines, %zu scored tokens (each token given the ones before it on its line), "
      "perplexity %.3f\n",
      lines.size(), total_tokens, ppl);
  std::fprintf(stderr, "scored on %s in %.2f s\n", device.where().c_str(), seconds);
  write_json(o.json, {{"model", o.model},
                      {"input", o.input},
                      {"device", device.where()},
                      {"seconds", seconds},
                      {"scored_tokens", total_tokens},
                      {"log_likelihood", total_lp},
                      {"perplexity", ppl},
                      {"lines", rows}});
}

}  // namespace

void add_score_command(CLI::App& app) {
  CLI::App* score = app.add_subcommand(
      "score",
      "Prefill-only tasks with a decoder (a Llama-family model, GGUF or Hugging Face "
      "directory): `score mmlu` answers "
      "multiple-choice questions, `score text` computes log-likelihoods.");
  score->require_subcommand(1);

  auto o = std::make_shared<MmluOptions>();
  CLI::App* mmlu = score->add_subcommand(
      "mmlu",
      "Answer MMLU-format questions from the prompt the evaluation harnesses use (k solved dev\n"
      "examples, the question, options A-D, \"Answer:\"), picking the option letter with the\n"
      "highest log-probability. Paths, timed side by side on the same prompts: exact;\n"
      "prefix_kv (the k-shot header's keys and values computed once per subject and reused:\n"
      "lossless); attncache (with --db: reuse the attention maps of a similar stored prompt).\n"
      "Reports accuracy, agreement with the exact answers, time per question and hit rate.");
  mmlu->add_option("-m,--model", o->model,
                   "decoder: a name under models/, a .gguf file, a directory holding one, "
                   "or a Hugging Face directory")
      ->capture_default_str();
  mmlu->add_option(
          "--data", o->data,
          "MMLU folder (dev/, test/, … of <subject>_<split>.csv: question,A,B,C,D,answer); "
          "scripts/fetch-datasets.sh mmlu fetches it")
      ->capture_default_str();
  mmlu->add_option("--split", o->split, "split to answer (dev examples make the shots)")
      ->capture_default_str();
  mmlu->add_option("--subjects", o->subjects, "all, or a comma list of subjects")
      ->capture_default_str();
  mmlu->add_option("--limit", o->limit, "at most this many questions per subject (0: all)")
      ->capture_default_str()
      ->check(CLI::Range(0, 1 << 30));
  mmlu->add_option("--shots", o->shots, "solved examples before each question")
      ->capture_default_str()
      ->check(CLI::Range(0, 5));
  mmlu->add_option("--paths", o->paths, "comma list of exact, prefix_kv, attncache")
      ->capture_default_str();
  mmlu->add_option("--db", o->db,
                   "attention-map database of MMLU prompts (attncache build --mmlu …); adds "
                   "the attncache path");
  mmlu->add_option("--threshold", o->threshold,
                   "AttnCache hit when 1 − (squared projector distance) ≥ threshold")
      ->capture_default_str()
      ->check(CLI::Range(0.0, 1.0));
  mmlu->add_option("--max-tv", o->max_tv,
                   "AttnCache: accept a candidate whose measured layer-0 maps differ from the "
                   "stored ones by at most this mean total variation distance")
      ->capture_default_str()
      ->check(CLI::Range(0.0, 1.0));
  mmlu->add_flag("--paper", o->paper_mode, "AttnCache: the paper's rule alone, no layer-0 check");
  mmlu->add_option(
          "--device", o->device,
          "exact path on: cpu; cuda (exit 2 without a usable GPU); auto (the GPU when "
          "usable and the paths allow it, else the CPU). A GPU that fails mid-run hands the "
          "rest to the CPU. The GPU runs --paths exact or exact,attncache (AttnCache with "
          "--paper, maps in GPU memory); prefix_kv and AttnCache's layer-0 check run on the CPU")
      ->capture_default_str()
      ->check(CLI::IsMember({"cpu", "cuda", "auto"}));
  add_gpu_map_cache_options(*mmlu, o->pin_maps, o->gpu_maps);
  mmlu->add_option("-b,--batch", o->batch, "prompts per forward pass")
      ->capture_default_str()
      ->check(CLI::Range(1, 1024));
  mmlu->add_option("--json", o->json, "write the report (and every answer) as JSON here");
  mmlu->add_option("-t,--threads", o->threads, "worker threads (0: all cores)")
      ->capture_default_str()
      ->check(CLI::Range(0, 1024));
  mmlu->callback([o] { run_mmlu(*o); });

  auto t = std::make_shared<TextOptions>();
  CLI::App* text = score->add_subcommand(
      "text",
      "Log-likelihood of each line under the decoder: the sum over its tokens of log p(token |\n"
      "the tokens before it), and its perplexity; lines are batched, one prefill per batch.");
  text->add_option("-m,--model", t->model,
                   "decoder: a name under models/, a .gguf file or a Hugging Face directory")
      ->capture_default_str();
  text->add_option("-i,--input", t->input, "text file, one text per line; '-' reads stdin")
      ->capture_default_str();
  text->add_option("--max-length", t->max_length,
                   "reject lines longer than this many tokens (0: min(context, 2048))")
      ->capture_default_str()
      ->check(CLI::Range(0, 1 << 30));
  text->add_option("--json", t->json, "write per-line and per-token results as JSON here");
  text->add_option("--device", t->device,
                   "where the model runs: cpu; cuda (exit 2 without a usable GPU); auto (the GPU "
                   "when usable). A GPU that fails mid-run hands the rest to the CPU")
      ->capture_default_str()
      ->check(CLI::IsMember({"cpu", "cuda", "auto"}));
  text->add_option("--batch-tokens", t->batch_tokens,
                   "lines per forward pass: up to this many tokens (a longer line runs alone)")
      ->capture_default_str()
      ->check(CLI::Range(1, 1 << 20));
  text->add_option("-t,--threads", t->threads, "worker threads (0: all cores)")
      ->capture_default_str()
      ->check(CLI::Range(0, 1024));
  text->callback([t] { run_text(*t); });
}

}  // namespace attncache::cli
