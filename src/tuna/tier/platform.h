// What Tuna needs from a tiered-memory platform (the simulator here, a Linux machine with a
// CPU-less slow node later): the fast-tier capacity, and telemetry under Linux's own names so
// that an operator recognizes them and a Linux implementation reads them from /proc/vmstat.
#pragma once

#include <algorithm>
#include <cstdint>
#include <string>

namespace tuna {

// Page-migration counters as /proc/vmstat names them, plus PMU-style counters.
struct TierCounters {
  uint64_t pgpromote_success = 0;    // pages promoted slow → fast
  uint64_t pgpromote_candidate = 0;  // hint faults on slow pages under the hot threshold
  uint64_t pgdemote_kswapd = 0;      // pages demoted fast → slow by kswapd
  uint64_t pgdemote_direct = 0;      // pages demoted in direct reclaim
  uint64_t numa_hint_faults = 0;     // NUMA hinting faults taken
  uint64_t numa_pages_migrated = 0;  // pages migrated by NUMA balancing (promotions)
  uint64_t pgmigrate_success = 0;    // every successful page migration
  uint64_t accesses = 0;             // memory accesses issued by the workload
  uint64_t llc_misses = 0;           // accesses that missed the last-level cache
  uint64_t fast_accesses = 0;        // LLC misses served by the fast tier
  uint64_t slow_accesses = 0;        // LLC misses served by the slow tier
  uint64_t compute_units = 0;        // work between accesses (instructions, roughly)
  double miss_stall_ns = 0;          // time charged to LLC misses (PMU: memory-stall cycles)
  double slow_stall_ns = 0;          // of which by slow-tier misses (PEBS load latency by source)
  double elapsed_ns = 0;
};

// What happened between two cumulative readings: differences of every counter (0 where one went
// backwards, which only a reset does) and of the times.
inline TierCounters counters_between(const TierCounters& before, const TierCounters& after) {
  TierCounters c;
  for (const auto field :
       {&TierCounters::pgpromote_success, &TierCounters::pgpromote_candidate,
        &TierCounters::pgdemote_kswapd, &TierCounters::pgdemote_direct,
        &TierCounters::numa_hint_faults, &TierCounters::numa_pages_migrated,
        &TierCounters::pgmigrate_success, &TierCounters::accesses, &TierCounters::llc_misses,
        &TierCounters::fast_accesses, &TierCounters::slow_accesses, &TierCounters::compute_units}) {
    c.*field = after.*field > before.*field ? after.*field - before.*field : 0;
  }
  for (const auto field :
       {&TierCounters::miss_stall_ns, &TierCounters::slow_stall_ns, &TierCounters::elapsed_ns}) {
    c.*field = std::max(0.0, after.*field - before.*field);
  }
  return c;
}

// How the memory-tuning controller limits the fast memory a workload may use: the simulator's
// fast-tier capacity, Linux watermarks, or a pinned balloon on the fast node.
class FastMemoryActuator {
 public:
  virtual ~FastMemoryActuator() = default;
  virtual std::string name() const = 0;
  // Limits the fast memory available to the workload to `bytes`. With `dry_run` nothing changes.
  // Returns what changed (or would change), one line per setting, for the operator.
  virtual std::string apply(uint64_t bytes, bool dry_run) = 0;
};

}  // namespace tuna
