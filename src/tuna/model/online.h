// The memory-tuning controller, online: at the end of every tuning interval of a running
// workload it reads the interval's telemetry, lets a sizing policy choose the fast memory for the
// next interval, and applies it through an actuator (the simulator's capacity, Linux watermarks
// or a pinned balloon). Two policies, side by side:
//
// * Tuna's rule, re-applied every interval: the interval's three metrics at the current size,
//   the nearest micro-benchmark settings in the performance database, the smallest size their
//   curves predict within the target.
// * Ours: the interval's miss profile (LRU stack distances, which do not depend on the size the
//   interval ran at) through the calibrated slowdown model, corrected by what the interval
//   observed at its size, with a guard — shrink at most halfway towards the model's choice per
//   interval, grow at once to the corrected choice when an interval goes over the target, and do
//   not return below a size seen over the target until the profile says the workload changed.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "tuna/model/advisor.h"
#include "tuna/model/histogram_model.h"
#include "tuna/tier/platform.h"

namespace tuna {

struct IntervalTelemetry {
  double fast_ratio = 1;      // the size the interval ran at
  TierCounters window;        // counter differences over the interval
  WorkloadProfile profile;    // the interval's miss profile (for policies that want it)
};

struct SizeDecision {
  double fast_ratio = 1;  // for the next interval
  double predicted = 0;   // slowdown predicted there
};

class SizingPolicy {
 public:
  virtual ~SizingPolicy() = default;
  virtual std::string name() const = 0;
  virtual bool wants_profile() const { return false; }
  virtual SizeDecision decide(const IntervalTelemetry& t) = 0;
};

std::unique_ptr<SizingPolicy> make_tuna_policy(const PerfDatabase& db, const AdviseOptions& o);
std::unique_ptr<SizingPolicy> make_guarded_policy(const SlowdownModel& model,
                                                  const PlatformCosts& costs,
                                                  const GuardOptions& o);

struct ControllerStep {
  double start_ns = 0, end_ns = 0;
  double fast_ratio = 1;   // during the interval
  double observed = 0;     // observed_slowdown of the interval
  double predicted = 0;    // what the previous decision predicted for this interval
  double next_ratio = 1;   // decided at its end
  TierCounters window;
};

class MemoryTuningController {
 public:
  // `profile` receives the workload's misses (when the policy wants a profile); may be null.
  MemoryTuningController(SizingPolicy& policy, FastMemoryActuator& actuator,
                         uint64_t footprint_bytes, const PlatformCosts& costs,
                         ProfileBuilder* profile);
  // At the end of a tuning interval: `cumulative` counters since the start of the run.
  void on_interval(const TierCounters& cumulative);
  // At the end of the run: records the last, partial interval without deciding.
  void finish(const TierCounters& cumulative);
  const std::vector<ControllerStep>& steps() const { return steps_; }

 private:
  ControllerStep close_interval(const TierCounters& cumulative, IntervalTelemetry* t);

  SizingPolicy* policy_;
  FastMemoryActuator* actuator_;
  uint64_t footprint_bytes_;
  PlatformCosts costs_;
  ProfileBuilder* profile_;
  TierCounters last_;
  double ratio_ = 1, predicted_ = 0;
  std::vector<ControllerStep> steps_;
};

}  // namespace tuna
