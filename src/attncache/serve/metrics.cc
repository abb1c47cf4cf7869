#include "attncache/serve/metrics.h"

#include <algorithm>
#include <charconv>
#include <cmath>

namespace attncache::serve {
namespace {

std::string escape(const std::string& s) {
  std::string out;
  for (char c : s) {
    if (c == '\\' || c == '"') {
      out += '\\';
      out += c;
    } else if (c == '\n') {
      out += "\\n";
    } else {
      out += c;
    }
  }
  return out;
}

std::string number(double v) {
  if (std::isinf(v)) return v > 0 ? "+Inf" : "-Inf";
  if (v == std::floor(v) && std::fabs(v) < 1e15) return std::to_string(static_cast<int64_t>(v));
  char buf[32];
  auto r = std::to_chars(buf, buf + sizeof buf, v);
  return std::string(buf, r.ptr);
}

std::string label_text(const std::vector<std::string>& names, const Labels& values,
                       const std::string& extra = "") {
  std::string out;
  for (size_t i = 0; i < names.size() && i < values.size(); ++i) {
    if (!out.empty()) out += ',';
    out += names[i] + "=\"" + escape(values[i]) + '"';
  }
  if (!extra.empty()) {
    if (!out.empty()) out += ',';
    out += extra;
  }
  return out.empty() ? "" : "{" + out + "}";
}

}  // namespace

void Metrics::Histogram::observe(const Labels& labels, double v) {
  std::vector<uint64_t>& b = buckets[labels];
  b.resize(bounds.size());
  for (size_t i = 0; i < bounds.size(); ++i) b[i] += v <= bounds[i];
  sums[labels] += v;
  ++counts[labels];
}

Metrics::Metrics() {
  latency_.bounds = {0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10};
  batch_inputs_.bounds = {1, 2, 4, 8, 16, 32, 64, 128, 256};
  batch_seconds_.bounds = latency_.bounds;
  families_ = {
      {"attncache_http_requests_total",
       "HTTP requests answered, by route and status code",
       "counter",
       {"route", "code"},
       {},
       nullptr},
      {"attncache_http_errors_total",
       "Error responses, by route and OpenAI error type",
       "counter",
       {"route", "type"},
       {},
       nullptr},
      {"attncache_http_request_duration_seconds",
       "Time from a request's routing to its response, by route",
       "histogram",
       {"route"},
       {},
       &latency_},
      {"attncache_requests_shed_total",
       "Requests refused for load: queue_full (503), tenant_limit (429), shutting_down (503)",
       "counter",
       {"reason"},
       {},
       nullptr},
      {"attncache_batch_inputs", "Inputs per forward batch", "histogram", {}, {}, &batch_inputs_},
      {"attncache_batches_total",
       "Forward batches, by where they ran: gpu, or cpu (also after a GPU failure)",
       "counter",
       {"device"},
       {},
       nullptr},
      {"attncache_batch_duration_seconds",
       "Model time per forward batch",
       "histogram",
       {},
       {},
       &batch_seconds_},
      {"attncache_tokens_total",
       "Input tokens processed, by route",
       "counter",
       {"route"},
       {},
       nullptr},
      {"attncache_queue_depth", "Inputs waiting for the model", "gauge", {}, {}, nullptr},
      {"attncache_inflight_requests",
       "Requests admitted and not yet answered",
       "gauge",
       {},
       {},
       nullptr},
      {"attncache_cache_lookups_total",
       "AttnCache lookups (inputs of a tenant with a map database), by tenant",
       "counter",
       {"tenant"},
       {},
       nullptr},
      {"attncache_cache_hits_total",
       "AttnCache hits (stored maps reused), by tenant",
       "counter",
       {"tenant"},
       {},
       nullptr},
      {"attncache_mapped_bytes",
       "Bytes of map database files mapped, by tenant namespace",
       "gauge",
       {"tenant"},
       {},
       nullptr},
  };
  set("attncache_queue_depth", {}, 0);
  set("attncache_inflight_requests", {}, 0);
}

Metrics::Family& Metrics::family(const std::string& name) {
  for (Family& f : families_) {
    if (f.name == name) return f;
  }
  return families_.front();  // unreachable: every name used is declared above
}

void Metrics::add(const std::string& name, const Labels& labels, double v) {
  family(name).values[labels] += v;
}

void Metrics::set(const std::string& name, const Labels& labels, double v) {
  family(name).values[labels] = v;
}

void Metrics::add_request(const std::string& route, int status, double seconds) {
  std::lock_guard lock(mu_);
  add("attncache_http_requests_total", {route, std::to_string(status)}, 1);
  if (seconds >= 0) latency_.observe({route}, seconds);
}

void Metrics::add_error(const std::string& route, const std::string& type) {
  std::lock_guard lock(mu_);
  add("attncache_http_errors_total", {route, type}, 1);
}

void Metrics::add_shed(const std::string& reason) {
  std::lock_guard lock(mu_);
  add("attncache_requests_shed_total", {reason}, 1);
}

void Metrics::add_batch(size_t inputs, double seconds, const std::string& device) {
  std::lock_guard lock(mu_);
  add("attncache_batches_total", {device}, 1);
  batch_inputs_.observe({}, static_cast<double>(inputs));
  batch_seconds_.observe({}, seconds);
}

void Metrics::add_lookups(const std::string& tenant, size_t lookups, size_t hits) {
  std::lock_guard lock(mu_);
  add("attncache_cache_lookups_total", {tenant}, static_cast<double>(lookups));
  add("attncache_cache_hits_total", {tenant}, static_cast<double>(hits));
}

void Metrics::add_tokens(const std::string& route, size_t tokens) {
  std::lock_guard lock(mu_);
  add("attncache_tokens_total", {route}, static_cast<double>(tokens));
}

void Metrics::set_queue_depth(size_t inputs) {
  std::lock_guard lock(mu_);
  set("attncache_queue_depth", {}, static_cast<double>(inputs));
}

void Metrics::set_inflight(int requests) {
  std::lock_guard lock(mu_);
  set("attncache_inflight_requests", {}, requests);
}

void Metrics::set_mapped_bytes(const std::string& tenant, uint64_t bytes) {
  std::lock_guard lock(mu_);
  set("attncache_mapped_bytes", {tenant}, static_cast<double>(bytes));
}

std::string Metrics::render() const {
  std::lock_guard lock(mu_);
  std::string out;
  for (const Family& f : families_) {
    out += "# HELP " + f.name + ' ' + f.help + '\n';
    out += "# TYPE " + f.name + ' ' + f.type + '\n';
    if (f.histogram == nullptr) {
      for (const auto& [labels, v] : f.values) {
        out += f.name + label_text(f.label_names, labels) + ' ' + number(v) + '\n';
      }
      continue;
    }
    const Histogram& h = *f.histogram;
    for (const auto& [labels, counts] : h.buckets) {
      for (size_t i = 0; i < h.bounds.size(); ++i) {
        out += f.name + "_bucket" +
               label_text(f.label_names, labels, "le=\"" + number(h.bounds[i]) + '"') + ' ' +
               number(static_cast<double>(counts[i])) + '\n';
      }
      const uint64_t n = h.counts.at(labels);
      out += f.name + "_bucket" + label_text(f.label_names, labels, "le=\"+Inf\"") + ' ' +
             number(static_cast<double>(n)) + '\n';
      out += f.name + "_sum" + label_text(f.label_names, labels) + ' ' + number(h.sums.at(labels)) +
             '\n';
      out += f.name + "_count" + label_text(f.label_names, labels) + ' ' +
             number(static_cast<double>(n)) + '\n';
    }
  }
  return out;
}

}  // namespace attncache::serve
