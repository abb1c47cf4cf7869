#include "tuna/linux/vmstat.h"

#include <string_view>
#include <utility>

#include "core/error.h"
#include "tuna/linux/proc_text.h"

namespace tuna::linux_tier {

VmStat read_vmstat_file(const std::string& path) {
  const std::vector<std::string> lines = read_proc_lines(path);
  VmStat vmstat;
  for (size_t i = 0; i < lines.size(); ++i) {
    const std::vector<std::string_view> fields = split_fields(lines[i]);
    if (fields.empty()) continue;
    uint64_t value = 0;
    if (fields.size() != 2 || !parse_u64(fields[1], &value)) {
      core::throw_bad_input(path, ":", i + 1, ": expected 'name value', got '", lines[i], "'");
    }
    vmstat[std::string(fields[0])] = value;
  }
  return vmstat;
}

VmStat read_vmstat(const std::string& root) {
  return read_vmstat_file(under_root(root, "proc/vmstat"));
}

std::vector<std::string> fill_migration_counters(const VmStat& vmstat, TierCounters* counters) {
  const std::pair<const char*, uint64_t TierCounters::*> fields[] = {
      {"pgpromote_success", &TierCounters::pgpromote_success},
      {"pgpromote_candidate", &TierCounters::pgpromote_candidate},
      {"pgdemote_kswapd", &TierCounters::pgdemote_kswapd},
      {"pgdemote_direct", &TierCounters::pgdemote_direct},
      {"numa_hint_faults", &TierCounters::numa_hint_faults},
      {"numa_pages_migrated", &TierCounters::numa_pages_migrated},
      {"pgmigrate_success", &TierCounters::pgmigrate_success},
  };
  std::vector<std::string> missing;
  for (const auto& [key, field] : fields) {
    const auto it = vmstat.find(key);
    if (it == vmstat.end()) missing.emplace_back(key);
    counters->*field = it == vmstat.end() ? 0 : it->second;
  }
  return missing;
}

}  // namespace tuna::linux_tier
