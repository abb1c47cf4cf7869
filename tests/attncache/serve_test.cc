// `attncache serve` on loopback with the real all-MiniLM-L6-v2 (and SmolLM2 for scoring): the
// OpenAI wire format, equality with `attncache embed`, every kind of bad request answered with
// the right status and an OpenAI error body, API keys, per-tenant map namespaces, shedding (429,
// 503), metrics, reload of rebuilt databases, graceful shutdown, and --device (a stand-in for
// the GPU here; the GPU encoder itself is tested on a GPU machine).
#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <httplib.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <future>
#include <nlohmann/json.hpp>
#include <thread>

#include "attncache/decoder.h"
#include "attncache/device_embedder.h"
#include "attncache/memo/map_database.h"
#include "attncache/serve/api_keys.h"
#include "attncache/serve/batcher.h"
#include "attncache/serve/http_server.h"
#include "attncache/serve/openai_api.h"
#include "core/error.h"
#include "core/text_lines.h"
#include "support/real_model.h"
#include "support/run_cli.h"
#include "support/temp_dir.h"
#include "support/test_paths.h"

namespace {

using attncache::serve::ApiKeys;
using attncache::serve::Server;
using attncache::serve::ServerOptions;
using attncache::serve::TenantNamespaces;
using nlohmann::json;
using testing_support::minilm;
using testing_support::run_cli;
using testing_support::TempDir;

constexpr const char* kModel = "all-MiniLM-L6-v2";

// A server on 127.0.0.1 and a free port, serving from a thread until destroyed.
class RunningServer {
 public:
  RunningServer(attncache::PrefillModel& model, ServerOptions options,
                std::unique_ptr<ApiKeys> keys, std::unique_ptr<TenantNamespaces> namespaces,
                attncache::DeviceEmbedder* device = nullptr)
      : namespaces_(std::move(namespaces)) {
    options.host = "127.0.0.1";
    options.port = 0;
    if (options.model_name.empty()) options.model_name = kModel;
    server_ = std::make_unique<Server>(model, options, std::move(keys), *namespaces_, device);
    port_ = server_->bind();
    thread_ = std::thread([this] { server_->serve(); });
  }
  ~RunningServer() {
    server_->stop();
    thread_.join();
  }
  httplib::Client client() const {
    httplib::Client c("127.0.0.1", port_);
    c.set_read_timeout(30, 0);
    return c;
  }
  Server& server() { return *server_; }
  int port() const { return port_; }
  // Polls /metrics until `line` (a sample with its value) appears.
  bool wait_for_metric(const std::string& line) {
    for (int i = 0; i < 400; ++i) {
      auto r = client().Get("/metrics");
      if (r && r->body.find(line + "\n") != std::string::npos) return true;
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    return false;
  }

 private:
  std::unique_ptr<TenantNamespaces> namespaces_;
  std::unique_ptr<Server> server_;
  int port_ = 0;
  std::thread thread_;
};

std::unique_ptr<TenantNamespaces> no_db() {
  return std::make_unique<TenantNamespaces>("", false, std::vector<std::string>{}, json());
}

std::string embeddings_body(const json& input, const std::string& extra = "") {
  json j = {{"model", kModel}, {"input", input}};
  if (!extra.empty()) j.update(json::parse(extra));
  return j.dump();
}

// Parses an embeddings response's data into floats.
std::vector<std::vector<float>> vectors_of(const std::string& body) {
  std::vector<std::vector<float>> out;
  const json j = json::parse(body);
  for (const json& d : j["data"]) {
    std::vector<float> v;
    for (const json& x : d["embedding"]) v.push_back(static_cast<float>(x.get<double>()));
    out.push_back(std::move(v));
  }
  return out;
}

// Checks status and the OpenAI error shape; returns the error object.
json expect_error(const httplib::Result& r, int status, const std::string& message_part = "") {
  EXPECT_TRUE(r) << "no response";
  if (!r) return json();
  EXPECT_EQ(r->status, status) << r->body;
  EXPECT_EQ(r->get_header_value("Content-Type"), "application/json");
  json j = json::parse(r->body, nullptr, false);
  EXPECT_TRUE(j.is_object() && j.contains("error")) << r->body;
  if (!j.is_object() || !j.contains("error")) return json();
  const json& e = j["error"];
  EXPECT_TRUE(e["message"].is_string() && e["type"].is_string()) << r->body;
  EXPECT_TRUE(e.contains("param") && e.contains("code")) << r->body;
  if (!message_part.empty()) {
    EXPECT_NE(e["message"].get<std::string>().find(message_part), std::string::npos) << r->body;
  }
  return e;
}

std::vector<std::string> corpus_lines(size_t first, size_t count, size_t max_bytes = 160) {
  std::vector<std::string> out;
  const std::vector<std::string> all = core::read_lines(testing_paths::data_dir() + "/corpus.txt");
  for (size_t i = first; i < all.size() && out.size() < count; ++i) {
    if (!all[i].empty() && all[i].size() <= max_bytes) out.push_back(all[i]);
  }
  return out;
}

class ServeTest : public ::testing::Test {
 protected:
  // Map databases: DIR/team-a/ from 16 corpus lines; DIR itself (shared) a copy of it.
  // (A database keeps its inputs' first max_tokens ids: built at the server's truncation, 256,
  // its inputs are found again whole.)
  static void SetUpTestSuite() {
    dir_ = new TempDir();
    stored_ = corpus_lines(0, 16);
    std::ofstream(dir_->path("keys.txt"))
        << "# test keys\nsk-a1 team-a\nsk-a2 team-a\nsk-b team-b\n";
  }
  // Built on first use (ctest runs each test in its own process; most need no database).
  static std::string dbs() {
    if (!std::filesystem::exists(dir_->path("dbs/db.json"))) {
      attncache::memo::BuildOptions options;  // truncation as the server's: 256 tokens
      attncache::memo::MapDatabase::build(minilm(), stored_, dir_->path("dbs/team-a"), options);
      for (const auto& f : std::filesystem::directory_iterator(dir_->path("dbs/team-a"))) {
        std::filesystem::copy(f.path(),
                              std::filesystem::path(dir_->path("dbs")) / f.path().filename());
      }
    }
    return dir_->path("dbs");
  }
  static void TearDownTestSuite() { delete dir_; }

  static std::unique_ptr<TenantNamespaces> tenant_dbs(bool share) {
    return std::make_unique<TenantNamespaces>(
        dbs(), share, std::vector<std::string>{"team-a", "team-b"}, minilm().fingerprint());
  }
  static std::unique_ptr<ApiKeys> keys() {
    return std::make_unique<ApiKeys>(ApiKeys::load(dir_->path("keys.txt")));
  }

  static TempDir* dir_;
  static std::vector<std::string> stored_;
};
TempDir* ServeTest::dir_ = nullptr;
std::vector<std::string> ServeTest::stored_;

TEST_F(ServeTest, EmbeddingsEqualTheEmbedCommand) {
  const std::vector<std::string> texts = corpus_lines(100, 12);
  {
    std::ofstream out(dir_->path("texts.txt"));
    for (const auto& t : texts) out << t << "\n";
  }
  const auto cli = run_cli("embed --model " + testing_paths::model_dir() + " --input " +
                           dir_->path("texts.txt") + " --output " + dir_->path("embed.jsonl"));
  ASSERT_EQ(cli.exit_code, 0) << cli.output;
  std::vector<std::vector<float>> expected;
  for (const std::string& line : core::read_lines(dir_->path("embed.jsonl"))) {
    std::vector<float> v;
    const json j = json::parse(line);
    for (const json& x : j["embedding"]) v.push_back(x.get<float>());
    expected.push_back(std::move(v));
  }
  ASSERT_EQ(expected.size(), texts.size());

  RunningServer s(minilm(), ServerOptions{}, nullptr, no_db());
  // One request holding the texts runs as the same batch as `embed`: bit for bit equal.
  auto r = s.client().Post("/v1/embeddings", embeddings_body(texts), "application/json");
  ASSERT_TRUE(r);
  ASSERT_EQ(r->status, 200) << r->body;
  const json j = json::parse(r->body);
  EXPECT_EQ(j["object"], "list");
  EXPECT_EQ(j["model"], kModel);
  EXPECT_EQ(vectors_of(r->body), expected);
  for (size_t i = 0; i < texts.size(); ++i) {
    EXPECT_EQ(j["data"][i]["object"], "embedding");
    EXPECT_EQ(j["data"][i]["index"], i);
  }
  // base64: the same floats' little-endian bytes.
  r = s.client().Post("/v1/embeddings", embeddings_body(texts, R"({"encoding_format":"base64"})"),
                      "application/json");
  ASSERT_TRUE(r);
  ASSERT_EQ(r->status, 200);
  const json b = json::parse(r->body);
  for (size_t i = 0; i < texts.size(); ++i) {
    EXPECT_EQ(b["data"][i]["embedding"],
              attncache::serve::base64_encode(expected[i].data(), expected[i].size() * 4));
  }
  // One text per request batches differently; GEMM rounding may differ in the last bits only.
  for (size_t i = 0; i < texts.size(); i += 4) {
    r = s.client().Post("/v1/embeddings", embeddings_body(texts[i]), "application/json");
    ASSERT_TRUE(r);
    const std::vector<float> v = vectors_of(r->body).at(0);
    ASSERT_EQ(v.size(), expected[i].size());
    for (size_t k = 0; k < v.size(); ++k) EXPECT_NEAR(v[k], expected[i][k], 1e-6);
  }
}

TEST_F(ServeTest, UsageCountsPromptTokens) {
  RunningServer s(minilm(), ServerOptions{}, nullptr, no_db());
  const std::vector<std::string> texts = {"hello world", "a somewhat longer sentence here"};
  auto r = s.client().Post("/v1/embeddings", embeddings_body(texts), "application/json");
  ASSERT_TRUE(r);
  ASSERT_EQ(r->status, 200);
  size_t tokens = 0;
  for (const auto& t : texts) tokens += minilm().tokenize(t, 256).ids.size();
  const json usage = json::parse(r->body)["usage"];
  EXPECT_EQ(usage["prompt_tokens"], tokens);
  EXPECT_EQ(usage["total_tokens"], tokens);
}

TEST_F(ServeTest, MalformedJsonIs400) {
  RunningServer s(minilm(), ServerOptions{}, nullptr, no_db());
  expect_error(s.client().Post("/v1/embeddings", R"({"model": "x", "input": )", "application/json"),
               400, "not valid JSON");
  expect_error(s.client().Post("/v1/embeddings", "", "application/json"), 400, "empty");
  expect_error(s.client().Post("/v1/embeddings", R"(["a"])", "application/json"), 400,
               "JSON object");
}

TEST_F(ServeTest, WrongTypesAre400) {
  RunningServer s(minilm(), ServerOptions{}, nullptr, no_db());
  auto post = [&](const std::string& body) {
    return s.client().Post("/v1/embeddings", body, "application/json");
  };
  EXPECT_EQ(expect_error(post(R"({"input": "a"})"), 400, "'model' is required")["param"], "model");
  expect_error(post(R"({"model": 3, "input": "a"})"), 400, "'model' must be a string");
  EXPECT_EQ(expect_error(post(embeddings_body(42)), 400, "string or an array")["param"], "input");
  expect_error(post(embeddings_body(json::array({"a", 7}))), 400, "'input[1]' must be a string");
  expect_error(post(embeddings_body(json::array({1, 2, 3}))), 400, "token ids");
  expect_error(post(embeddings_body("a", R"({"encoding_format": "int8"})")), 400,
               "encoding_format");
  expect_error(post(embeddings_body("a", R"({"dimensions": 128})")), 400,
               "'dimensions' must be 384");
  EXPECT_EQ(post(embeddings_body("a", R"({"dimensions": 384})"))->status, 200);
}

TEST_F(ServeTest, EmptyInputIs400) {
  RunningServer s(minilm(), ServerOptions{}, nullptr, no_db());
  auto post = [&](const json& input) {
    return s.client().Post("/v1/embeddings", embeddings_body(input), "application/json");
  };
  expect_error(post(""), 400, "'input' is empty");
  expect_error(post(json::array()), 400, "empty array");
  expect_error(post(json::array({"fine", ""})), 400, "'input[1]' is empty");
  expect_error(
      s.client().Post("/v1/embeddings", R"({"model": "all-MiniLM-L6-v2"})", "application/json"),
      400, "'input' is required");
}

TEST_F(ServeTest, OversizeBodyAndTooManyInputsAre413) {
  ServerOptions o;
  o.max_body_bytes = 4096;
  o.max_inputs = 4;
  RunningServer s(minilm(), o, nullptr, no_db());
  auto c = s.client();
  const json e = expect_error(
      c.Post("/v1/embeddings", embeddings_body(std::string(8000, 'a')), "application/json"), 413,
      "exceeds 4096 bytes");
  EXPECT_EQ(e["code"], "request_too_large");
  // The connection stays usable after the refused body.
  auto ok = c.Post("/v1/embeddings", embeddings_body("fits"), "application/json");
  ASSERT_TRUE(ok);
  EXPECT_EQ(ok->status, 200);
  expect_error(c.Post("/v1/embeddings", embeddings_body(json::array({"a", "b", "c", "d", "e"})),
                      "application/json"),
               413, "at most 4 per request");
}

TEST_F(ServeTest, UnknownModelIs404) {
  RunningServer s(minilm(), ServerOptions{}, nullptr, no_db());
  const json e = expect_error(
      s.client().Post("/v1/embeddings", R"({"model":"gpt-4","input":"a"})", "application/json"),
      404, "'gpt-4' does not exist");
  EXPECT_EQ(e["code"], "model_not_found");
  expect_error(s.client().Get("/v2/nothing"), 404, "no route GET /v2/nothing");
  // An encoder does not score.
  expect_error(
      s.client().Post("/v1/completions",
                      R"({"model":"all-MiniLM-L6-v2","prompt":"a","echo":true,"max_tokens":0})",
                      "application/json"),
      400, "is an embedding model");
}

TEST_F(ServeTest, InvalidUtf8Is400) {
  RunningServer s(minilm(), ServerOptions{}, nullptr, no_db());
  const std::string body =
      std::string(R"({"model":"all-MiniLM-L6-v2","input":"caf)") + "\xC3\x28" + R"("})";
  expect_error(s.client().Post("/v1/embeddings", body, "application/json"), 400, "UTF-8");
}

// A raw TCP connection to the server: sends `data`, then waits for the whole response.
std::string raw_exchange(int port, const std::string& data, int wait_s) {
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(static_cast<uint16_t>(port));
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) {
    ::close(fd);
    return "";
  }
  timeval tv{wait_s, 0};
  ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  [[maybe_unused]] ssize_t sent = ::send(fd, data.data(), data.size(), MSG_NOSIGNAL);
  std::string out;
  char buf[4096];
  ssize_t n;
  while ((n = ::recv(fd, buf, sizeof buf, 0)) > 0) {
    out.append(buf, static_cast<size_t>(n));
    if (out.find("\r\n\r\n") != std::string::npos && out.find("\"error\"") != std::string::npos &&
        out.back() == '}') {
      break;
    }
  }
  ::close(fd);
  return out;
}

TEST_F(ServeTest, SlowClientGets408) {
  ServerOptions o;
  o.read_timeout_s = 1;
  RunningServer s(minilm(), o, nullptr, no_db());
  // Promises 200 bytes of body, sends 20, then stalls.
  const auto start = std::chrono::steady_clock::now();
  const std::string reply =
      raw_exchange(s.port(),
                   "POST /v1/embeddings HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                   "Content-Length: 200\r\n\r\n{\"model\": \"all-Mini",
                   10);
  const double waited =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  EXPECT_EQ(reply.rfind("HTTP/1.1 408", 0), 0u) << reply;
  EXPECT_NE(reply.find("did not arrive within 1 s"), std::string::npos) << reply;
  EXPECT_LT(waited, 8.0);
  // Meanwhile, and after, others are served.
  EXPECT_EQ(s.client().Get("/health")->status, 200);
}

TEST_F(ServeTest, ApiKeysAre401WithoutAValidKey) {
  RunningServer s(minilm(), ServerOptions{}, keys(), no_db());
  auto c = s.client();
  const std::string body = embeddings_body("hello");
  EXPECT_EQ(expect_error(c.Post("/v1/embeddings", body, "application/json"), 401,
                         "missing API key")["type"],
            "authentication_error");
  expect_error(
      c.Post("/v1/embeddings", {{"Authorization", "Bearer sk-wrong"}}, body, "application/json"),
      401, "invalid API key");
  expect_error(c.Get("/v1/models"), 401);
  auto ok = c.Post("/v1/embeddings", {{"Authorization", "Bearer sk-b"}}, body, "application/json");
  ASSERT_TRUE(ok);
  EXPECT_EQ(ok->status, 200);
  auto models = c.Get("/v1/models", {{"Authorization", "Bearer sk-a1"}});
  ASSERT_TRUE(models);
  EXPECT_EQ(json::parse(models->body)["data"][0]["id"], kModel);
  EXPECT_EQ(c.Get("/health")->status, 200);  // health and metrics need no key
  EXPECT_EQ(c.Get("/metrics")->status, 200);
}

// Hits of one stored input, sent as tenant `key`.
int hits_for(RunningServer& s, const std::string& key, const std::string& text) {
  auto r = s.client().Post("/v1/embeddings", {{"Authorization", "Bearer " + key}},
                           embeddings_body(text), "application/json");
  EXPECT_TRUE(r);
  if (!r) return -1;
  EXPECT_EQ(r->status, 200) << r->body;
  return std::stoi(r->get_header_value("X-AttnCache-Hits"));
}

TEST_F(ServeTest, TenantsNeverReuseAnotherTenantsMaps) {
  const std::string text = stored_[3];  // stored in team-a's database (and the shared one)
  {
    RunningServer s(minilm(), ServerOptions{}, keys(), tenant_dbs(false));
    EXPECT_EQ(hits_for(s, "sk-a1", text), 1);
    EXPECT_EQ(hits_for(s, "sk-a2", text), 1);  // both of team-a's keys
    EXPECT_EQ(hits_for(s, "sk-b", text), 0);   // team-b has no database: exact
    EXPECT_EQ(hits_for(s, "sk-a1", "A sentence nobody stored, of its own length."), 0);
    EXPECT_TRUE(s.wait_for_metric("attncache_cache_hits_total{tenant=\"team-a\"} 2"));
    EXPECT_TRUE(s.wait_for_metric("attncache_cache_lookups_total{tenant=\"team-a\"} 3"));
  }
  {
    // --share-db: every tenant uses the one database.
    RunningServer s(minilm(), ServerOptions{}, keys(), tenant_dbs(true));
    EXPECT_EQ(hits_for(s, "sk-b", text), 1);
    EXPECT_EQ(hits_for(s, "sk-a1", text), 1);
  }
}

TEST_F(ServeTest, HitsStayCloseToTheExactEmbedding) {
  RunningServer s(minilm(), ServerOptions{}, keys(), tenant_dbs(false));
  for (size_t i = 0; i < stored_.size(); i += 5) {
    auto hit = s.client().Post("/v1/embeddings", {{"Authorization", "Bearer sk-a1"}},
                               embeddings_body(stored_[i]), "application/json");
    auto exact = s.client().Post("/v1/embeddings", {{"Authorization", "Bearer sk-b"}},
                                 embeddings_body(stored_[i]), "application/json");
    ASSERT_TRUE(hit && exact);
    const auto a = vectors_of(hit->body).at(0), b = vectors_of(exact->body).at(0);
    EXPECT_GT(testing_support::cosine(a.data(), b.data(), static_cast<int>(a.size())), 0.9999);
  }
}

TEST_F(ServeTest, ReloadPublishesARebuiltDatabase) {
  TempDir dbs;
  const auto namespaces = [&] {
    return std::make_unique<TenantNamespaces>(
        dbs.path(), false, std::vector<std::string>{"team-a", "team-b"}, minilm().fingerprint());
  };
  RunningServer s(minilm(), ServerOptions{}, keys(), namespaces());
  const std::string text = stored_[5];
  EXPECT_EQ(hits_for(s, "sk-b", text), 0);
  attncache::memo::MapDatabase::build(minilm(), stored_, dbs.path("team-b"), {});
  EXPECT_EQ(hits_for(s, "sk-b", text), 0);  // not before the reload
  const std::vector<std::string> report = s.server().reload();
  ASSERT_EQ(report.size(), 2u);
  EXPECT_NE(report[1].find("team-b: 16 entries"), std::string::npos) << report[1];
  EXPECT_EQ(hits_for(s, "sk-b", text), 1);
  EXPECT_EQ(hits_for(s, "sk-a1", text), 0);  // team-a still has none
  EXPECT_TRUE(s.wait_for_metric(
      "attncache_mapped_bytes{tenant=\"team-b\"} " +
      std::to_string(
          attncache::memo::MapDatabase::open(dbs.path("team-b"), json(), false).bytes_on_disk())));
}

TEST_F(ServeTest, FullQueueIs503) {
  ServerOptions o;
  o.batcher.max_queue = 2;
  o.batcher.max_batch = 64;
  o.batcher.max_wait = std::chrono::milliseconds(1500);  // the first request waits to batch
  o.batcher.wait = attncache::serve::BatchWait::kAlways;
  RunningServer s(minilm(), o, nullptr, no_db());
  auto first = std::async(std::launch::async, [&] {
    return s.client().Post("/v1/embeddings", embeddings_body(json::array({"one", "two"})),
                           "application/json");
  });
  ASSERT_TRUE(s.wait_for_metric("attncache_queue_depth 2"));
  auto shed = s.client().Post("/v1/embeddings", embeddings_body("three"), "application/json");
  const json e = expect_error(shed, 503, "overloaded");
  EXPECT_EQ(e["code"], "overloaded");
  EXPECT_EQ(shed->get_header_value("Retry-After"), "1");
  auto r = first.get();
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 200);
  EXPECT_TRUE(s.wait_for_metric("attncache_requests_shed_total{reason=\"queue_full\"} 1"));
}

TEST_F(ServeTest, TenantBeyondItsShareIs429) {
  ServerOptions o;
  o.max_inflight_per_tenant = 1;
  o.batcher.max_batch = 64;
  o.batcher.max_wait = std::chrono::milliseconds(1500);
  o.batcher.wait = attncache::serve::BatchWait::kAlways;
  RunningServer s(minilm(), o, keys(), no_db());
  auto first = std::async(std::launch::async, [&] {
    return s.client().Post("/v1/embeddings", {{"Authorization", "Bearer sk-a1"}},
                           embeddings_body("one"), "application/json");
  });
  ASSERT_TRUE(s.wait_for_metric("attncache_inflight_requests 1"));
  // Another key of the same tenant is refused; another tenant is not.
  const json e = expect_error(s.client().Post("/v1/embeddings", {{"Authorization", "Bearer sk-a2"}},
                                              embeddings_body("two"), "application/json"),
                              429, "too many requests in flight");
  EXPECT_EQ(e["type"], "rate_limit_error");
  auto other = s.client().Post("/v1/embeddings", {{"Authorization", "Bearer sk-b"}},
                               embeddings_body("three"), "application/json");
  ASSERT_TRUE(other);
  EXPECT_EQ(other->status, 200);
  EXPECT_EQ(first.get()->status, 200);
}

TEST_F(ServeTest, RequestsAreBatchedTogether) {
  ServerOptions o;
  o.batcher.max_batch = 4;
  o.batcher.max_wait = std::chrono::milliseconds(2000);
  o.batcher.wait = attncache::serve::BatchWait::kAlways;
  RunningServer s(minilm(), o, nullptr, no_db());
  // Four one-input requests fill one batch of 4 long before the wait ends.
  std::vector<std::future<httplib::Result>> replies;
  for (int i = 0; i < 4; ++i) {
    replies.push_back(std::async(std::launch::async, [&, i] {
      return s.client().Post("/v1/embeddings", embeddings_body("text " + std::to_string(i)),
                             "application/json");
    }));
  }
  for (auto& r : replies) EXPECT_EQ(r.get()->status, 200);
  EXPECT_TRUE(s.wait_for_metric("attncache_batch_inputs_bucket{le=\"2\"} 0"));
  EXPECT_TRUE(s.wait_for_metric("attncache_batch_inputs_bucket{le=\"4\"} 1"));
  EXPECT_TRUE(s.wait_for_metric("attncache_batch_inputs_count 1"));
}

TEST_F(ServeTest, MetricsCountRequestsAndErrors) {
  RunningServer s(minilm(), ServerOptions{}, nullptr, no_db());
  s.client().Post("/v1/embeddings", embeddings_body("fine"), "application/json");
  s.client().Post("/v1/embeddings", embeddings_body(""), "application/json");
  auto m = s.client().Get("/metrics");
  ASSERT_TRUE(m);
  EXPECT_EQ(m->get_header_value("Content-Type"), "text/plain; version=0.0.4");
  for (const char* line :
       {"attncache_http_requests_total{route=\"/v1/embeddings\",code=\"200\"} 1",
        "attncache_http_requests_total{route=\"/v1/embeddings\",code=\"400\"} 1",
        "attncache_http_errors_total{route=\"/v1/embeddings\",type=\"invalid_request_error\"} 1",
        "attncache_http_request_duration_seconds_count{route=\"/v1/embeddings\"} 2",
        "attncache_tokens_total{route=\"/v1/embeddings\"} 3", "attncache_queue_depth 0",
        "# TYPE attncache_batch_inputs histogram"}) {
    EXPECT_NE(m->body.find(std::string(line) + "\n"), std::string::npos) << line << "\n" << m->body;
  }
}

TEST_F(ServeTest, StopFinishesRequestsInFlight) {
  ServerOptions o;
  o.batcher.max_batch = 64;
  o.batcher.max_wait = std::chrono::milliseconds(1000);
  o.batcher.wait = attncache::serve::BatchWait::kAlways;
  auto s = std::make_unique<RunningServer>(minilm(), o, nullptr, no_db());
  auto in_flight = std::async(std::launch::async, [&] {
    return s->client().Post("/v1/embeddings", embeddings_body("finish me"), "application/json");
  });
  ASSERT_TRUE(s->wait_for_metric("attncache_inflight_requests 1"));
  s->server().stop();
  auto r = in_flight.get();
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 200) << r->body;
  EXPECT_EQ(vectors_of(r->body).at(0).size(), 384u);
  s.reset();  // serve() returned: the destructor joins
}

// Exact embeddings go to the server's device; a device that fails hands this batch and every
// later one to the CPU, answering correctly, and the batch counter says where each batch ran.
TEST_F(ServeTest, EmbeddingsRunOnTheDeviceAndFallBackToTheCpu) {
  const std::vector<std::string> texts = {"on the device", "and a second input"};
  std::vector<std::vector<int32_t>> ids;
  for (const std::string& t : texts) ids.push_back(minilm().tokenize(t, 256).ids);
  const std::vector<float> cpu = minilm().embed(ids);
  auto expect_vectors = [&](const httplib::Result& r, float sign) {
    ASSERT_TRUE(r);
    ASSERT_EQ(r->status, 200) << r->body;
    const auto v = vectors_of(r->body);
    ASSERT_EQ(v.size(), texts.size());
    for (size_t i = 0; i < v.size(); ++i) {
      for (size_t k = 0; k < v[i].size(); ++k) {
        ASSERT_NEAR(v[i][k], sign * cpu[i * v[i].size() + k], 1e-6) << i << " " << k;
      }
    }
  };
  {
    // The stand-in answers with the CPU's vectors negated, so its answers are recognisable.
    attncache::DeviceEmbedder gpu(
        minilm(),
        [](const std::vector<std::vector<int32_t>>& batch) {
          std::vector<float> e = minilm().embed(batch);
          for (float& x : e) x = -x;
          return e;
        },
        "stand-in GPU");
    RunningServer s(minilm(), ServerOptions{}, nullptr, no_db(), &gpu);
    expect_vectors(s.client().Post("/v1/embeddings", embeddings_body(texts), "application/json"),
                   -1.0f);
    EXPECT_TRUE(s.wait_for_metric("attncache_batches_total{device=\"gpu\"} 1"));
  }
  attncache::DeviceEmbedder failing(
      minilm(),
      [](const std::vector<std::vector<int32_t>>&) -> std::vector<float> {
        core::throw_internal("CUDA error: an illegal memory access was encountered (stand-in)");
      },
      "failing stand-in GPU");
  RunningServer s(minilm(), ServerOptions{}, nullptr, no_db(), &failing);
  for (int i = 0; i < 2; ++i) {
    expect_vectors(s.client().Post("/v1/embeddings", embeddings_body(texts), "application/json"),
                   1.0f);
  }
  EXPECT_FALSE(failing.on_gpu());
  EXPECT_TRUE(s.wait_for_metric("attncache_batches_total{device=\"cpu\"} 2"));
}

// A batch the device refuses as bad input (too little device memory, say) runs on the CPU and
// counts there; the device keeps the next batch.
TEST_F(ServeTest, ABatchTheDeviceRefusesRunsOnTheCpu) {
  attncache::DeviceEmbedder refusing(
      minilm(),
      [](const std::vector<std::vector<int32_t>>& batch) -> std::vector<float> {
        if (batch.size() > 1) core::throw_bad_input("too little GPU memory (stand-in)");
        std::vector<float> e = minilm().embed(batch);
        for (float& x : e) x = -x;
        return e;
      },
      "refusing stand-in GPU");
  RunningServer s(minilm(), ServerOptions{}, nullptr, no_db(), &refusing);
  const std::vector<std::string> texts = {"too large for the device", "as a pair"};
  std::vector<std::vector<int32_t>> ids;
  for (const std::string& t : texts) ids.push_back(minilm().tokenize(t, 256).ids);
  auto two = s.client().Post("/v1/embeddings", embeddings_body(texts), "application/json");
  ASSERT_TRUE(two);
  ASSERT_EQ(two->status, 200) << two->body;
  const std::vector<float> cpu = minilm().embed(ids);
  EXPECT_NEAR(vectors_of(two->body).at(1).at(0), cpu[cpu.size() / 2], 1e-6);  // the CPU's sign
  EXPECT_TRUE(s.wait_for_metric("attncache_batches_total{device=\"cpu\"} 1"));
  auto one = s.client().Post("/v1/embeddings", embeddings_body("alone"), "application/json");
  ASSERT_TRUE(one);
  ASSERT_EQ(one->status, 200) << one->body;
  EXPECT_NEAR(vectors_of(one->body).at(0).at(0),
              -minilm().embed({minilm().tokenize("alone", 256).ids})[0], 1e-6);
  EXPECT_TRUE(s.wait_for_metric("attncache_batches_total{device=\"gpu\"} 1"));
}

// The batcher alone: groups by namespace, bounded batches, drains on stop.
TEST(BatcherTest, GroupsByNamespaceAndDrainsOnStop) {
  using attncache::serve::Batcher;
  using attncache::serve::Job;
  std::mutex mu;
  std::vector<std::pair<size_t, const void*>> batches;  // inputs, namespace
  std::promise<void> release;
  std::shared_future<void> gate = release.get_future().share();
  attncache::serve::BatcherOptions o;
  o.max_batch = 3;
  o.max_wait = std::chrono::milliseconds(0);
  o.max_queue = 100;
  Batcher b(o, [&](const std::vector<Job*>& jobs) {
    gate.wait();  // hold the worker until everything is queued
    size_t n = 0;
    for (Job* j : jobs) n += j->inputs.size();
    std::lock_guard lock(mu);
    batches.emplace_back(n, jobs.front()->ns.get());
  });
  auto ns = std::make_shared<attncache::serve::Namespace>();
  std::vector<std::shared_ptr<Job>> jobs;
  for (int i = 0; i < 7; ++i) {
    auto j = std::make_shared<Job>();
    j->inputs.resize(1);
    if (i % 2 == 1) j->ns = ns;
    jobs.push_back(j);
    ASSERT_EQ(b.submit(j), Batcher::Admission::kAccepted);
  }
  release.set_value();
  b.stop();
  EXPECT_EQ(b.submit(std::make_shared<Job>()), Batcher::Admission::kStopped);
  for (auto& j : jobs) {
    EXPECT_EQ(j->done.get_future().wait_for(std::chrono::seconds(0)), std::future_status::ready);
  }
  // The first job ran alone (the worker took it at once); then the rest by namespace, ≤ 3.
  size_t total = 0;
  for (const auto& [n, space] : batches) {
    EXPECT_LE(n, 3u);
    total += n;
  }
  EXPECT_EQ(total, 7u);
  ASSERT_GE(batches.size(), 3u);
}

// By default a batch that is not full waits only for requests on their way (Arrivals): a lone
// job runs at once however long max_wait is; one waits for an arrival, which joins its batch;
// an arrival that ends without a job (a refused request) lets the waiting batch go.
TEST(BatcherTest, ABatchWaitsOnlyForRequestsOnTheirWay) {
  using attncache::serve::Batcher;
  using attncache::serve::Job;
  std::mutex mu;
  std::vector<size_t> batches;  // jobs per batch
  attncache::serve::BatcherOptions o;
  o.max_batch = 8;
  o.max_wait = std::chrono::seconds(120);
  Batcher b(o, [&](const std::vector<Job*>& jobs) {
    std::lock_guard lock(mu);
    batches.push_back(jobs.size());
  });
  struct Queued {
    std::shared_ptr<Job> job = std::make_shared<Job>();
    std::future<void> done = job->done.get_future();
    Queued() { job->inputs.resize(1); }
    bool ran(std::chrono::milliseconds within) {
      return done.wait_for(within) == std::future_status::ready;
    }
  };
  Queued lone;
  ASSERT_EQ(b.submit(lone.job), Batcher::Admission::kAccepted);
  EXPECT_TRUE(lone.ran(std::chrono::seconds(60)));  // not after the 120 s window

  Queued first, second;
  {
    Batcher::Arrival coming = b.arrival();
    ASSERT_EQ(b.submit(first.job), Batcher::Admission::kAccepted);
    EXPECT_FALSE(first.ran(std::chrono::milliseconds(300)));  // waits for `coming`
    ASSERT_EQ(b.submit(second.job, &coming), Batcher::Admission::kAccepted);
  }
  EXPECT_TRUE(first.ran(std::chrono::seconds(60)));
  EXPECT_TRUE(second.ran(std::chrono::seconds(60)));

  Queued third;
  {
    Batcher::Arrival refused = b.arrival();
    ASSERT_EQ(b.submit(third.job), Batcher::Admission::kAccepted);
    EXPECT_FALSE(third.ran(std::chrono::milliseconds(300)));
  }  // its request was refused before it queued a job
  EXPECT_TRUE(third.ran(std::chrono::seconds(60)));
  b.stop();
  std::lock_guard lock(mu);
  EXPECT_EQ(batches, (std::vector<size_t>{1, 2, 1}));
}

// BatchWait::kAlways: a fixed window; a lone job waits it out unless the batch fills.
TEST(BatcherTest, AFixedWindowWaitsForAFullBatch) {
  using attncache::serve::Batcher;
  using attncache::serve::Job;
  attncache::serve::BatcherOptions o;
  o.max_batch = 2;
  o.max_wait = std::chrono::seconds(120);
  o.wait = attncache::serve::BatchWait::kAlways;
  std::atomic<int> calls = 0;
  Batcher b(o, [&](const std::vector<Job*>& jobs) {
    ++calls;
    EXPECT_EQ(jobs.size(), 2u);
  });
  auto first = std::make_shared<Job>(), second = std::make_shared<Job>();
  first->inputs.resize(1);
  second->inputs.resize(1);
  ASSERT_EQ(b.submit(first), Batcher::Admission::kAccepted);
  EXPECT_EQ(first->done.get_future().wait_for(std::chrono::milliseconds(300)),
            std::future_status::timeout);
  ASSERT_EQ(b.submit(second), Batcher::Admission::kAccepted);
  EXPECT_EQ(second->done.get_future().wait_for(std::chrono::seconds(60)),
            std::future_status::ready);
  b.stop();
  EXPECT_EQ(calls, 1);
}

TEST(ApiKeysTest, FileFormatAndErrors) {
  TempDir dir;
  std::ofstream(dir.path("ok")) << "# comment\n\nsk-1 team\nsk-2\n";
  const ApiKeys keys = ApiKeys::load(dir.path("ok"));
  EXPECT_EQ(keys.tenant_of("Bearer sk-1"), "team");
  EXPECT_EQ(keys.tenant_of("Bearer sk-2"), "key-4");
  EXPECT_EQ(keys.tenant_of("sk-1"), std::nullopt);
  EXPECT_EQ(keys.tenant_of("Bearer sk-3"), std::nullopt);
  auto bad = [&](const std::string& text, const std::string& message) {
    std::ofstream(dir.path("bad")) << text;
    try {
      ApiKeys::load(dir.path("bad"));
      ADD_FAILURE() << "accepted: " << text;
    } catch (const core::Error& e) {
      EXPECT_EQ(e.kind(), core::ErrorKind::kBadInput);
      EXPECT_NE(std::string(e.what()).find(message), std::string::npos) << e.what();
    }
  };
  bad("sk-1 a\nsk-1 b\n", "line 2: duplicate key");
  bad("# nothing\n", "no keys");
  bad("sk-1 ../etc\n", "tenant '../etc'");
  bad("sk-1 a b\n", "found more");
}

// A /v1/completions body that scores `prompts` (echo, no generation), as evaluation harnesses send.
json echo_scoring_body(const std::vector<std::string>& prompts) {
  return {{"model", "SmolLM2-135M-Instruct"},
          {"prompt", prompts},
          {"echo", true},
          {"max_tokens", 0},
          {"logprobs", 0}};
}

// Scoring with the real SmolLM2: every prompt token's log-probability, as `score text` computes.
TEST(ServeScoreTest, CompletionsEchoScoresPromptTokens) {
  std::unique_ptr<attncache::Decoder> decoder =
      attncache::Decoder::load(testing_paths::model_dir("SmolLM2-135M-Instruct"));
  ServerOptions o;
  o.model_name = "SmolLM2-135M-Instruct";
  RunningServer s(*decoder, o, nullptr, no_db());
  const std::vector<std::string> prompts = {"The capital of France is Paris.",
                                            "Colorless green ideas sleep furiously."};
  const json body = echo_scoring_body(prompts);
  auto r = s.client().Post("/v1/completions", body.dump(), "application/json");
  ASSERT_TRUE(r);
  ASSERT_EQ(r->status, 200) << r->body;
  const json j = json::parse(r->body);
  EXPECT_EQ(j["object"], "text_completion");
  size_t tokens = 0;
  for (size_t i = 0; i < prompts.size(); ++i) {
    const std::vector<int32_t> ids = decoder->tokenize(prompts[i], 0).ids;
    const std::vector<double> expected = decoder->token_log_probs(ids);
    const json& lp = j["choices"][i]["logprobs"];
    EXPECT_EQ(j["choices"][i]["text"], prompts[i]);
    ASSERT_EQ(lp["tokens"].size(), ids.size());
    ASSERT_EQ(lp["token_logprobs"].size(), ids.size());
    EXPECT_TRUE(lp["token_logprobs"][0].is_null());
    std::string text;
    for (size_t t = 0; t < ids.size(); ++t) {
      text += lp["tokens"][t].get<std::string>();
      if (t > 0) {  // the server scores both prompts in one pass: equal to rounding
        EXPECT_NEAR(lp["token_logprobs"][t].get<double>(), expected[t - 1], 1e-3);
      }
    }
    EXPECT_NE(text.find(prompts[i]), std::string::npos) << text;
    tokens += ids.size();
  }
  EXPECT_EQ(j["usage"]["prompt_tokens"], tokens);
  // Generation is refused with an explanation; so are embeddings from a decoder.
  expect_error(s.client().Post("/v1/completions",
                               R"({"model":"SmolLM2-135M-Instruct","prompt":"a","max_tokens":16})",
                               "application/json"),
               400, "does not generate");
  expect_error(s.client().Post("/v1/embeddings", R"({"model":"SmolLM2-135M-Instruct","input":"a"})",
                               "application/json"),
               400, "is a decoder");
}

// Scoring on a GPU: a whole slice of prompts (at most --max-batch prompts and --max-batch-tokens
// tokens) per call of the (stand-in) GPU model, whose rows come back as [Σ N] log-probabilities;
// a GPU failure hands this and later slices to the CPU.
TEST(ServeScoreTest, CompletionsScoreOnTheGpuAndFallBackToTheCpu) {
  std::unique_ptr<attncache::Decoder> decoder =
      attncache::Decoder::load(testing_paths::model_dir("SmolLM2-135M-Instruct"));
  const std::vector<std::string> prompts = {"The capital of France is Paris.", "Hi",
                                            "Colorless green ideas sleep furiously."};
  const json body = echo_scoring_body(prompts);
  ServerOptions o;
  o.model_name = "SmolLM2-135M-Instruct";
  auto expect_scores = [&](const httplib::Result& r, double scale) {
    ASSERT_TRUE(r);
    ASSERT_EQ(r->status, 200) << r->body;
    const json j = json::parse(r->body);
    for (size_t i = 0; i < prompts.size(); ++i) {
      const std::vector<double> cpu =
          decoder->token_log_probs(decoder->tokenize(prompts[i], 0).ids);
      const json& lp = j["choices"][i]["logprobs"]["token_logprobs"];
      ASSERT_EQ(lp.size(), cpu.size() + 1) << i;
      for (size_t t = 0; t < cpu.size(); ++t) {
        EXPECT_NEAR(lp[t + 1].get<double>(), scale * cpu[t], 1e-3) << i << " " << t;
      }
    }
  };
  size_t gpu_calls = 0;
  // The stand-in answers with the CPU's log-probabilities halved, so its answers are
  // recognisable, in the GPU model's layout: every token's row, 0 for each prompt's last.
  attncache::DeviceEmbedder gpu(
      *decoder,
      [](const std::vector<std::vector<int32_t>>&) -> std::vector<float> {
        core::throw_internal("not called");
      },
      "stand-in GPU",
      [&](const std::vector<std::vector<int32_t>>& batch) {
        ++gpu_calls;
        std::vector<float> rows;
        for (const auto& ids : batch) {
          for (double v : decoder->token_log_probs(ids)) rows.push_back(static_cast<float>(v / 2));
          rows.push_back(0);
        }
        return rows;
      });
  {
    RunningServer s(*decoder, o, nullptr, no_db(), &gpu);
    expect_scores(s.client().Post("/v1/completions", body.dump(), "application/json"), 0.5);
    EXPECT_EQ(gpu_calls, 1u);  // three prompts, one batch
    EXPECT_TRUE(s.wait_for_metric("attncache_batches_total{device=\"gpu\"} 1"));
  }
  {
    // A pass of at most one token: each prompt alone, whatever its length.
    ServerOptions one_token = o;
    one_token.max_batch_tokens = 1;
    RunningServer s(*decoder, one_token, nullptr, no_db(), &gpu);
    expect_scores(s.client().Post("/v1/completions", body.dump(), "application/json"), 0.5);
    EXPECT_EQ(gpu_calls, 4u);
    EXPECT_TRUE(s.wait_for_metric("attncache_batches_total{device=\"gpu\"} 3"));
  }
  attncache::DeviceEmbedder failing(
      *decoder, nullptr, "failing stand-in GPU",
      [](const std::vector<std::vector<int32_t>>&) -> std::vector<float> {
        core::throw_internal("CUDA error: an illegal memory access was encountered (stand-in)");
      });
  RunningServer s(*decoder, o, nullptr, no_db(), &failing);
  for (int i = 0; i < 2; ++i) {
    expect_scores(s.client().Post("/v1/completions", body.dump(), "application/json"), 1.0);
  }
  EXPECT_TRUE(s.wait_for_metric("attncache_batches_total{device=\"cpu\"} 2"));
}

// The command as a user runs it.
TEST(ServeCliTest, BadOptionsExit2) {
  TempDir dir;
  auto expect_bad = [](const testing_support::CliResult& r, const std::string& message) {
    EXPECT_EQ(r.exit_code, 2) << r.output;
    EXPECT_NE(r.output.find(message), std::string::npos) << r.output;
  };
  expect_bad(run_cli("serve"), "--model is required");
  expect_bad(run_cli("serve --model " + dir.path("no-such-model") + " --port 0"), "no-such-model");
  const std::string model = " --model " + testing_paths::model_dir() + " --port 0";
  expect_bad(run_cli("serve" + model + " --db " + dir.path("no-db")), "not a directory");
  std::filesystem::create_directories(dir.path("empty-db"));
  expect_bad(run_cli("serve" + model + " --db " + dir.path("empty-db")), "empty-db");
  expect_bad(run_cli("serve" + model + " --api-key-file " + dir.path("no-keys")), "cannot open");
  std::ofstream(dir.path("dup-keys")) << "k1\nk1\n";
  expect_bad(run_cli("serve" + model + " --api-key-file " + dir.path("dup-keys")),
             "line 2: duplicate key");
  // --device: one device for everything served.
  expect_bad(run_cli("serve" + model + " --device tpu"), "unknown device 'tpu'");
  expect_bad(run_cli("serve" + model + " --max-batch-tokens 0"), "--max-batch-tokens");
  expect_bad(run_cli("serve" + model + " --device cuda --db " + dir.path("empty-db")),
             "AttnCache (--db) is served on the CPU only");
  if (attncache::cuda_device_count() == 0) {
    expect_bad(run_cli("serve" + model + " --device cuda"), "CUDA");
    expect_bad(run_cli("serve --port 0 --device cuda --model " +
                       testing_paths::model_dir("SmolLM2-135M-Instruct")),
               "CUDA");
  }
}

TEST(ServeCliTest, SigtermFinishesAndExits0) {
  TempDir dir;
  // The shell prints its pid, then becomes the server; the server reports its port.
  // --device auto: the GPU where there is one, else the CPU with a note.
  const std::string cmd = "sh -c 'echo $$; exec " + std::string(ATTNCACHE_BINARY) +
                          " serve --model " + testing_paths::model_dir() +
                          " --port 0 --device auto' 2>&1";
  FILE* pipe = ::popen(cmd.c_str(), "r");
  ASSERT_NE(pipe, nullptr);
  char line[512];
  ASSERT_NE(std::fgets(line, sizeof line, pipe), nullptr);
  const pid_t pid = std::stoi(line);
  int port = 0;
  std::string head;
  while (port == 0 && std::fgets(line, sizeof line, pipe) != nullptr) {
    head += line;
    const char* at = std::strstr(line, "listening on http://127.0.0.1:");
    if (at != nullptr) port = std::atoi(at + std::strlen("listening on http://127.0.0.1:"));
  }
  ASSERT_GT(port, 0) << head;
  if (attncache::cuda_device_count() == 0) {
    EXPECT_NE(head.find("note: running on the CPU"), std::string::npos) << head;
    EXPECT_NE(head.find("CPU threads) listening"), std::string::npos) << head;
  }
  httplib::Client c("127.0.0.1", port);
  auto r = c.Post("/v1/embeddings", embeddings_body("over the wire"), "application/json");
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 200);
  ::kill(pid, SIGTERM);
  std::string rest;
  while (std::fgets(line, sizeof line, pipe) != nullptr) rest += line;
  const int status = ::pclose(pipe);
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << status << rest;
  EXPECT_NE(rest.find("shutting down"), std::string::npos) << rest;
  EXPECT_NE(rest.find("stopped"), std::string::npos) << rest;
}

}  // namespace
