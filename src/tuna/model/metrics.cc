#include "tuna/model/metrics.h"

#include <cmath>

namespace tuna {

Metrics metrics_of(const TierCounters& c) {
  Metrics m;
  if (c.accesses == 0) return m;
  const double n = static_cast<double>(c.accesses);
  m.migration_per_maccess =
      static_cast<double>(c.pgpromote_success + c.pgdemote_kswapd + c.pgdemote_direct) / n * 1e6;
  m.compute_per_access = static_cast<double>(c.compute_units) / n;
  m.misses_per_kaccess = static_cast<double>(c.llc_misses) / n * 1e3;
  return m;
}

std::array<float, 3> feature_vector(const Metrics& m) {
  return {static_cast<float>(std::log1p(m.migration_per_maccess)),
          static_cast<float>(std::log1p(m.compute_per_access)),
          static_cast<float>(std::log1p(m.misses_per_kaccess))};
}

}  // namespace tuna
