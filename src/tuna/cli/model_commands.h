// Tuna itself: `tuna profile` (micro-benchmarks into the performance database), `tuna advise`
// (size one workload's fast memory for a target) and `tuna eval` (Tuna against the oracle and
// baselines over many workloads).
#pragma once

#include <CLI/CLI.hpp>

namespace tuna::cli {

void add_profile_command(CLI::App& app);
void add_advise_command(CLI::App& app);
void add_eval_command(CLI::App& app);
void add_accuracy_command(CLI::App& app);

}  // namespace tuna::cli
