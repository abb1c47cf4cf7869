#include "tuna/linux/perf_counters.h"

#include <linux/perf_event.h>
#include <sys/ioctl.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <fstream>

#include "core/error.h"
#include "tuna/linux/proc_text.h"

namespace tuna::linux_tier {
namespace {

// The paranoia level for the error message, or why it is unknown; never throws, since the
// message is already about a failure.
std::string paranoid_level(const std::string& root) {
  const std::string path = under_root(root, "proc/sys/kernel/perf_event_paranoid");
  std::ifstream in(path);
  std::string level;
  if (!(in >> level)) return path + " unreadable";
  return path + " is " + level;
}

int open_counter(uint64_t config, const char* name, pid_t pid, const std::string& root) {
  perf_event_attr attr;
  std::memset(&attr, 0, sizeof(attr));
  attr.size = sizeof(attr);
  attr.type = PERF_TYPE_HARDWARE;
  attr.config = config;
  attr.disabled = 1;
  attr.inherit = 1;
  // Kernel events need perf_event_paranoid <= 1; the workload's own are what Tuna models.
  attr.exclude_kernel = 1;
  attr.exclude_hv = 1;
  attr.read_format = PERF_FORMAT_TOTAL_TIME_ENABLED | PERF_FORMAT_TOTAL_TIME_RUNNING;
  const long fd = ::syscall(SYS_perf_event_open, &attr, pid, -1, -1, PERF_FLAG_FD_CLOEXEC);
  if (fd >= 0) return static_cast<int>(fd);
  const int err = errno;
  const std::string reason =
      core::cat("perf_event_open(", name, ", pid ", pid, ") failed: ", std::strerror(err),
                " (errno ", err, "); ", paranoid_level(root));
  if (err == EACCES || err == EPERM) {
    core::throw_bad_input(reason,
                          ": lower it (sysctl kernel.perf_event_paranoid=2 allows a "
                          "process's own user-space events) or run with CAP_PERFMON");
  }
  if (err == ENOENT || err == EOPNOTSUPP) {
    core::throw_internal(reason, ": this CPU or hypervisor exposes no such hardware event");
  }
  core::throw_internal(reason);
}

void control(int fd, unsigned long request, const char* what) {
  if (::ioctl(fd, request, 0) != 0) {
    core::throw_internal("perf counter ", what, " failed: ", std::strerror(errno));
  }
}

uint64_t read_scaled(int fd) {
  uint64_t values[3] = {0, 0, 0};  // value, time enabled, time running
  if (::read(fd, values, sizeof(values)) != static_cast<ssize_t>(sizeof(values))) {
    core::throw_internal("reading a perf counter failed: ", std::strerror(errno));
  }
  if (values[2] == 0 || values[2] >= values[1]) return values[0];
  return static_cast<uint64_t>(static_cast<long double>(values[0]) * values[1] / values[2]);
}

}  // namespace

PerfCounters::PerfCounters(pid_t pid, const std::string& root)
    : instructions_fd_(open_counter(PERF_COUNT_HW_INSTRUCTIONS, "instructions", pid, root)) {
  try {
    llc_misses_fd_ = open_counter(PERF_COUNT_HW_CACHE_MISSES, "cache-misses", pid, root);
  } catch (...) {
    ::close(instructions_fd_);
    throw;
  }
}

PerfCounters::~PerfCounters() {
  ::close(instructions_fd_);
  ::close(llc_misses_fd_);
}

void PerfCounters::start() {
  for (const int fd : {instructions_fd_, llc_misses_fd_}) {
    control(fd, PERF_EVENT_IOC_RESET, "reset");
    control(fd, PERF_EVENT_IOC_ENABLE, "enable");
  }
}

void PerfCounters::stop() {
  for (const int fd : {instructions_fd_, llc_misses_fd_})
    control(fd, PERF_EVENT_IOC_DISABLE, "disable");
}

PerfValues PerfCounters::read() const {
  return PerfValues{.instructions = read_scaled(instructions_fd_),
                    .llc_misses = read_scaled(llc_misses_fd_)};
}

}  // namespace tuna::linux_tier
