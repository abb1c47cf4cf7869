#include "tuna/model/accuracy.h"

#include <algorithm>
#include <cmath>

#include "tuna/model/advisor.h"

namespace tuna {

ErrorStats error_stats(std::vector<double> errors) {
  ErrorStats s;
  s.points = errors.size();
  if (errors.empty()) return s;
  std::sort(errors.begin(), errors.end());
  for (double e : errors) s.mean += e;
  s.mean /= static_cast<double>(errors.size());
  s.p95 = errors[std::min(errors.size() - 1,
                          static_cast<size_t>(std::ceil(0.95 * static_cast<double>(errors.size()))) - 1)];
  s.max = errors.back();
  return s;
}

AccuracyReport leave_one_setting_out(const PerfDatabase& db, const PlatformCosts& costs,
                                     int neighbors) {
  const size_t full = db.nearest_ratio_index(1.0);
  std::vector<double> tuna_errors, ours_errors, tuna_near, ours_near;
  for (uint32_t s = 0; s < db.setting_count(); ++s) {
    const Metrics& observed = db.runs()[full * db.setting_count() + s].metrics;
    const std::vector<SettingMatch> matches =
        db.nearest(observed, db.ratios()[full], neighbors, s);
    const SlowdownModel model = calibrate(db, costs, {s});
    for (size_t r = 0; r < db.ratios().size(); ++r) {
      const double ratio = db.ratios()[r];
      const double measured = db.slowdown(s, ratio);
      tuna_errors.push_back(std::abs(predict_slowdown(db, matches, ratio) - measured));
      ours_errors.push_back(
          std::abs(predict_slowdown(model, db.profiles()[s], costs, ratio) - measured));
      if (measured <= 0.15) {
        tuna_near.push_back(tuna_errors.back());
        ours_near.push_back(ours_errors.back());
      }
    }
  }
  return {error_stats(tuna_errors), error_stats(ours_errors), error_stats(tuna_near),
          error_stats(ours_near)};
}

}  // namespace tuna
