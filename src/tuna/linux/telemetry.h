// Tuna's telemetry on a Linux machine: TierCounters over an interval, from /proc/vmstat's
// migration counters and, where perf is permitted, the workload's instructions and LLC misses.
// Not measured here: accesses, fast_accesses and slow_accesses (they need the CPU's memory-load
// events by data source, which differ per vendor); they stay 0.
#pragma once

#include <chrono>
#include <memory>
#include <string>
#include <vector>

#include "tuna/linux/perf_counters.h"
#include "tuna/tier/platform.h"

namespace tuna::linux_tier {

struct TelemetrySnapshot {
  TierCounters totals;                    // cumulative counts; elapsed_ns unused
  std::vector<std::string> missing_keys;  // vmstat keys this kernel lacks (counted 0)
  std::chrono::steady_clock::time_point time;
};

// What happened between two snapshots: counter differences (0 where a counter went backwards,
// which only a reset does) and elapsed_ns between their times.
TierCounters counters_between(const TelemetrySnapshot& before, const TelemetrySnapshot& after);

class LinuxTelemetry {
 public:
  // Reads <root>/proc/vmstat; with `perf`, starts it and adds instructions (as compute_units)
  // and LLC misses to every snapshot. Without it those two stay 0.
  explicit LinuxTelemetry(std::string root = "/", std::unique_ptr<PerfCounters> perf = nullptr);

  // Throws core::Error (bad input) when vmstat is missing or malformed.
  TelemetrySnapshot snapshot() const;

 private:
  std::string root_;
  std::unique_ptr<PerfCounters> perf_;
};

}  // namespace tuna::linux_tier
