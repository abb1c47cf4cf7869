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

#include "attncache/memo/attn_cache.h"
#include "attncache/memo/map_database.h"
#include "core/progress.h"
#include "core/stopwatch.h"

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

inline std::vector<Batch> split_batches(const Batch& queries, size_t size) {
  std::vector<Batch> batches;
  for (size_t b0 = 0; b0 < queries.size(); b0 += size) {
    batches.emplace_back(queries.begin() + b0,
                         queries.begin() + std::min(queries.size(), b0 + size));
  }
  return batches;
}

using EmbedFn = std::function<std::vector<float>(const Batch&)>;
using CachedEmbedFn = std::function<std::vector<float>(const Batch&, std::vector<Lookup>*)>;

// The four paths of a workload over the same batches: exact, AttnCache, the exact-input result
// cache, and the result cache with AttnCache behind it.
struct FourPaths {
  PathTimes exact, attncache, result_cache, combined;
  std::vector<float> exact_out, attncache_out;  // [queries × dim]
  std::vector<Lookup> lookups;                  // AttnCache's, per query
  size_t result_cache_hits = 0;
};

// Runs the four paths batch by batch, their order rotated from one batch to the next so that
// drift in machine speed falls on all of them alike. `combined` is AttnCache for the inputs the
// result cache has not seen.
inline FourPaths time_four_paths(const std::vector<Batch>& batches, int d, const MapDatabase& db,
                                 const EmbedFn& exact, const CachedEmbedFn& attncache,
                                 const EmbedFn& combined, core::Progress& progress) {
  size_t q = 0;
  for (const Batch& b : batches) q += b.size();
  FourPaths r;
  r.exact_out.resize(q * d);
  r.attncache_out.resize(q * d);
  r.lookups.resize(q);
  ExactResultCache result_cache(db, d), combined_cache(db, d);
  size_t b0 = 0;
  for (size_t index = 0; index < batches.size(); ++index) {
    const Batch& batch = batches[index];
    for (int turn = 0; turn < 4; ++turn) {
      const int path = static_cast<int>((turn + index) % 4);
      std::vector<Lookup> found;
      core::Stopwatch w;
      std::vector<float> out;
      switch (path) {
        case 0:
          out = exact(batch);
          break;
        case 1:
          out = attncache(batch, &found);
          break;
        case 2:
          out = result_cache.embed(batch, exact);
          break;
        default:
          out = combined_cache.embed(batch, combined);
      }
      const double s = w.seconds();
      PathTimes& t = path == 0   ? r.exact
                     : path == 1 ? r.attncache
                     : path == 2 ? r.result_cache
                                 : r.combined;
      t.total += s;
      t.batch_seconds.push_back(s);
      if (path == 0) std::copy(out.begin(), out.end(), r.exact_out.begin() + b0 * d);
      if (path == 1) {
        std::copy(out.begin(), out.end(), r.attncache_out.begin() + b0 * d);
        std::copy(found.begin(), found.end(), r.lookups.begin() + b0);
      }
    }
    b0 += batch.size();
    progress.advance(batch.size());
  }
  r.result_cache_hits = result_cache.hits();
  return r;
}

}  // namespace attncache::memo
