// /proc/vmstat: the kernel's event and state counters, among them the page-migration counters
// that TPP moves (pgpromote_*, pgdemote_*, numa_*, pgmigrate_*).
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "tuna/tier/platform.h"

namespace tuna::linux_tier {

using VmStat = std::map<std::string, uint64_t>;

// Parses a vmstat-format file ("name value" per line; also each node's
// /sys/devices/system/node/nodeN/vmstat). Throws core::Error (bad input) naming the path when it
// is missing, and the path and line when a line is not "name value".
VmStat read_vmstat_file(const std::string& path);

// <root>/proc/vmstat.
VmStat read_vmstat(const std::string& root = "/");

// Sets the migration counters of `counters` (pgpromote_success … pgmigrate_success) from `vmstat`.
// A key the kernel does not have yet (pgpromote_* and pgdemote_* arrived in 5.18/6.1, TPP's
// kernels) counts 0 so that older kernels still run; returns the missing keys so a caller can
// say that those counters are not measured rather than zero.
std::vector<std::string> fill_migration_counters(const VmStat& vmstat, TierCounters* counters);

}  // namespace tuna::linux_tier
