// Runs workloads on the simulated tiered machine: the machine's options (shared by every `tuna`
// subcommand, and the fingerprint a performance database is tied to), one verified run at a
// fast-memory ratio, and counters as JSON.
#pragma once

#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>

#include "tuna/model/histogram_model.h"
#include "tuna/model/online.h"
#include "tuna/tier/sim/simulator.h"
#include "tuna/workloads/registry.h"

namespace tuna {

struct MachineOptions {
  MachineOptions() { config.time_scale = 1000; }
  sim::SimConfig config;
  uint64_t llc_mb = 32;
};

void add_machine_options(CLI::App* cmd, MachineOptions* m);
// Every option that changes simulated results, as JSON: two runs agree only if these do.
nlohmann::json machine_json(const MachineOptions& m);

nlohmann::json counters_json(const TierCounters& c);

struct RunResult {
  TierCounters counters;
  nlohmann::json series;  // counters_json per sampling interval, plus time and tier occupancy
  WorkloadProfile profile;  // the access profile, when asked for
};

// One run of a fresh workload instance at `fast_ratio` of its footprint; throws core::Error
// (internal) if the workload's verifier rejects its result.
RunResult run_workload(const WorkloadOptions& w, const MachineOptions& m, sim::Policy p,
                       double fast_ratio, bool observe_profile = false);
// The same for a workload instance the caller made (it runs once).
RunResult run_workload(Workload& workload, const MachineOptions& m, sim::Policy p,
                       double fast_ratio, bool observe_profile = false);

// One run under the memory-tuning controller: it starts with all fast memory and `policy`
// resizes the fast tier at the end of every tuning interval (`interval_ns` of Linux time, which
// the simulator dilates like TPP's clock).
struct TunedRun {
  RunResult run;
  std::vector<ControllerStep> steps;
};
TunedRun run_tuned(Workload& workload, const MachineOptions& m, SizingPolicy& policy,
                   double interval_ns);

// The machine's costs as our slowdown model sees them: the latency ratio, the per-event costs
// after time dilation, and the fast memory TPP leaves usable above its promo watermark.
PlatformCosts platform_costs(const MachineOptions& m);

// Elapsed simulated time of a run over that of an all-fast run, minus one.
inline double slowdown(const TierCounters& run, const TierCounters& all_fast) {
  return run.elapsed_ns / all_fast.elapsed_ns - 1;
}

}  // namespace tuna
