// Offline profiling: the micro-benchmark over a grid of knob settings × fast-memory ratios on the
// simulated platform, each run's telemetry metrics and measured slowdown going into the
// performance database. Runs are journaled as they finish, so an interrupted profile resumes
// where it stopped.
#pragma once

#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "tuna/microbench/microbench.h"
#include "tuna/runner.h"

namespace tuna {

struct ProfileGrid {
  std::vector<MicrobenchOptions> settings;
  std::vector<double> ratios;
};

// 72 settings (hot-set size, hot share, compute, dependent accesses, hot-set moves) × 11 ratios.
ProfileGrid default_grid();
// {"base": {knobs}, "axes": {"knob": [values], …}, "ratios": [r, …]}: the cartesian product of
// the axes over the base knobs (knob names as in to_json(MicrobenchOptions)). Throws
// core::Error (bad input) naming what is wrong.
ProfileGrid grid_from_json(const nlohmann::json& j);
nlohmann::json to_json(const ProfileGrid& grid);

// Profiles every setting at every ratio (plus once all-fast, the reference) into the database
// at `dir`, journaling each run to dir/journal.jsonl and skipping runs already journaled by an
// earlier, interrupted call with the same grid and platform; `jobs` settings run in parallel.
// Throws core::Error (bad input) when the journal belongs to another grid or platform, or is
// corrupt before its last line.
void profile(const std::string& dir, const ProfileGrid& grid, const MachineOptions& machine,
             int jobs, bool show_progress);

}  // namespace tuna
