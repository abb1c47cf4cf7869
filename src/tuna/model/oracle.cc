#include "tuna/model/oracle.h"

#include <algorithm>
#include <cmath>

#include "core/error.h"

namespace tuna {

void check_target(double target) {
  if (!(target > 0 && target < 1)) {
    core::throw_bad_input("target ", target, " must lie in (0, 1), e.g. 0.05 for 5%");
  }
}

double smallest_ratio_within(const std::function<double(double)>& slowdown_at, double goal,
                             double resolution) {
  const int steps = static_cast<int>(std::lround(1 / resolution));
  int lowest = steps;
  for (int k = steps; k >= 0; --k) {
    if (slowdown_at(k * resolution) > goal) break;
    lowest = k;
  }
  return lowest * resolution;
}

OracleResult find_minimal_ratio(const std::function<double(double)>& slowdown_at, double target,
                                double precision, const std::function<void()>& on_sweep_step) {
  if (!(target >= 0 && target <= 1)) core::throw_bad_input("target ", target, " must lie in [0, 1]");
  if (!(precision > 0 && precision < 1)) core::throw_bad_input("precision must lie in (0, 1)");
  OracleResult out;
  auto measure = [&](double r) {
    const double s = slowdown_at(r);
    out.curve.push_back({r, s});
    return s;
  };
  double lo = 0, hi = 1;  // slowdown(lo) > target ≥ slowdown(hi)
  for (int k = 0; k <= 10; ++k) {
    const double r = k / 10.0;
    const bool meets = measure(r) <= target;
    if (on_sweep_step) on_sweep_step();
    if (meets) {
      hi = r;
      lo = std::max(0.0, r - 0.1);
      out.minimal_ratio = r;
      break;
    }
  }
  if (out.minimal_ratio && hi > 0) {
    while (hi - lo > precision) {
      const double mid = (lo + hi) / 2;
      (measure(mid) <= target ? hi : lo) = mid;
    }
    out.minimal_ratio = hi;
  }
  std::sort(out.curve.begin(), out.curve.end(),
            [](const CurvePoint& a, const CurvePoint& b) { return a.fast_ratio < b.fast_ratio; });
  return out;
}

}  // namespace tuna
