#include "attncache/cli/serve_command.h"

#include <omp.h>
#include <signal.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <csignal>
#include <cstdio>
#include <filesystem>
#include <memory>
#include <thread>

#include "attncache/device_embedder.h"
#include "attncache/prefill_model.h"
#include "attncache/serve/api_keys.h"
#include "attncache/serve/http_server.h"
#include "attncache/serve/tenant_namespaces.h"
#include "core/error.h"
#include "core/stopwatch.h"

namespace attncache::cli {
namespace {

struct ServeCliOptions {
  std::string model;
  std::string served_name;
  std::string db;
  bool share_db = false;
  std::string api_key_file;
  std::string device = "cpu";
  int max_wait_ms = 5;
  std::string batch_wait = "arrivals";
  int threads = 0;
  bool no_truncate = false;
  bool paper_mode = false;
  serve::ServerOptions server;
};

// "all-MiniLM-L6-v2", "models/all-MiniLM-L6-v2/" and "x/SmolLM2.gguf" name themselves by their
// last path component, without ".gguf".
std::string default_model_name(const std::string& model) {
  std::filesystem::path p(model);
  if (!p.has_filename()) p = p.parent_path();
  std::string name = p.filename().string();
  if (p.extension() == ".gguf") name = p.stem().string();
  return name;
}

// Runs the GPU model once on a batch of 1 and on a batch of as many sequences as a batch takes,
// at 8, 16, 32, … tokens up to `max_tokens`: the kernels (loaded lazily) and GEMM plans of those
// sizes are ready before the first request, which otherwise paid 15–80 ms for them
// (bench/serve_probe.py on the H100). Each shape runs once, so none takes a CUDA graph's slot.
void warm_up_gpu(DeviceEmbedder& gpu, bool causal, const std::vector<int32_t>& words,
                 int max_tokens, const serve::ServerOptions& options) {
  core::Stopwatch watch;
  std::vector<int> lengths;
  for (int n = 8; n < max_tokens; n *= 2) lengths.push_back(n);
  lengths.push_back(max_tokens);
  int shapes = 0;
  for (const int n : lengths) {
    std::vector<int32_t> ids(n);
    for (int i = 0; i < n; ++i) ids[i] = words[i % words.size()];
    const size_t most =
        std::min(options.batcher.max_batch, std::max<size_t>(1, options.max_batch_tokens / n));
    for (const size_t count : most > 1 ? std::vector<size_t>{1, most} : std::vector<size_t>{1}) {
      const std::vector<std::vector<int32_t>> batch(count, ids);
      if (causal) {
        gpu.token_log_probs(batch);
      } else {
        gpu.embed(batch);
      }
      ++shapes;
    }
  }
  std::fprintf(stderr, "attncache serve: GPU warmed up on %d batch shapes in %.1f s\n", shapes,
               watch.seconds());
}

// SIGINT, SIGTERM and SIGHUP go through a pipe to one thread: the handler only writes the
// signal's number (async-signal-safe), whichever thread the kernel interrupts.
int signal_pipe[2] = {-1, -1};

void forward_signal(int sig) {
  const char byte = static_cast<char>(sig);
  [[maybe_unused]] ssize_t n = ::write(signal_pipe[1], &byte, 1);
}

void catch_signals() {
  if (::pipe(signal_pipe) != 0) core::throw_internal("cannot create a pipe for signals");
  struct sigaction action {};
  action.sa_handler = forward_signal;
  sigemptyset(&action.sa_mask);
  for (int sig : {SIGINT, SIGTERM, SIGHUP}) sigaction(sig, &action, nullptr);
}

void run_serve(ServeCliOptions o) {
  std::unique_ptr<serve::ApiKeys> keys;
  if (!o.api_key_file.empty()) {
    keys = std::make_unique<serve::ApiKeys>(serve::ApiKeys::load(o.api_key_file));
  }
  if (o.share_db && o.db.empty()) core::throw_bad_input("--share-db needs --db");
  Device device = parse_device(o.device);
  if (o.threads > 0) omp_set_num_threads(o.threads);
  std::unique_ptr<PrefillModel> model = load_prefill_model(o.model);
  // One device for everything served: what cannot run on the GPU keeps the whole server on the
  // CPU (cuda refuses, auto says why).
  std::string cpu_only;
  if (device != Device::kCpu && !o.db.empty()) {
    cpu_only =
        "AttnCache (--db) is served on the CPU only: on the GPU it loses to the exact path "
        "(docs/gpu.md)";
  }
  if (!cpu_only.empty()) {
    if (device == Device::kCuda) core::throw_bad_input("--device cuda: ", cpu_only);
    std::fprintf(stderr, "note: running on the CPU: %s\n", cpu_only.c_str());
    device = Device::kCpu;
  }
  std::unique_ptr<DeviceEmbedder> gpu;
  if (device != Device::kCpu) {
    gpu = std::make_unique<DeviceEmbedder>(*model, device);
    if (!gpu->on_gpu()) gpu.reset();  // auto without a usable GPU (it said why)
  }
  serve::TenantNamespaces namespaces(o.db, o.share_db,
                                     keys ? keys->tenants() : std::vector<std::string>{},
                                     o.db.empty() ? nlohmann::json() : model->fingerprint());
  o.server.model_name = o.served_name.empty() ? default_model_name(o.model) : o.served_name;
  o.server.truncate = !o.no_truncate;
  o.server.batcher.max_wait = std::chrono::milliseconds(o.max_wait_ms);
  o.server.batcher.wait =
      o.batch_wait == "always" ? serve::BatchWait::kAlways : serve::BatchWait::kForArrivals;
  o.server.reuse.verification = {!o.paper_mode, o.server.reuse.verification.max_tv};
  if (o.server.max_inputs > o.server.batcher.max_queue) {
    core::throw_bad_input("--max-inputs ", o.server.max_inputs, " exceeds --max-queue ",
                          o.server.batcher.max_queue);
  }
  const size_t key_count = keys ? keys->size() : 0;
  serve::Server server(*model, o.server, std::move(keys), namespaces, gpu.get());
  const int port = server.bind();
  const std::vector<int32_t> words = model->tokenize("warm up", 8).ids;
  model->embed({words});  // page in weights, size buffers
  if (gpu) {
    // The longest inputs the server takes (decoders: up to 2,048 tokens of their context here).
    const int longest =
        o.server.max_tokens > 0 ? o.server.max_tokens : std::min(model->max_tokens(), 2048);
    warm_up_gpu(*gpu, model->causal(), words, longest, o.server);
  }

  const std::string where =
      gpu ? gpu->where() : std::to_string(omp_get_max_threads()) + " CPU threads";
  std::fprintf(stderr, "attncache serve: %s (%s, %s) listening on http://%s:%d\n",
               o.server.model_name.c_str(),
               model->causal() ? "decoder: /v1/completions scoring" : "encoder: /v1/embeddings",
               where.c_str(), o.server.host.c_str(), port);
  for (const auto& ns : namespaces.all()) {
    std::fprintf(stderr, "  map namespace %s: %zu entries from %s\n", ns->name.c_str(),
                 ns->db->size(), ns->dir.c_str());
  }
  if (key_count > 0) std::fprintf(stderr, "  %zu API keys\n", key_count);
  std::fflush(stderr);

  catch_signals();
  std::thread waiter([&] {
    for (;;) {
      char sig = 0;
      const ssize_t n = ::read(signal_pipe[0], &sig, 1);
      if (n < 0 && errno == EINTR) continue;
      if (n == 1 && sig == SIGHUP) {
        for (const std::string& line : server.reload()) {
          std::fprintf(stderr, "attncache serve: reload: %s\n", line.c_str());
        }
        continue;
      }
      if (n == 1 && sig != 0) {
        std::signal(SIGINT, SIG_DFL);  // a second signal ends the process at once
        std::signal(SIGTERM, SIG_DFL);
        std::fprintf(stderr, "attncache serve: shutting down, finishing requests in flight\n");
        server.stop();
      }
      return;  // a signal to stop, or serve() returned (a 0 byte)
    }
  });
  server.serve();
  forward_signal(0);
  waiter.join();
  std::fprintf(stderr, "attncache serve: stopped\n");
}

}  // namespace

void add_serve_command(CLI::App& app) {
  auto o = std::make_shared<ServeCliOptions>();
  CLI::App* cmd = app.add_subcommand(
      "serve",
      "Serve a model over HTTP with OpenAI's API: POST /v1/embeddings (encoders), POST\n"
      "/v1/completions with echo and max_tokens 0 for prompt log-probabilities (decoders),\n"
      "GET /v1/models, GET /health, GET /metrics (Prometheus). Requests are batched dynamically;\n"
      "with --db, embeddings reuse stored attention maps (AttnCache). SIGINT/SIGTERM finish the\n"
      "requests in flight and exit; SIGHUP reopens the map databases (after attncache build).");
  cmd->add_option("-m,--model", o->model,
                  "model: a name under models/, a model directory or a .gguf file")
      ->required();
  cmd->add_option("--served-model-name", o->served_name,
                  "the name requests give in \"model\" (default: the model's directory or file "
                  "name)");
  cmd->add_option("--db", o->db,
                  "attention-map database (attncache build); with --api-key-file, a directory of "
                  "per-tenant databases DIR/<tenant>/ (tenants without one run exactly)");
  cmd->add_flag("--share-db", o->share_db,
                "with API keys: every tenant uses the one database in --db");
  cmd->add_option("--device", o->device,
                  "where embeddings and scoring run: cpu, cuda (a GPU, or exit 2), auto (a GPU "
                  "when usable, else the CPU); a GPU that fails mid-run hands the rest to the "
                  "CPU. Without --db only: AttnCache is served on the CPU")
      ->capture_default_str();
  cmd->add_option("--host", o->server.host, "address to listen on")->capture_default_str();
  cmd->add_option("--port", o->server.port, "port (0: any free port)")
      ->capture_default_str()
      ->check(CLI::Range(0, 65535));
  cmd->add_option("--api-key-file", o->api_key_file,
                  "require 'Authorization: Bearer <key>'; one '<key> [tenant]' per line");
  cmd->add_option("--max-batch", o->server.batcher.max_batch, "inputs per forward batch")
      ->capture_default_str()
      ->check(CLI::Range(1, 4096));
  cmd->add_option("--max-batch-tokens", o->server.max_batch_tokens,
                  "tokens per forward batch (an input longer than this runs alone): bounds the "
                  "GPU's activation memory")
      ->capture_default_str()
      ->check(CLI::Range(1, 1 << 24));
  cmd->add_option("--max-wait-ms", o->max_wait_ms,
                  "how long the oldest queued request may wait for its batch to fill")
      ->capture_default_str()
      ->check(CLI::Range(0, 10000));
  cmd->add_option("--batch-wait", o->batch_wait,
                  "which batches that are not full wait for more requests: 'arrivals' (only "
                  "while a request is being received; a lone request runs at once) or 'always' "
                  "(a fixed --max-wait-ms window)")
      ->capture_default_str()
      ->check(CLI::IsMember({"arrivals", "always"}));
  cmd->add_option("--max-queue", o->server.batcher.max_queue,
                  "inputs waiting for the model; beyond it requests get 503")
      ->capture_default_str()
      ->check(CLI::Range(1, 1 << 24));
  cmd->add_option("--max-inputs", o->server.max_inputs, "inputs per request; beyond it 413")
      ->capture_default_str()
      ->check(CLI::Range(1, 1 << 20));
  cmd->add_option("--max-body-bytes", o->server.max_body_bytes, "request body size; beyond it 413")
      ->capture_default_str()
      ->check(CLI::Range(64, 1 << 30));
  cmd->add_option("--max-inflight-per-key", o->server.max_inflight_per_tenant,
                  "requests in flight per tenant (API key's tenant); beyond it 429 (0: no limit)")
      ->capture_default_str()
      ->check(CLI::Range(0, 1 << 20));
  cmd->add_option("--http-threads", o->server.http_threads, "connections served at once")
      ->capture_default_str()
      ->check(CLI::Range(1, 4096));
  cmd->add_option("--read-timeout", o->server.read_timeout_s,
                  "seconds to receive a request's headers and body (then 408 or close)")
      ->capture_default_str()
      ->check(CLI::Range(1, 3600));
  cmd->add_option("--idle-timeout", o->server.idle_timeout_s,
                  "seconds an idle keep-alive connection stays open (bounds shutdown time)")
      ->capture_default_str()
      ->check(CLI::Range(1, 3600));
  cmd->add_option("--max-length", o->server.max_tokens,
                  "embeddings: truncate inputs to this many tokens; completions: reject longer "
                  "prompts (0: the model's default)")
      ->capture_default_str()
      ->check(CLI::Range(0, 1 << 20));
  cmd->add_flag("--no-truncate", o->no_truncate,
                "embeddings: answer 400 for inputs longer than --max-length instead of "
                "truncating");
  cmd->add_option("--threshold", o->server.reuse.threshold,
                  "AttnCache hit when 1 − (squared projector distance) ≥ threshold")
      ->capture_default_str()
      ->check(CLI::Range(0.0, 1.0));
  cmd->add_option("--max-tv", o->server.reuse.verification.max_tv,
                  "AttnCache: accept a candidate whose layer-0 maps differ by at most this mean "
                  "total variation distance")
      ->capture_default_str()
      ->check(CLI::Range(0.0, 1.0));
  cmd->add_flag("--paper", o->paper_mode, "AttnCache: the paper's rule alone, no layer-0 check");
  cmd->add_option("-t,--threads", o->threads, "model threads (0: all cores)")
      ->capture_default_str()
      ->check(CLI::Range(0, 1024));
  cmd->callback([o] { run_serve(*o); });
}

}  // namespace attncache::cli
