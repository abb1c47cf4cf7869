#include "tuna/model/advisor.h"

#include <algorithm>
#include <cmath>

#include "core/error.h"
#include "tuna/model/oracle.h"

namespace tuna {

double predict_slowdown(const PerfDatabase& db, const std::vector<SettingMatch>& matches,
                        double fast_ratio) {
  double sum = 0, weights = 0;
  for (const SettingMatch& m : matches) {
    const double w = 1.0 / (std::sqrt(m.distance) + 1e-3);
    sum += w * db.slowdown(m.setting, fast_ratio);
    weights += w;
  }
  return weights > 0 ? sum / weights : 0;
}

double minimal_predicted_ratio(const PerfDatabase& db, const std::vector<SettingMatch>& matches,
                               double target, double resolution) {
  return smallest_ratio_within([&](double r) { return predict_slowdown(db, matches, r); }, target,
                               resolution);
}

Advice advise(const PerfDatabase& db, const std::function<TierCounters(double)>& run_at,
              const AdviseOptions& o) {
  check_target(o.target);
  Advice advice;
  double ratio = 1;
  for (int step = 0; step < o.max_steps; ++step) {
    TuningStep t;
    t.fast_ratio = ratio;
    const TierCounters c = run_at(ratio);
    t.simulated_ns = c.elapsed_ns;
    t.metrics = metrics_of(c);
    t.matches = db.nearest(t.metrics, ratio, o.neighbors);
    t.chosen_ratio = minimal_predicted_ratio(db, t.matches, o.target, o.resolution);
    t.predicted_slowdown = predict_slowdown(db, t.matches, t.chosen_ratio);
    advice.steps.push_back(t);
    if (std::abs(t.chosen_ratio - ratio) < o.resolution / 2) {
      advice.converged = true;
      break;
    }
    // A cycle between sizes settles on the largest size in it: the safe side of the target.
    for (size_t k = 0; k + 1 < advice.steps.size(); ++k) {
      if (std::abs(advice.steps[k].fast_ratio - t.chosen_ratio) < o.resolution / 2) {
        double largest = t.chosen_ratio;
        for (size_t i = k; i < advice.steps.size(); ++i) largest = std::max(largest, advice.steps[i].fast_ratio);
        advice.fast_ratio = largest;
        advice.predicted_slowdown = predict_slowdown(db, t.matches, largest);
        advice.converged = true;
        return advice;
      }
    }
    ratio = t.chosen_ratio;
  }
  advice.fast_ratio = advice.steps.back().chosen_ratio;
  advice.predicted_slowdown = advice.steps.back().predicted_slowdown;
  return advice;
}

}  // namespace tuna
