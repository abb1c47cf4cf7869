// How well each sizing model predicts slowdown, left one micro-benchmark setting out at a time:
// the setting's slowdown at every profiled ratio, predicted from the rest of the database —
// Tuna's way (its nearest neighbours by telemetry at full fast memory) and ours (the slowdown
// model calibrated without it, applied to its access histogram) — against what was measured.
#pragma once

#include <vector>

#include "tuna/model/perf_db.h"

namespace tuna {

struct ErrorStats {
  double mean = 0, p95 = 0, max = 0;  // of |predicted − measured| slowdown
  size_t points = 0;
};

ErrorStats error_stats(std::vector<double> errors);

struct AccuracyReport {
  ErrorStats tuna, ours;
  ErrorStats tuna_near_target, ours_near_target;  // where the measured slowdown is ≤ 15%
};

AccuracyReport leave_one_setting_out(const PerfDatabase& db, const PlatformCosts& costs,
                                     int neighbors);

}  // namespace tuna
