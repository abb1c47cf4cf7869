// Tuna's sizing rule, as the paper describes it: observe the workload's telemetry at its current
// fast-memory size, find the micro-benchmark settings whose telemetry at that size is nearest in
// the performance database, take their measured slowdown curves as the prediction, and choose
// the smallest size whose predicted slowdown stays within the target. The memory-tuning
// controller applies it and re-tunes at the next tuning interval with the telemetry observed at
// the new size, until the choice settles.
#pragma once

#include <functional>
#include <vector>

#include "tuna/model/perf_db.h"

namespace tuna {

struct AdviseOptions {
  double target = 0.05;       // allowed slowdown against all-fast
  int neighbors = 5;          // settings whose curves are averaged
  int max_steps = 6;          // tuning intervals before giving up on convergence
  double resolution = 0.01;   // sizes are chosen in steps of this fraction of the footprint
};

struct TuningStep {
  double fast_ratio = 1;  // size the step ran at
  Metrics metrics;        // telemetry observed at that size
  std::vector<SettingMatch> matches;
  double chosen_ratio = 1;          // the size chosen for the next interval
  double predicted_slowdown = 0;    // predicted at the chosen size
  double simulated_ns = 0;          // length of the tuning interval
};

struct Advice {
  std::vector<TuningStep> steps;
  double fast_ratio = 1;
  double predicted_slowdown = 0;
  bool converged = false;
};

// Inverse-distance-weighted mean of the matched settings' slowdowns at `fast_ratio`.
double predict_slowdown(const PerfDatabase& db, const std::vector<SettingMatch>& matches,
                        double fast_ratio);

// The smallest multiple of `resolution` from which every larger size is predicted within
// `target` (1 if none is).
double minimal_predicted_ratio(const PerfDatabase& db, const std::vector<SettingMatch>& matches,
                               double target, double resolution);

// Runs the controller: `run_at(ratio)` runs one tuning interval of the workload with that fast
// memory and returns its counters. Starts at full fast memory.
Advice advise(const PerfDatabase& db, const std::function<TierCounters(double)>& run_at,
              const AdviseOptions& options);

}  // namespace tuna
