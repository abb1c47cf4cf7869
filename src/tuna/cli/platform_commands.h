// `tuna sim` (one run on the simulated tiered machine) and `tuna oracle` (the true minimal
// fast-memory size for a target, by sweeping).
#pragma once

#include <CLI/CLI.hpp>

namespace tuna::cli {

void add_sim_command(CLI::App& app);
void add_oracle_command(CLI::App& app);

}  // namespace tuna::cli
