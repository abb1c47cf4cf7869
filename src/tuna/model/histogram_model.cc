#include "tuna/model/histogram_model.h"

#include <algorithm>
#include <cmath>
#include <functional>

#include "core/error.h"
#include "tuna/model/oracle.h"

namespace tuna {
namespace {

constexpr int kPoints = 101;  // outside[] at 0%, 1%, …, 100%

double interpolate(const std::vector<double>& curve, double ratio) {
  const double x = std::clamp(ratio, 0.0, 1.0) * (kPoints - 1);
  const int i = std::min(static_cast<int>(x), kPoints - 2);
  return curve[i] + (x - i) * (curve[i + 1] - curve[i]);
}

}  // namespace

ProfileBuilder::ProfileBuilder(uint64_t footprint_pages)
    : pages_(std::max<uint64_t>(footprint_pages, 1)),
      last_(pages_, -1),
      tree_(std::max<uint64_t>(4 * pages_, 1 << 20) + 1, 0),
      by_bin_(kPoints, 0),
      window_start_bins_(kPoints, 0) {}

void ProfileBuilder::mark(size_t t, int delta) {
  for (size_t i = t + 1; i < tree_.size(); i += i & (~i + 1)) tree_[i] += delta;
}

uint64_t ProfileBuilder::marks_before(size_t t) const {
  int64_t sum = 0;
  for (size_t i = t; i > 0; i -= i & (~i + 1)) sum += tree_[i];
  return static_cast<uint64_t>(sum);
}

// Renumbers the latest miss times 0, 1, … in their order, so the tree never runs out of times.
void ProfileBuilder::compact() {
  std::vector<std::pair<int64_t, uint64_t>> latest;  // (time, page)
  for (uint64_t p = 0; p < pages_; ++p) {
    if (last_[p] >= 0) latest.emplace_back(last_[p], p);
  }
  std::sort(latest.begin(), latest.end());
  std::fill(tree_.begin(), tree_.end(), 0);
  now_ = 0;
  for (const auto& [time, page] : latest) {
    last_[page] = static_cast<int64_t>(now_);
    mark(now_++, 1);
  }
}

void ProfileBuilder::add_miss(uint64_t page) {
  if (page >= pages_) return;  // outside the declared footprint: cannot happen in a verified run
  if (now_ + 1 >= tree_.size()) compact();
  misses_ += 1;
  if (last_[page] >= 0) {
    const auto previous = static_cast<size_t>(last_[page]);
    const uint64_t distance = marks_before(now_) - marks_before(previous + 1);
    const auto bin = std::min<uint64_t>(distance * 100 / pages_, kPoints - 1);
    by_bin_[bin] += 1;
    mark(previous, -1);
  }
  last_[page] = static_cast<int64_t>(now_);
  mark(now_++, 1);
}

namespace {

WorkloadProfile profile_of(const std::vector<double>& by_bin, double binned_misses,
                           const TierCounters& c, uint64_t pages) {
  WorkloadProfile p;
  p.misses = static_cast<double>(c.llc_misses);
  p.stall_per_miss_ns = c.llc_misses > 0 ? c.miss_stall_ns / p.misses : 0;
  p.elapsed_ns = c.elapsed_ns;
  p.footprint_pages = pages;
  p.outside.assign(kPoints, 0);
  if (binned_misses <= 0) return p;
  // A fast tier of k% of the footprint holds the misses at stack distances below k%.
  double beyond = 0;
  for (int k = kPoints - 1; k >= 1; --k) {
    beyond += by_bin[k];
    p.outside[k] = beyond / binned_misses;
  }
  p.outside[0] = 1;  // no fast memory: everything, allocations included, is slow
  return p;
}

}  // namespace

WorkloadProfile ProfileBuilder::finish(const TierCounters& c) const {
  return profile_of(by_bin_, misses_, c, pages_);
}

WorkloadProfile ProfileBuilder::take_window(const TierCounters& c) {
  std::vector<double> bins(kPoints);
  for (int k = 0; k < kPoints; ++k) bins[k] = by_bin_[k] - window_start_bins_[k];
  const WorkloadProfile p = profile_of(bins, misses_ - window_start_misses_, c, pages_);
  window_start_bins_ = by_bin_;
  window_start_misses_ = misses_;
  return p;
}

double slow_traffic_cost(const WorkloadProfile& p, const PlatformCosts& costs, double ratio) {
  if (p.elapsed_ns <= 0 || p.outside.size() != kPoints) return 0;
  const double usable = costs.usable ? costs.usable(ratio, p.footprint_pages) : ratio;
  return p.misses * interpolate(p.outside, usable) * p.stall_per_miss_ns *
         (costs.latency_ratio - 1) / p.elapsed_ns;
}

double predict_slowdown(const SlowdownModel& m, const WorkloadProfile& p,
                        const PlatformCosts& costs, double ratio) {
  return m.alpha * slow_traffic_cost(p, costs, ratio) + m.beta;
}

SlowdownModel calibrate(const std::vector<CalibrationPoint>& points) {
  if (points.size() < 2) core::throw_bad_input("calibration needs at least two runs");
  // Weighted least squares, weight 1/(slowdown + 5%): decisions are made near the target, where
  // an error of a point matters; at 60% slowdown it does not.
  double sw = 0, sx = 0, sy = 0, sxx = 0, sxy = 0;
  for (const CalibrationPoint& q : points) {
    const double w = 1 / (std::max(q.slowdown, 0.0) + 0.05);
    sw += w, sx += w * q.cost, sy += w * q.slowdown, sxx += w * q.cost * q.cost;
    sxy += w * q.cost * q.slowdown;
  }
  const double var = sxx - sx * sx / sw;
  SlowdownModel m;
  m.alpha = var > 0 ? std::max(0.0, (sxy - sx * sy / sw) / var) : 1;
  m.beta = (sy - m.alpha * sx) / sw;
  return m;
}

namespace {

// The time a run lost to the slow tier: the stall its slow-tier misses added (of which 1/ρ they
// would have cost on the fast tier), plus its hint faults and promotions.
double extra_over_all_fast(const TierCounters& c, const PlatformCosts& costs) {
  return c.slow_stall_ns * (1 - 1 / costs.latency_ratio) +
         static_cast<double>(c.numa_hint_faults) * costs.hint_fault_ns +
         static_cast<double>(c.pgpromote_success) * costs.migrate_page_ns;
}

}  // namespace

double observed_slowdown(const TierCounters& c, const PlatformCosts& costs) {
  const double extra = extra_over_all_fast(c, costs);
  const double base = c.elapsed_ns - extra;
  return base > 0 ? extra / base : 0;
}

TierCounters as_if_all_fast(const TierCounters& c, const PlatformCosts& costs) {
  TierCounters f = c;
  f.elapsed_ns = std::max(0.0, c.elapsed_ns - extra_over_all_fast(c, costs));
  f.miss_stall_ns = std::max(0.0, c.miss_stall_ns - c.slow_stall_ns * (1 - 1 / costs.latency_ratio));
  f.slow_stall_ns = 0;
  return f;
}

GuardedChoice choose_with_guard(
    const SlowdownModel& model, const PlatformCosts& costs,
    const std::function<std::pair<TierCounters, WorkloadProfile>(double, bool)>& run_at,
    const GuardOptions& o) {
  check_target(o.target);
  GuardedChoice out;
  const auto [full, profile] = run_at(1.0, true);
  out.profile = profile;
  auto predicted = [&](double r) { return predict_slowdown(model, out.profile, costs, r); };
  auto on_grid = [&](double r) { return std::round(r / o.resolution) * o.resolution; };
  const double goal = o.target - o.margin;
  out.steps.push_back({1.0, predicted(1.0), observed_slowdown(full, costs)});
  out.predicted_slowdown = predicted(1.0);
  if (out.steps[0].observed > o.target) return out;  // even all fast memory misses the target
  // The observations bracket the answer: `safe` is the smallest size observed within the target,
  // `unsafe` the largest observed above it (−1: none yet).
  double safe = 1, unsafe = -1, safe_observed = out.steps[0].observed;
  double correction = 1;  // observed / predicted at the latest size
  double r = smallest_ratio_within(predicted, goal, o.resolution);
  out.predicted_slowdown = predicted(r);
  for (int step = 1; step < o.max_steps && r < safe - o.resolution / 2 && r > unsafe; ++step) {
    const double observed = observed_slowdown(run_at(r, false).first, costs);
    out.steps.push_back({r, correction * predicted(r), observed});
    if (observed <= o.target) {
      safe = r, safe_observed = observed;
    } else {
      unsafe = std::max(unsafe, r);
    }
    if (predicted(r) > 1e-4) correction = std::clamp(observed / predicted(r), 0.25, 8.0);
    if (safe_observed >= o.target - o.margin / 2) break;  // close enough under the target
    double next;
    if (unsafe >= 0) {
      // Bracketed: bisect. From an unsafe size this grows fast, halfway to the nearest safe one.
      if (safe - unsafe <= 2 * o.resolution) break;
      next = (safe + unsafe) / 2;
    } else {
      // Everything observed is safe: shrink halfway towards the corrected model's choice (at
      // least a step), since a correction learnt at one size is a poor guide far from it.
      const double choice = smallest_ratio_within(
          [&](double x) { return correction * predicted(x); }, goal, o.resolution);
      next = std::min(safe - o.shrink_step, (safe + choice) / 2);
    }
    r = std::clamp(on_grid(next), 0.0, 1.0);
  }
  out.fast_ratio = safe;
  for (const GuardStep& s : out.steps) {
    if (std::abs(s.fast_ratio - safe) < o.resolution / 2 && s.predicted > 1e-4) {
      out.confidence = s.observed / s.predicted;
    }
  }
  return out;
}

}  // namespace tuna
