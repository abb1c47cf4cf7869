// The HTTP server of `attncache serve` (cpp-httplib): routes, authentication, request limits,
// admission to the batcher, and graceful shutdown.
//
//   POST /v1/embeddings   OpenAI embeddings (encoder models)
//   POST /v1/completions  OpenAI legacy completions, scoring only (decoder models): echo with
//                         max_tokens 0 returns every prompt token's log-probability
//   GET  /v1/models       the one served model
//   GET  /health          200 {"status": "ok"}, 503 while shutting down
//   GET  /metrics         Prometheus text format
//
// Each connection is served by one of `http_threads` threads, which reads the body (at most
// max_body_bytes, else 413), checks the API key (401), parses and tokenizes (400, 404 for
// another model, 413 for too many inputs), then queues the request for the model thread and
// waits. Shedding: 429 when the caller's tenant already has max_inflight_per_tenant requests
// in flight, 503 when the batcher's queue is full. A body not received within read_timeout
// gets 408. Every error body is OpenAI's {"error": {...}}.
#pragma once

#include <atomic>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "attncache/prefill_model.h"
#include "attncache/serve/api_keys.h"
#include "attncache/serve/batcher.h"
#include "attncache/serve/metrics.h"
#include "attncache/serve/model_runner.h"
#include "attncache/serve/tenant_namespaces.h"

namespace httplib {
struct Request;
struct Response;
class ContentReader;
}  // namespace httplib

namespace attncache::serve {

struct ServerOptions {
  std::string host = "127.0.0.1";
  int port = 8080;         // 0: any free port (bind() says which)
  std::string model_name;  // what requests must name in "model"
  size_t max_body_bytes = 1 << 20;
  size_t max_inputs = 256;  // inputs (strings) per request
  int max_tokens = 0;       // embeddings: truncation length; 0: the model's default
  // Tokens per forward pass (a longer input runs alone); the default never splits --max-batch 32
  // inputs of an encoder's 512 tokens, so batches stay those of `attncache embed`.
  size_t max_batch_tokens = 16384;
  bool truncate = true;             // false: over-long inputs get 400 instead of truncation
  int max_inflight_per_tenant = 0;  // 0: no limit
  int http_threads = 128;           // connections served at once
  int read_timeout_s = 5;           // for a request's headers and body
  int idle_timeout_s = 5;           // keep-alive: how long an idle connection stays open
  BatcherOptions batcher;
  ReuseSettings reuse;
};

class Server {
 public:
  // `keys` null: no authentication (one anonymous tenant). `device` not null: exact embeddings
  // and scoring run there (DeviceEmbedder of `model`). `model`, `namespaces` and `device`
  // outlive the server.
  Server(PrefillModel& model, ServerOptions options, std::unique_ptr<ApiKeys> keys,
         TenantNamespaces& namespaces, DeviceEmbedder* device = nullptr);
  ~Server();

  // Binds host:port; returns the port. Throws core::Error (bad input) when it cannot.
  int bind();
  // Serves until stop(); then finishes every request in flight and returns.
  void serve();
  // Thread-safe; returns at once (serve() returns when the in-flight requests are done).
  void stop();
  // Reopens the map databases (TenantNamespaces::reload) and updates the metrics.
  std::vector<std::string> reload();
  const Metrics& metrics() const { return metrics_; }

 private:
  class Http;

  void add_routes();
  // Reads the body within the limit, checks the key; returns the tenant. Throws ApiError.
  std::string admit(const httplib::Request& req, httplib::Response& res,
                    const httplib::ContentReader& reader, std::string* body);
  // `arriving`: the request's Batcher::Arrival, which submitting its job ends.
  void embeddings(const std::string& body, const std::string& tenant, httplib::Response& res,
                  Batcher::Arrival& arriving);
  void completions(const std::string& body, const std::string& tenant, httplib::Response& res,
                   Batcher::Arrival& arriving);
  // Queues a job and waits for it. Throws ApiError (429, 503, 500).
  void run(const std::shared_ptr<Job>& job, Batcher::Arrival& arriving);
  void check_model(const std::string& name) const;
  void update_mapped_bytes();

  PrefillModel& model_;
  ServerOptions options_;
  std::unique_ptr<ApiKeys> keys_;
  TenantNamespaces& namespaces_;
  Metrics metrics_;
  ModelRunner runner_;
  Batcher batcher_;
  std::unique_ptr<Http> http_;
  std::atomic<bool> stopping_{false};
  std::atomic<int> inflight_{0};
  std::atomic<uint64_t> next_id_{0};
  std::mutex tenants_mu_;
  std::map<std::string, int> inflight_by_tenant_;
};

}  // namespace attncache::serve
