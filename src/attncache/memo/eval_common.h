// What the CPU and GPU workload evaluations share: the exact-input result cache (the honest
// baseline for repeated inputs), per-path timing, and small statistics.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <functional>
#include <nlohmann/json.hpp>
#include <numeric>
#include <span>
#include <string>
#include <unordered_map>
#include <vector>

#include "attncache/memo/map_database.h"

namespace attncache::memo {

using Batch = std::vector<std::vector<int32_t>>;

inline std::string key_of(std::span<const int32_t> ids) {
  return {reinterpret_cast<const char*>(ids.data()), ids.size() * sizeof(int32_t)};
}

// Remembers the embedding of every input seen, seeded with the database's own inputs.
class ExactResultCache {
 public:
  ExactResultCache(const MapDatabase& db, int dim) : dim_(dim) {
    for (size_t i = 0; i < db.size(); ++i) {
      const MapEntry e = db.entry(i);
      map_.emplace(key_of(e.ids), std::vector<float>(e.embedding.begin(), e.embedding.end()));
    }
  }
  // Embeds `batch`, computing only inputs never seen before (with `compute`). Counts hits.
  std::vector<float> embed(const Batch& batch,
                           const std::function<std::vector<float>(const Batch&)>& compute) {
    std::vector<float> out(batch.size() * dim_);
    Batch missing;
    std::vector<size_t> where;
    for (size_t s = 0; s < batch.size(); ++s) {
      auto it = map_.find(key_of(batch[s]));
      if (it != map_.end()) {
        std::copy(it->second.begin(), it->second.end(), out.begin() + s * dim_);
        ++hits_;
      } else {
        missing.push_back(batch[s]);
        where.push_back(s);
      }
    }
    if (!missing.empty()) {
      const std::vector<float> computed = compute(missing);
      for (size_t i = 0; i < where.size(); ++i) {
        std::copy_n(computed.begin() + i * dim_, dim_, out.begin() + where[i] * dim_);
        map_[key_of(missing[i])] =
            std::vector<float>(computed.begin() + i * dim_, computed.begin() + (i + 1) * dim_);
      }
    }
    return out;
  }
  size_t hits() const { return hits_; }

 private:
  int dim_;
  size_t hits_ = 0;
  std::unordered_map<std::string, std::vector<float>> map_;
};

inline double cosine(const float* a, const float* b, int d) {
  double ab = 0, aa = 0, bb = 0;
  for (int k = 0; k < d; ++k)
    ab += double(a[k]) * b[k], aa += double(a[k]) * a[k], bb += double(b[k]) * b[k];
  return ab / std::max(1e-30, std::sqrt(aa * bb));
}

inline double percentile(std::vector<double> v, double p) {
  if (v.empty()) return NAN;
  std::sort(v.begin(), v.end());
  const double pos = p / 100.0 * (v.size() - 1);
  const size_t lo = static_cast<size_t>(pos);
  const size_t hi = std::min(v.size() - 1, lo + 1);
  return v[lo] + (v[hi] - v[lo]) * (pos - lo);
}

inline nlohmann::json stats(const std::vector<double>& v) {
  if (v.empty()) return {{"count", 0}};
  const double mean = std::accumulate(v.begin(), v.end(), 0.0) / v.size();
  return {{"count", v.size()},
          {"mean", mean},
          {"p5", percentile(v, 5)},
          {"min", *std::min_element(v.begin(), v.end())}};
}

struct PathTimes {
  double total = 0;
  std::vector<double> batch_seconds;
  nlohmann::json to_json(size_t queries) const {
    std::vector<double> b = batch_seconds;
    return {{"seconds", total},
            {"queries_per_second", queries / std::max(total, 1e-12)},
            {"mean_ms_per_query", 1e3 * total / std::max<size_t>(1, queries)},
            {"batch_latency_ms_p50", 1e3 * percentile(b, 50)},
            {"batch_latency_ms_p95", 1e3 * percentile(b, 95)}};
  }
};

}  // namespace attncache::memo
