// Commands of the attention-map memoization database: `attncache build` (collect maps, train
// the projector, index) and `attncache eval` (hit rate, fidelity and speed on a query workload).
#pragma once

#include <CLI/CLI.hpp>

namespace attncache::cli {

void add_build_command(CLI::App& app);
void add_eval_command(CLI::App& app);

}  // namespace attncache::cli
