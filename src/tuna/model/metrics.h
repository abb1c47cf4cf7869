// The three telemetry metrics Tuna's performance database is keyed on, one per characteristic
// the paper names, each normalized per access so that it describes the workload rather than the
// length of the observation window:
//
//   page-migration rate   = (pgpromote_success + pgdemote_kswapd + pgdemote_direct)
//                           pages per million memory accesses
//   arithmetic intensity  = compute units per memory access
//   memory intensity      = LLC misses per thousand memory accesses
//
// All three can be read on Linux (/proc/vmstat; perf instructions, mem loads and LLC misses).
#pragma once

#include <array>

#include "tuna/tier/platform.h"

namespace tuna {

struct Metrics {
  double migration_per_maccess = 0;
  double compute_per_access = 0;
  double misses_per_kaccess = 0;
};

// Metrics of the accesses counted in `c` (a window's counter deltas, or a whole run).
Metrics metrics_of(const TierCounters& c);

// The metrics as a search vector: log(1 + x) compresses their ranges of several decades, so that
// nearness means a similar ratio rather than a similar difference.
std::array<float, 3> feature_vector(const Metrics& m);

}  // namespace tuna
