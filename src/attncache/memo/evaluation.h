// Evaluation of AttnCache on a query workload, the way a systems reviewer accepts it: the exact
// path, an exact-input result cache (the honest baseline for repeats), AttnCache, and both
// together, timed side by side on the same batches with lookup and map loading inside the timed
// region; fidelity of the cached embeddings on hits and on a retrieval task; per-hit ratios
// comparable with the paper's; and a threshold sweep.
#pragma once

#include <cstdint>
#include <nlohmann/json.hpp>
#include <vector>

#include "attncache/memo/attn_cache.h"
#include "attncache/memo/map_database.h"

namespace attncache::memo {

struct EvalOptions {
  double threshold = 0.995;
  ReusePolicy policy;
  HitVerification verification;
  int batch = 32;
  std::vector<double> sweep = {0.9, 0.95, 0.98, 0.99, 0.995, 0.998, 0.999};
  int per_hit_queries = 256;  // hits timed one against the other for the per-hit ratios
  int recall_k = 10;
  bool progress = false;
};

// `queries` are token id sequences, each at most the database's length limit.
nlohmann::json evaluate(PrefillModel& model, const MapDatabase& db,
                        const std::vector<std::vector<int32_t>>& queries,
                        const EvalOptions& options);

}  // namespace attncache::memo
