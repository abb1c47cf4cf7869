#include "tuna/linux/telemetry.h"

#include <utility>

#include "tuna/linux/vmstat.h"

namespace tuna::linux_tier {

TierCounters counters_between(const TelemetrySnapshot& before, const TelemetrySnapshot& after) {
  TierCounters c = tuna::counters_between(before.totals, after.totals);
  c.elapsed_ns = std::chrono::duration<double, std::nano>(after.time - before.time).count();
  return c;
}

LinuxTelemetry::LinuxTelemetry(std::string root, std::unique_ptr<PerfCounters> perf)
    : root_(std::move(root)), perf_(std::move(perf)) {
  if (perf_) perf_->start();
}

TelemetrySnapshot LinuxTelemetry::snapshot() const {
  TelemetrySnapshot s;
  s.time = std::chrono::steady_clock::now();
  s.missing_keys = fill_migration_counters(read_vmstat(root_), &s.totals);
  if (perf_) {
    const PerfValues values = perf_->read();
    s.totals.compute_units = values.instructions;
    s.totals.llc_misses = values.llc_misses;
  }
  return s;
}

}  // namespace tuna::linux_tier
