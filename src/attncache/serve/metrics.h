// The server's Prometheus metrics: counters and gauges keyed by label values, and cumulative
// histograms with fixed buckets, rendered in the text exposition format (version 0.0.4) for
// GET /metrics. Thread-safe; every update takes one mutex, which costs far less than the
// requests it counts.
#pragma once

#include <cstdint>
#include <map>
#include <mutex>
#include <string>
#include <vector>

namespace attncache::serve {

// Label values in the order of the family's label names.
using Labels = std::vector<std::string>;

class Metrics {
 public:
  Metrics();

  // seconds < 0: not timed (counted, not observed in the latency histogram).
  void add_request(const std::string& route, int status, double seconds);
  void add_error(const std::string& route, const std::string& type);
  void add_shed(const std::string& reason);
  // `device`: where the batch ran, "cpu" or "gpu".
  void add_batch(size_t inputs, double seconds, const std::string& device);
  void add_lookups(const std::string& tenant, size_t lookups, size_t hits);
  void add_tokens(const std::string& route, size_t tokens);
  void set_queue_depth(size_t inputs);
  void set_inflight(int requests);
  void set_mapped_bytes(const std::string& tenant, uint64_t bytes);

  // The text exposition format.
  std::string render() const;

 private:
  struct Histogram {
    std::vector<double> bounds;
    std::map<Labels, std::vector<uint64_t>> buckets;  // per label set: one count per bound
    std::map<Labels, double> sums;
    std::map<Labels, uint64_t> counts;
    void observe(const Labels& labels, double v);
  };
  struct Family {
    std::string name, help, type;
    std::vector<std::string> label_names;
    std::map<Labels, double> values;  // counters and gauges
    Histogram* histogram = nullptr;
  };

  Family& family(const std::string& name);
  void add(const std::string& name, const Labels& labels, double v);
  void set(const std::string& name, const Labels& labels, double v);

  mutable std::mutex mu_;
  std::vector<Family> families_;
  Histogram latency_, batch_inputs_, batch_seconds_;
};

}  // namespace attncache::serve
