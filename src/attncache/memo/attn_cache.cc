#include "attncache/memo/attn_cache.h"

#include <algorithm>
#include <cmath>
#include <numeric>
#include <sstream>

#include "attncache/kernels/stored_maps.h"
#include "attncache/model/attention_hook.h"
#include "core/error.h"

namespace attncache::memo {
namespace {

// Serves each sequence's stored maps from the mapped database; with verification, records
// layer 0 of each candidate and decides at layer 1 whether the stored maps are close enough.
class StoredMapsHook : public AttentionHook {
 public:
  StoredMapsHook(const MapDatabase& db, const std::vector<int64_t>& entries, ReusePolicy policy,
                 HitVerification verification)
      : db_(db),
        entries_(entries),
        policy_(policy),
        verification_(verification),
        recorded_(entries.size()),
        tv_(entries.size(), NAN) {}

  float* record(int layer, int seq, int n_tokens) override {
    if (!verification_.enabled || layer != 0 || entries_[seq] < 0) return nullptr;
    recorded_[seq].resize(static_cast<size_t>(db_.heads()) *
                          cpu::attention_map_size(n_tokens, db_.causal()));
    return recorded_[seq].data();
  }

  StoredProbs stored(int layer, int seq, int n_tokens) override {
    const int64_t e = entries_[seq];
    if (e < 0 || ((policy_.layers >> layer) & 1u) == 0) return {};
    const MapEntry entry = db_.entry(static_cast<size_t>(e));
    if (entry.n_tokens != n_tokens) {
      core::throw_internal("stored maps of entry ", e, " have ", entry.n_tokens,
                           " tokens, the input has ", n_tokens);
    }
    if (verification_.enabled) {
      if (layer == 0) return {};
      if (std::isnan(tv_[seq])) tv_[seq] = measured_tv(seq, entry);
      if (!(tv_[seq] <= verification_.max_tv)) return {};
    }
    return {entry.maps + layer * db_.layer_map_bytes(n_tokens), db_.map_dtype(), policy_.heads};
  }

  const std::vector<float>& layer0_tv() const { return tv_; }

 private:
  // Mean over heads and query rows of ½‖P_query[i,:] − P_stored[i,:]‖₁ at layer 0, over at most
  // kCheckedRows evenly strided rows per head: misses with a candidate pay for this check, and
  // at 512 tokens all rows cost about 2% of a forward pass.
  float measured_tv(int seq, const MapEntry& entry) const {
    constexpr int kCheckedRows = 64;
    const int n = entry.n_tokens;
    const bool causal = db_.causal();
    const int stride = std::max(1, (n + kCheckedRows - 1) / kCheckedRows);
    std::vector<float> stored(static_cast<size_t>(n)), mine(static_cast<size_t>(n));
    double sum = 0;
    long rows = 0;
    for (int h = 0; h < db_.heads(); ++h) {
      for (int i = 0; i < n; i += stride, ++rows) {
        const size_t offset = static_cast<size_t>(h) * cpu::attention_map_size(n, causal) +
                              cpu::attention_map_row(n, i, causal);
        const int cols = causal ? i + 1 : n;
        stored_map_row(entry.maps, db_.map_dtype(), n, causal, h, i, cols, stored.data());
        // Compare what would be stored: the measured row rounded to the database's format, so
        // that storage rounding alone (large for P8 and P4) does not count as a difference.
        stored_round_trip(db_.map_dtype(), recorded_[seq].data() + offset, cols, mine.data());
        float row = 0;
        for (int j = 0; j < cols; ++j) row += std::fabs(mine[j] - stored[j]);
        sum += row;
      }
    }
    return static_cast<float>(0.5 * sum / std::max(1L, rows));
  }

  const MapDatabase& db_;
  const std::vector<int64_t>& entries_;
  ReusePolicy policy_;
  HitVerification verification_;
  std::vector<std::vector<float>> recorded_;
  std::vector<float> tv_;
};

}  // namespace

uint64_t ReusePolicy::parse_mask(const std::string& spec, int count, const std::string& what) {
  if (spec == "all") return ~0ull;
  uint64_t mask = 0;
  std::stringstream in(spec);
  std::string part;
  while (std::getline(in, part, ',')) {
    int lo = -1, hi = -1;
    char dash = 0;
    std::stringstream p(part);
    if (!(p >> lo)) core::throw_bad_input(what, " '", spec, "': expected indices like 0-3,5");
    hi = lo;
    if (p >> dash) {
      if (dash != '-' || !(p >> hi)) core::throw_bad_input(what, " '", spec, "': bad range");
    }
    if (lo < 0 || hi < lo || hi >= count || hi >= 64) {
      core::throw_bad_input(what, " '", spec, "': indices must lie in 0..", count - 1);
    }
    for (int i = lo; i <= hi; ++i) mask |= 1ull << i;
  }
  if (mask == 0) core::throw_bad_input(what, " '", spec, "' selects nothing");
  return mask;
}

AttnCache::AttnCache(PrefillModel& model, const MapDatabase& db, double threshold,
                     ReusePolicy policy, HitVerification verification)
    : model_(model), db_(db), threshold_(threshold), policy_(policy), verification_(verification) {
  if (!(threshold >= 0.0 && threshold <= 1.0)) {
    core::throw_bad_input("threshold ", threshold,
                          " is out of range: it must lie in [0, 1] (hit "
                          "when 1 − squared projector distance ≥ threshold)");
  }
}

Lookup AttnCache::lookup(const std::vector<int32_t>& ids) const {
  Lookup result;
  const int n = static_cast<int>(ids.size());
  const auto [first, last] = db_.length_range(n);
  if (first >= last) return result;
  const Projector& projector = db_.projector();
  // Per-thread scratch: a 512-token input's features are 0.8 MB, which malloc would map and
  // unmap on every lookup (page faults, and mmap_lock contention between threads).
  thread_local std::vector<float> features, pooled, query;
  features.resize(static_cast<size_t>(n) * projector.model_dim());
  pooled.resize(projector.input_dim());
  query.resize(Projector::kOut);
  model_.layer0_input(ids, features.data());
  projector.pool(features.data(), n, pooled.data());
  projector.project(pooled.data(), query.data());
  const core::Neighbor nearest = db_.index().search(query.data(), 1, first, last)[0];
  if (nearest.id < 0) return result;
  result.entry = nearest.id;
  result.distance = nearest.distance;
  result.hit = 1.0 - nearest.distance >= threshold_;
  return result;
}

std::vector<Lookup> AttnCache::lookup_batch(const std::vector<std::vector<int32_t>>& batch) const {
  std::vector<Lookup> found(batch.size());
  const int n = static_cast<int>(batch.size());
#pragma omp parallel for schedule(dynamic) if (n > 1)
  for (int s = 0; s < n; ++s) found[s] = lookup(batch[s]);
  return found;
}

std::vector<float> AttnCache::embed(const std::vector<std::vector<int32_t>>& batch,
                                    std::vector<Lookup>* lookups) {
  std::vector<Lookup> found = lookup_batch(batch);
  std::vector<int64_t> entries(batch.size(), -1);
  for (size_t s = 0; s < batch.size(); ++s) {
    if (found[s].hit) entries[s] = found[s].entry;
  }
  std::vector<float> tv;
  std::vector<float> out = embed_with(batch, entries, &tv);
  if (verification_.enabled) {
    for (size_t s = 0; s < batch.size(); ++s) {
      found[s].layer0_tv = tv[s];
      found[s].hit = found[s].hit && tv[s] <= verification_.max_tv;
    }
  }
  if (lookups != nullptr) *lookups = found;
  return out;
}

std::vector<float> AttnCache::embed_with(const std::vector<std::vector<int32_t>>& batch,
                                         const std::vector<int64_t>& entries,
                                         std::vector<float>* layer0_tv) {
  // Misses first, then hits, so each layer projects Q, K, V for one run and V for the other.
  std::vector<size_t> order(batch.size());
  std::iota(order.begin(), order.end(), 0);
  std::stable_partition(order.begin(), order.end(), [&](size_t s) { return entries[s] < 0; });
  std::vector<std::vector<int32_t>> sorted(batch.size());
  std::vector<int64_t> sorted_entries(batch.size());
  for (size_t i = 0; i < order.size(); ++i) {
    sorted[i] = batch[order[i]];
    sorted_entries[i] = entries[order[i]];
  }
  StoredMapsHook hook(db_, sorted_entries, policy_, verification_);
  const std::vector<float> out = model_.embed(sorted, &hook);
  const int d = model_.dim();
  std::vector<float> result(out.size());
  for (size_t i = 0; i < order.size(); ++i) {
    std::copy_n(out.data() + i * d, d, result.data() + order[i] * d);
  }
  if (layer0_tv != nullptr) {
    layer0_tv->assign(batch.size(), NAN);
    for (size_t i = 0; i < order.size(); ++i) (*layer0_tv)[order[i]] = hook.layer0_tv()[i];
  }
  return result;
}

}  // namespace attncache::memo
