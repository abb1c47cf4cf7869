#include "attncache/serve/http_server.h"

#include <httplib.h>
#include <sys/socket.h>

#include <chrono>
#include <cstdio>
#include <ctime>
#include <nlohmann/json.hpp>

#include "attncache/decoder.h"
#include "attncache/serve/openai_api.h"
#include "core/error.h"

namespace attncache::serve {
namespace {

using Clock = std::chrono::steady_clock;

// cpp-httplib 0.11 listens with a backlog of 5: under a burst of new connections (64 clients
// connecting at once) the kernel would drop SYNs and clients would retry a second later.
constexpr int kListenBacklog = 1024;

void set_error(httplib::Response& res, const ApiError& e) {
  res.status = e.status;
  res.set_content(error_body(e), "application/json");
  if (e.status == 503 || e.status == 429) res.set_header("Retry-After", "1");
}

const char* status_type(int status) {
  switch (status) {
    case 401:
      return "authentication_error";
    case 429:
      return "rate_limit_error";
    default:
      return status >= 500 ? "server_error" : "invalid_request_error";
  }
}

}  // namespace

// cpp-httplib's server, with a larger listen backlog (its listening socket is protected).
class Server::Http : public httplib::Server {
 public:
  void raise_backlog() { ::listen(svr_sock_, kListenBacklog); }
};

Server::Server(PrefillModel& model, ServerOptions options, std::unique_ptr<ApiKeys> keys,
               TenantNamespaces& namespaces, DeviceEmbedder* device)
    : model_(model),
      options_(std::move(options)),
      keys_(std::move(keys)),
      namespaces_(namespaces),
      runner_(model, device, options_.reuse, options_.batcher.max_batch, options_.max_batch_tokens,
              metrics_),
      batcher_(
          options_.batcher, [this](const std::vector<Job*>& jobs) { runner_.run(jobs); },
          [this](size_t depth) { metrics_.set_queue_depth(depth); }),
      http_(std::make_unique<Http>()) {
  if (options_.max_tokens <= 0) options_.max_tokens = model_.max_tokens();
  if (options_.max_tokens > model_.context_limit()) {
    core::throw_bad_input("--max-length ", options_.max_tokens, " exceeds the model's ",
                          model_.context_limit(), " positions");
  }
  const int threads = options_.http_threads;
  http_->new_task_queue = [threads] { return new httplib::ThreadPool(threads); };
  http_->set_payload_max_length(options_.max_body_bytes);
  http_->set_read_timeout(options_.read_timeout_s, 0);
  http_->set_write_timeout(options_.read_timeout_s, 0);
  http_->set_keep_alive_timeout(options_.idle_timeout_s);
  http_->set_keep_alive_max_count(1000);
  http_->set_tcp_nodelay(true);
  add_routes();
  update_mapped_bytes();
}

Server::~Server() {
  stop();
  batcher_.stop();
}

int Server::bind() {
  int port = options_.port;
  if (port == 0) {
    port = http_->bind_to_any_port(options_.host);
    if (port < 0) port = 0;
  } else if (!http_->bind_to_port(options_.host, port)) {
    port = 0;
  }
  if (port == 0) {
    core::throw_bad_input("cannot listen on ", options_.host, ":", options_.port,
                          " (address in use, not local, or not permitted)");
  }
  http_->raise_backlog();
  return port;
}

void Server::serve() {
  http_->listen_after_bind();  // returns after stop(), once every connection thread is done
  batcher_.stop();
}

void Server::stop() {
  stopping_ = true;
  http_->stop();
}

std::vector<std::string> Server::reload() {
  std::vector<std::string> report = namespaces_.reload();
  update_mapped_bytes();
  return report;
}

void Server::update_mapped_bytes() {
  for (const auto& ns : namespaces_.all())
    metrics_.set_mapped_bytes(ns->name, ns->db->bytes_on_disk());
}

void Server::check_model(const std::string& name) const {
  if (name != options_.model_name) {
    throw ApiError(
        404, "invalid_request_error",
        "the model '" + name + "' does not exist; this server serves '" + options_.model_name + "'",
        "model", "model_not_found");
  }
}

std::string Server::admit(const httplib::Request& req, httplib::Response& res,
                          const httplib::ContentReader& reader, std::string* body) {
  // The body is read whole before any answer, so that the connection stays in step for the
  // next request on it. Bodies with a Content-Length beyond the limit are discarded unread by
  // cpp-httplib (status 413); chunked ones stop at the limit.
  bool too_big = false;
  const bool complete = reader([&](const char* data, size_t n) {
    if (body->size() + n > options_.max_body_bytes) {
      too_big = true;
      return false;
    }
    body->append(data, n);
    return true;
  });
  if (too_big || res.status == 413) {
    throw ApiError(413, "invalid_request_error",
                   "the request body exceeds " + std::to_string(options_.max_body_bytes) + " bytes",
                   "", "request_too_large");
  }
  if (!complete) {
    throw ApiError(
        408, "invalid_request_error",
        "the request body did not arrive within " + std::to_string(options_.read_timeout_s) + " s",
        "", "timeout");
  }
  if (keys_ == nullptr) return "";
  std::optional<std::string> tenant = keys_->tenant_of(req.get_header_value("Authorization"));
  if (!tenant) {
    throw ApiError(401, "authentication_error",
                   req.has_header("Authorization")
                       ? "invalid API key"
                       : "missing API key: send 'Authorization: Bearer <key>'",
                   "", "invalid_api_key");
  }
  return *tenant;
}

void Server::run(const std::shared_ptr<Job>& job, Batcher::Arrival& arriving) {
  // Per-tenant share of the server: 429 beyond it.
  struct TenantSlot {
    Server* server;
    std::string tenant;
    bool held = false;
    ~TenantSlot() {
      if (!held) return;
      std::lock_guard lock(server->tenants_mu_);
      --server->inflight_by_tenant_[tenant];
    }
  } slot{this, job->tenant};
  if (options_.max_inflight_per_tenant > 0) {
    std::lock_guard lock(tenants_mu_);
    int& n = inflight_by_tenant_[job->tenant];
    if (n >= options_.max_inflight_per_tenant) {
      metrics_.add_shed("tenant_limit");
      throw ApiError(429, "rate_limit_error",
                     "too many requests in flight for this API key (at most " +
                         std::to_string(options_.max_inflight_per_tenant) + "); retry later",
                     "", "rate_limit_exceeded");
    }
    ++n;
    slot.held = true;
  }
  std::future<void> done = job->done.get_future();
  switch (batcher_.submit(job, &arriving)) {
    case Batcher::Admission::kAccepted:
      break;
    case Batcher::Admission::kQueueFull:
      metrics_.add_shed("queue_full");
      throw ApiError(503, "server_error", "the server is overloaded (queue full); retry later", "",
                     "overloaded");
    case Batcher::Admission::kStopped:
      metrics_.add_shed("shutting_down");
      throw ApiError(503, "server_error", "the server is shutting down", "", "shutting_down");
  }
  metrics_.set_inflight(++inflight_);
  done.wait();
  metrics_.set_inflight(--inflight_);
  if (!job->error.empty()) {
    std::fprintf(stderr, "attncache serve: internal error: %s\n", job->error.c_str());
    throw ApiError(500, "server_error", "internal error: " + job->error);
  }
}

void Server::embeddings(const std::string& body, const std::string& tenant, httplib::Response& res,
                        Batcher::Arrival& arriving) {
  EmbeddingsRequest r = parse_embeddings_request(body, options_.max_inputs);
  check_model(r.model);
  if (model_.causal()) {
    throw bad_request("'" + r.model + "' is a decoder: it scores text at /v1/completions", "model");
  }
  if (r.dimensions != 0 && r.dimensions != model_.dim()) {
    throw bad_request("'dimensions' must be " + std::to_string(model_.dim()) +
                          " (this model's width) or left out",
                      "dimensions");
  }
  auto job = std::make_shared<Job>();
  job->task = Task::kEmbed;
  job->tenant = tenant;
  job->ns = namespaces_.get(tenant);
  size_t tokens = 0;
  for (size_t i = 0; i < r.inputs.size(); ++i) {
    Encoding e;
    try {
      e = model_.tokenize(r.inputs[i], options_.max_tokens);
    } catch (const core::Error& err) {
      throw bad_request("input " + std::to_string(i) + ": " + err.what(), "input");
    }
    if (e.truncated && !options_.truncate) {
      throw bad_request("input " + std::to_string(i) + " is longer than " +
                            std::to_string(options_.max_tokens) + " tokens",
                        "input");
    }
    tokens += e.ids.size();
    job->inputs.push_back(std::move(e.ids));
  }
  run(job, arriving);
  metrics_.add_tokens("/v1/embeddings", tokens);
  res.set_header("X-AttnCache-Hits", std::to_string(job->hits));
  res.set_content(embeddings_response(options_.model_name, job->vectors, job->inputs.size(),
                                      model_.dim(), r.base64, tokens),
                  "application/json");
}

void Server::completions(const std::string& body, const std::string& tenant, httplib::Response& res,
                         Batcher::Arrival& arriving) {
  CompletionsRequest r = parse_completions_request(body, options_.max_inputs);
  check_model(r.model);
  auto* decoder = dynamic_cast<Decoder*>(&model_);
  if (decoder == nullptr) {
    throw bad_request("'" + r.model + "' is an embedding model: use /v1/embeddings", "model");
  }
  auto job = std::make_shared<Job>();
  job->task = Task::kScore;
  job->tenant = tenant;
  size_t tokens = 0;
  for (size_t i = 0; i < r.prompts.size(); ++i) {
    Encoding e;
    try {
      e = decoder->tokenize(r.prompts[i], 0);
    } catch (const core::Error& err) {
      throw bad_request("prompt " + std::to_string(i) + ": " + err.what(), "prompt");
    }
    if (static_cast<int>(e.ids.size()) > options_.max_tokens) {
      throw bad_request("prompt " + std::to_string(i) + " has " + std::to_string(e.ids.size()) +
                            " tokens; the limit is " + std::to_string(options_.max_tokens),
                        "prompt");
    }
    tokens += e.ids.size();
    job->inputs.push_back(std::move(e.ids));
  }
  run(job, arriving);
  metrics_.add_tokens("/v1/completions", tokens);
  std::vector<ScoredPrompt> scored(r.prompts.size());
  for (size_t i = 0; i < scored.size(); ++i) {
    scored[i].prompt = r.prompts[i];
    for (int32_t id : job->inputs[i]) {
      scored[i].tokens.push_back(decoder->tokenizer().decode(std::span<const int32_t>(&id, 1)));
    }
    scored[i].log_probs = std::move(job->log_probs[i]);
  }
  res.set_content(completions_response("cmpl-" + std::to_string(++next_id_),
                                       static_cast<long>(std::time(nullptr)), options_.model_name,
                                       scored, tokens),
                  "application/json");
}

void Server::add_routes() {
  // A POST route: body, key, handler; errors as OpenAI error bodies; metrics.
  auto post = [this](const char* route, auto handler) {
    http_->Post(route, [this, route, handler](const httplib::Request& req, httplib::Response& res,
                                              const httplib::ContentReader& reader) {
      const auto start = Clock::now();
      Batcher::Arrival arriving = batcher_.arrival();
      try {
        std::string body;
        const std::string tenant = admit(req, res, reader, &body);
        (this->*handler)(body, tenant, res, arriving);
        res.status = 200;
      } catch (const ApiError& e) {
        set_error(res, e);
        metrics_.add_error(route, e.type);
      } catch (const std::exception& e) {
        set_error(res, ApiError(500, "server_error", std::string("internal error: ") + e.what()));
        metrics_.add_error(route, "server_error");
      }
      metrics_.add_request(route, res.status,
                           std::chrono::duration<double>(Clock::now() - start).count());
    });
  };
  post("/v1/embeddings", &Server::embeddings);
  post("/v1/completions", &Server::completions);

  http_->Get("/health", [this](const httplib::Request&, httplib::Response& res) {
    res.status = stopping_ ? 503 : 200;
    res.set_content(stopping_ ? R"({"status":"shutting_down"})" : R"({"status":"ok"})",
                    "application/json");
  });
  http_->Get("/metrics", [this](const httplib::Request&, httplib::Response& res) {
    res.set_content(metrics_.render(), "text/plain; version=0.0.4");
  });
  http_->Get("/v1/models", [this](const httplib::Request& req, httplib::Response& res) {
    if (keys_ != nullptr && !keys_->tenant_of(req.get_header_value("Authorization"))) {
      set_error(res, ApiError(401, "authentication_error", "missing or invalid API key", "",
                              "invalid_api_key"));
      return;
    }
    const nlohmann::json list = {{"object", "list"},
                                 {"data",
                                  {{{"id", options_.model_name},
                                    {"object", "model"},
                                    {"created", 0},
                                    {"owned_by", "attncache"}}}}};
    res.set_content(list.dump(), "application/json");
  });
  // Whatever cpp-httplib answers itself (no route, a malformed request line or headers, a
  // header timeout) gets an OpenAI error body too.
  http_->set_error_handler(httplib::Server::HandlerWithResponse(
      [this](const httplib::Request& req, httplib::Response& res) {
        if (!res.body.empty()) return httplib::Server::HandlerResponse::Unhandled;
        std::string message;
        if (res.status == 404) {
          message = "no route " + req.method + " " + req.path;
        } else if (res.status == 413) {
          message = "the request is too large";
        } else {
          message = res.status == 400 ? "malformed HTTP request (request line or headers), or its "
                                        "headers did not arrive within the read timeout"
                                      : "the HTTP request could not be processed";
        }
        set_error(res, ApiError(res.status, status_type(res.status), message));
        metrics_.add_error("other", status_type(res.status));
        metrics_.add_request("other", res.status, -1);  // not timed: cpp-httplib answered
        return httplib::Server::HandlerResponse::Handled;
      }));
}

}  // namespace attncache::serve
