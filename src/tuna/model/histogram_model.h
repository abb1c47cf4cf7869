// Ours, beside Tuna's rule: a size-invariant model with a closed-loop guard.
//
// Tuna's telemetry, taken at one size, says little about another. An access-frequency histogram
// does: observed once at full fast memory (LLC misses per page, what PEBS or DAMON sample on
// Linux), it gives the slow-tier misses at every size — those on the pages that do not fit among
// the hottest. A slowdown model turns misses into time:
//
//   extra(r) = misses · outside(usable(r)) · stall_per_miss · (ρ − 1)
//   slowdown(r) = α · extra(r) / elapsed + β
//
// with ρ = slow/fast latency, usable(r) the fast memory left above the watermark TPP keeps free,
// and α, β fitted on the micro-benchmark profiles (α > 1: TPP places pages worse than by
// hotness). The guard then runs at the chosen size and measures what it can observe there —
// the slow tier's stall, hint faults, promotions — to estimate the actual slowdown. Until it has
// seen a size over the target it shrinks at half speed towards the model's choice (corrected by
// the ratio of observed to predicted); once it has, the observations bracket the answer and it
// bisects, which grows fast from an unsafe size. It keeps the smallest size observed within the
// target, and stops within half a margin under it.
#pragma once

#include <functional>
#include <vector>

#include "tuna/tier/platform.h"

namespace tuna {

// One observation at full fast memory.
struct WorkloadProfile {
  std::vector<double> outside;  // [k]: share of LLC misses outside the hottest k% of pages
  double misses = 0;
  double stall_per_miss_ns = 0;  // memory-stall time per LLC miss
  double elapsed_ns = 0;
  uint64_t footprint_pages = 0;
};

// Builds a profile from the page of every LLC miss, in order: the LRU stack distance of each
// miss (distinct pages touched since that page's previous miss, Mattson's algorithm over a
// Fenwick tree) says whether a fast tier of any given number of pages, kept by recency, would
// have held it. TPP keeps the fast tier roughly by recency — new pages are allocated there,
// kswapd demotes from the inactive LRU tail, re-accessed slow pages are promoted — so one pass
// gives the slow-tier misses at every size. A page's first miss is its allocation, which lands
// on the fast node whenever it has room.
class ProfileBuilder {
 public:
  explicit ProfileBuilder(uint64_t footprint_pages);
  void add_miss(uint64_t page);
  WorkloadProfile finish(const TierCounters& c) const;
  // The profile of the misses since the previous window (or the start), with `c` the counters of
  // that window as they would read at full fast memory (as_if_all_fast). Stack distances still
  // span the whole history, so a window sees reuse across its start.
  WorkloadProfile take_window(const TierCounters& c);

 private:
  void mark(size_t t, int delta);
  uint64_t marks_before(size_t t) const;  // marks at times < t
  void compact();

  uint64_t pages_;
  std::vector<int64_t> last_;     // per page: time of its previous miss, −1: none
  std::vector<int32_t> tree_;     // Fenwick tree over times: 1 where a page's latest miss is
  size_t now_ = 0;                // the next time
  std::vector<double> by_bin_;    // misses by stack distance in % of the footprint (0 … 100)
  double misses_ = 0;
  std::vector<double> window_start_bins_;  // by_bin_ and misses_ when the window began
  double window_start_misses_ = 0;
};

struct PlatformCosts {
  double latency_ratio = 2.2;  // ρ: slow-tier over fast-tier latency
  double hint_fault_ns = 0;    // per NUMA hint fault, as the workload sees it
  double migrate_page_ns = 0;  // per promotion, as the workload sees it
  // Usable fast memory (fraction of the footprint) at a fast-memory ratio.
  std::function<double(double ratio, uint64_t footprint_pages)> usable;
};

struct SlowdownModel {
  double alpha = 1, beta = 0;
};

// The physical term: extra time over elapsed at full fast memory.
double slow_traffic_cost(const WorkloadProfile& p, const PlatformCosts& costs, double ratio);
double predict_slowdown(const SlowdownModel& m, const WorkloadProfile& p,
                        const PlatformCosts& costs, double ratio);

struct CalibrationPoint {
  double cost;      // slow_traffic_cost
  double slowdown;  // measured
};
// Least squares of slowdown = α·cost + β (α ≥ 0), each run weighted 1/(slowdown + 5%).
SlowdownModel calibrate(const std::vector<CalibrationPoint>& points);

// The slowdown a run shows in its own counters: the stall its slow-tier misses added (their
// stall time, of which 1/ρ they would have cost on the fast tier; PEBS load-latency samples
// by data source measure it on Linux), plus the hint faults and promotions it took, over the
// rest of its time.
double observed_slowdown(const TierCounters& c, const PlatformCosts& costs);
// The counters as they would read at full fast memory: that extra time and stall taken out.
TierCounters as_if_all_fast(const TierCounters& c, const PlatformCosts& costs);

struct GuardOptions {
  double target = 0.05;
  double margin = 0.01;  // the model aims this far under the target; the guard stops within half
  double shrink_step = 0.02;  // the least a shrink moves
  int max_steps = 10;  // tuning intervals, the observation at full fast memory included
  double resolution = 0.01;
};

struct GuardStep {
  double fast_ratio;
  double predicted;  // the (corrected) model at this size
  double observed;   // observed_slowdown at this size
};

struct GuardedChoice {
  double fast_ratio = 1;
  double predicted_slowdown = 0;  // by the calibrated model from the profile alone
  double confidence = 0;          // observed / predicted at the final size (1: the model agreed)
  std::vector<GuardStep> steps;
  WorkloadProfile profile;
};

// `run_at(ratio, observe)` runs one tuning interval, with its access profile if `observe`. The
// first runs at full fast memory and observes; the rest run at the sizes the guard chooses.
GuardedChoice choose_with_guard(
    const SlowdownModel& model, const PlatformCosts& costs,
    const std::function<std::pair<TierCounters, WorkloadProfile>(double, bool)>& run_at,
    const GuardOptions& options);

}  // namespace tuna
