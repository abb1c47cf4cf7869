// `tuna tune`: one run of a workload under the online memory-tuning controller, ours and Tuna's
// rule side by side.
#pragma once

#include <CLI/CLI.hpp>

namespace tuna::cli {

void add_tune_command(CLI::App& app);

}  // namespace tuna::cli
