// Hardware counters from perf_event_open(2): instructions retired and last-level-cache misses
// (PERF_COUNT_HW_INSTRUCTIONS, PERF_COUNT_HW_CACHE_MISSES), user space only, for one process.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <string>

namespace tuna::linux_tier {

struct PerfValues {
  uint64_t instructions = 0;
  uint64_t llc_misses = 0;
};

class PerfCounters {
 public:
  // Opens both counters, stopped, on `pid` (0: the calling thread), inheriting into the threads
  // and children it creates afterwards; threads that already exist are not counted, so open the
  // counters before the workload starts its threads. `root` locates
  // <root>/proc/sys/kernel/perf_event_paranoid for the error message. Throws core::Error naming
  // errno and perf_event_paranoid: bad input when the kernel refuses (EACCES, EPERM), internal
  // when the CPU or hypervisor has no such event (ENOENT, EOPNOTSUPP) or anything else fails.
  explicit PerfCounters(pid_t pid = 0, const std::string& root = "/");
  PerfCounters(const PerfCounters&) = delete;
  PerfCounters& operator=(const PerfCounters&) = delete;
  ~PerfCounters();

  void start();  // resets both counters to 0 and enables them
  void stop();
  // Counts since start(). Where the PMU multiplexed the counters, scaled by enabled / running
  // time as perf(1) does. Throws core::Error (internal) when a read fails.
  PerfValues read() const;

 private:
  int instructions_fd_ = -1;
  int llc_misses_fd_ = -1;
};

}  // namespace tuna::linux_tier
