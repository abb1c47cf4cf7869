// The Linux side from the command line: `tuna telemetry` (Tuna's counters from /proc/vmstat, per
// interval) and `tuna apply` (limit a workload's fast memory with watermarks or a pinned
// balloon; --dry-run prints what would change).
#pragma once

#include <CLI/CLI.hpp>

namespace tuna::cli {

void add_telemetry_command(CLI::App& app);
void add_apply_command(CLI::App& app);

}  // namespace tuna::cli
