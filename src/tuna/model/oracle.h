// The oracle: the true minimal fast-memory ratio for a slowdown target, found by running the
// workload — a coarse sweep (0, 0.1, …, 1) up to the first ratio that meets the target, then
// bisection between it and the ratio below. It assumes the slowdown curve does not rise with
// more fast memory; under TPP a curve can wiggle, so the answer is the smallest ratio found, not
// necessarily the smallest that exists.
#pragma once

#include <functional>
#include <optional>
#include <vector>

namespace tuna {

struct CurvePoint {
  double fast_ratio;
  double slowdown;
};

struct OracleResult {
  std::optional<double> minimal_ratio;  // none: even all fast memory misses the target
  std::vector<CurvePoint> curve;        // every ratio run, in ratio order
};

// The smallest multiple of `resolution` from which `slowdown_at` (a prediction, cheap to call)
// stays within `goal` at every larger multiple up to 1; 1 if none is.
double smallest_ratio_within(const std::function<double(double)>& slowdown_at, double goal,
                             double resolution);

// Throws core::Error (bad input) unless 0 < target < 1.
void check_target(double target);

// `slowdown_at(ratio)` runs the workload; `on_sweep_step` (optional) is called after each of the
// 11 sweep points, for progress.
OracleResult find_minimal_ratio(const std::function<double(double)>& slowdown_at, double target,
                                double precision,
                                const std::function<void()>& on_sweep_step = nullptr);

}  // namespace tuna
