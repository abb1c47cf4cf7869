#include "tuna/model/online.h"

#include <algorithm>
#include <cmath>

#include "core/error.h"
#include "tuna/model/oracle.h"

namespace tuna {
namespace {

class TunaPolicy : public SizingPolicy {
 public:
  TunaPolicy(const PerfDatabase& db, const AdviseOptions& o) : db_(&db), o_(o) {
    check_target(o.target);
  }
  std::string name() const override { return "tuna"; }
  SizeDecision decide(const IntervalTelemetry& t) override {
    const std::vector<SettingMatch> matches =
        db_->nearest(metrics_of(t.window), t.fast_ratio, o_.neighbors);
    const double choice = minimal_predicted_ratio(*db_, matches, o_.target, o_.resolution);
    return {choice, predict_slowdown(*db_, matches, choice)};
  }

 private:
  const PerfDatabase* db_;
  AdviseOptions o_;
};

class GuardedPolicy : public SizingPolicy {
 public:
  GuardedPolicy(const SlowdownModel& model, const PlatformCosts& costs, const GuardOptions& o)
      : model_(model), costs_(costs), o_(o) {
    check_target(o.target);
  }
  std::string name() const override { return "ours"; }
  bool wants_profile() const override { return true; }

  SizeDecision decide(const IntervalTelemetry& t) override {
    const double r = t.fast_ratio;
    const double observed = observed_slowdown(t.window, costs_);
    auto model = [&](double x) { return predict_slowdown(model_, t.profile, costs_, x); };
    // A size seen over the target stays off limits until the profile says the workload got
    // lighter there (a phase change), or for a while, after which it may be probed again.
    if (floor_ >= 0 && (++floor_age_ > kFloorIntervals || model(floor_) < 0.5 * floor_model_)) {
      floor_ = -1;
    }
    // What this interval observed at its size corrects the model; at full fast memory there is
    // nothing to learn from (the model predicts about β there).
    if (r < 1 - o_.resolution / 2 && model(r) > 1e-4) {
      correction_ = std::clamp(observed / model(r), 0.25, 8.0);
    } else {
      correction_ = std::sqrt(correction_);  // learnt elsewhere: trust it less and less
    }
    auto corrected = [&](double x) { return correction_ * model(x); };
    const double choice = smallest_ratio_within(corrected, o_.target - o_.margin, o_.resolution);
    double next = r;
    if (observed > o_.target) {
      floor_ = r, floor_model_ = model(r), floor_age_ = 0;
      // Grow at once: to the corrected model's choice, but at most halfway to all fast memory
      // per interval (a correction learnt over a transient can be far too large).
      next = std::max(std::min(choice, (r + 1) / 2), r + 2 * o_.shrink_step);
    } else if (observed < o_.target - o_.margin / 2 && choice < r) {
      next = std::max(choice, std::min(r - o_.shrink_step, (r + choice) / 2));
      if (floor_ >= 0) next = std::max(next, floor_ + o_.resolution);
      next = std::min(next, r);
    }
    next = std::clamp(std::round(next / o_.resolution) * o_.resolution, 0.0, 1.0);
    return {next, corrected(next)};
  }

 private:
  static constexpr int kFloorIntervals = 10;
  SlowdownModel model_;
  PlatformCosts costs_;
  GuardOptions o_;
  double correction_ = 1;
  double floor_ = -1, floor_model_ = 0;  // the largest size seen over the target (−1: none)
  int floor_age_ = 0;
};

}  // namespace

std::unique_ptr<SizingPolicy> make_tuna_policy(const PerfDatabase& db, const AdviseOptions& o) {
  return std::make_unique<TunaPolicy>(db, o);
}

std::unique_ptr<SizingPolicy> make_guarded_policy(const SlowdownModel& model,
                                                  const PlatformCosts& costs,
                                                  const GuardOptions& o) {
  return std::make_unique<GuardedPolicy>(model, costs, o);
}

MemoryTuningController::MemoryTuningController(SizingPolicy& policy, FastMemoryActuator& actuator,
                                               uint64_t footprint_bytes,
                                               const PlatformCosts& costs, ProfileBuilder* profile)
    : policy_(&policy),
      actuator_(&actuator),
      footprint_bytes_(footprint_bytes),
      costs_(costs),
      profile_(profile) {
  if (policy.wants_profile() && profile == nullptr) {
    core::throw_internal("the ", policy.name(), " policy needs the workload's miss profile");
  }
}

ControllerStep MemoryTuningController::close_interval(const TierCounters& cumulative,
                                                      IntervalTelemetry* t) {
  ControllerStep s;
  s.start_ns = last_.elapsed_ns;
  s.end_ns = cumulative.elapsed_ns;
  s.fast_ratio = ratio_;
  s.predicted = predicted_;
  s.window = counters_between(last_, cumulative);
  s.observed = observed_slowdown(s.window, costs_);
  s.next_ratio = ratio_;
  last_ = cumulative;
  t->fast_ratio = ratio_;
  t->window = s.window;
  if (profile_ != nullptr) t->profile = profile_->take_window(as_if_all_fast(s.window, costs_));
  return s;
}

void MemoryTuningController::on_interval(const TierCounters& cumulative) {
  IntervalTelemetry t;
  ControllerStep s = close_interval(cumulative, &t);
  if (s.window.accesses > 0) {
    const SizeDecision d = policy_->decide(t);
    s.next_ratio = d.fast_ratio;
    if (std::abs(d.fast_ratio - ratio_) > 1e-9) {
      actuator_->apply(static_cast<uint64_t>(d.fast_ratio * static_cast<double>(footprint_bytes_)),
                       false);
    }
    ratio_ = d.fast_ratio;
    predicted_ = d.predicted;
  }
  steps_.push_back(s);
}

void MemoryTuningController::finish(const TierCounters& cumulative) {
  IntervalTelemetry t;
  const ControllerStep s = close_interval(cumulative, &t);
  if (s.end_ns > s.start_ns) steps_.push_back(s);
}

}  // namespace tuna
