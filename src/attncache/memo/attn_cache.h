// AttnCache online: for each input, find the stored input whose attention maps are predicted to
// be closest (projector + Faiss, restricted to stored inputs of the same token count), and on a
// hit run the model with the neighbour's maps read straight from the mapped database.
#pragma once

#include <cmath>
#include <cstdint>
#include <string>
#include <vector>

#include "attncache/memo/map_database.h"

namespace attncache::memo {

// Which layers and heads take stored maps on a hit (all, as in the paper, by default).
struct ReusePolicy {
  uint64_t layers = ~0ull;
  uint64_t heads = ~0ull;
  // "all" or a comma list of indices and ranges ("0-3,5"); `count` bounds the indices.
  static uint64_t parse_mask(const std::string& spec, int count, const std::string& what);
};

// Ours, not the paper's: before reusing a neighbour's maps, check them. Layer 0 runs exactly for
// a candidate and its maps are compared with the neighbour's stored layer-0 maps (mean total
// variation distance over heads and rows); layers 1… reuse only if that distance is at most
// max_tv. The projector's prediction picks the candidate; the measurement accepts it. Costs one
// layer of attention per candidate; catches neighbours whose maps are not alike after all.
struct HitVerification {
  bool enabled = true;
  float max_tv = 0.02f;
};

struct Lookup {
  int64_t entry = -1;         // nearest stored input of the same length, -1 if none
  float distance = INFINITY;  // squared L2 between projections
  bool hit = false;           // 1 − distance ≥ threshold (and, with verification, verified)
  float layer0_tv = NAN;      // with verification: measured layer-0 distance to the candidate
};

class AttnCache {
 public:
  // The hit rule of the paper: 1 − D ≥ threshold, D the squared L2 distance; threshold in [0, 1].
  AttnCache(PrefillModel& model, const MapDatabase& db, double threshold, ReusePolicy policy = {},
            HitVerification verification = {});

  Lookup lookup(const std::vector<int32_t>& ids) const;
  // One lookup per input, the inputs spread over the OpenMP threads: on a GPU, a batch's exact
  // forward pass costs less than its lookups one after another.
  std::vector<Lookup> lookup_batch(const std::vector<std::vector<int32_t>>& batch) const;
  // Embeds a batch with stored maps for hits. Hits and misses share one forward pass, misses
  // first. `lookups` gets one result per input (in input order). Returns [batch × dim].
  std::vector<float> embed(const std::vector<std::vector<int32_t>>& batch,
                           std::vector<Lookup>* lookups = nullptr);
  // Embeds with the maps of given entries (-1: exact), bypassing lookup. With verification,
  // `layer0_tv` (if set) gets each candidate's measured layer-0 distance (NaN for -1 entries)
  // and a candidate beyond max_tv runs exactly.
  std::vector<float> embed_with(const std::vector<std::vector<int32_t>>& batch,
                                const std::vector<int64_t>& entries,
                                std::vector<float>* layer0_tv = nullptr);

  double threshold() const { return threshold_; }

 private:
  PrefillModel& model_;
  const MapDatabase& db_;
  double threshold_;
  ReusePolicy policy_;
  HitVerification verification_;
};

}  // namespace attncache::memo
