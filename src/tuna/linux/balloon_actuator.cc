#include "tuna/linux/balloon_actuator.h"

#include <linux/mempolicy.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <utility>

#include "core/error.h"
#include "tuna/linux/nodes.h"

namespace tuna::linux_tier {
namespace {

std::string mib(uint64_t bytes) { return core::cat(bytes >> 20, " MiB"); }

std::string memlock_limit() {
  rlimit limit{};
  if (::getrlimit(RLIMIT_MEMLOCK, &limit) != 0) return "unknown";
  return limit.rlim_cur == RLIM_INFINITY ? "unlimited" : mib(limit.rlim_cur);
}

}  // namespace

uint64_t balloon_chunks(uint64_t capacity_bytes, uint64_t bytes) {
  if (bytes >= capacity_bytes) return 0;
  return (capacity_bytes - bytes + kBalloonChunkBytes - 1) / kBalloonChunkBytes;
}

BalloonActuator::BalloonActuator(int fast_node, std::string root)
    : fast_node_(fast_node), root_(std::move(root)) {
  if (fast_node < 0) core::throw_bad_input("balloon: node ", fast_node, " is not a NUMA node");
}

BalloonActuator::~BalloonActuator() {
  while (!chunks_.empty()) shrink();
}

std::string BalloonActuator::apply(uint64_t bytes, bool dry_run) {
  const uint64_t capacity = read_node(root_, fast_node_).mem_total_bytes;
  const uint64_t chunks = balloon_chunks(capacity, bytes);
  if (chunks == chunks_.size()) return "";
  const std::string line = core::cat("balloon on node ", fast_node_, ": ", mib(pinned_bytes()),
                                     " -> ", mib(chunks * kBalloonChunkBytes), " pinned\n");
  if (dry_run) return line;
  while (chunks_.size() > chunks) shrink();
  while (chunks_.size() < chunks) grow();
  return line;
}

void BalloonActuator::grow() {
  void* chunk = ::mmap(nullptr, kBalloonChunkBytes, PROT_READ | PROT_WRITE,
                       MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (chunk == MAP_FAILED) {
    core::throw_internal("mmap of a 2 MiB balloon chunk failed: ", std::strerror(errno));
  }
  // The policy must be in place before the pages exist, so bind first and let mlock fault them.
  const size_t words = static_cast<size_t>(fast_node_) / 64 + 1;
  std::vector<unsigned long> nodemask(words, 0);
  nodemask[fast_node_ / 64] = 1ul << (fast_node_ % 64);
  // maxnode counts one past the mask's bits: the kernel drops the last one (get_nodes).
  if (::syscall(SYS_mbind, chunk, kBalloonChunkBytes, MPOL_BIND, nodemask.data(), words * 64 + 1,
                0) != 0) {
    const int err = errno;
    ::munmap(chunk, kBalloonChunkBytes);
    core::throw_bad_input("mbind(MPOL_BIND, node ", fast_node_, ") failed: ", std::strerror(err),
                          " (errno ", err, ")",
                          err == EPERM ? "; containers may need CAP_SYS_NICE for mbind" : "",
                          err == EINVAL ? "; is the node online and holding memory?" : "");
  }
  if (::mlock(chunk, kBalloonChunkBytes) != 0) {
    const int err = errno;
    ::munmap(chunk, kBalloonChunkBytes);
    core::throw_bad_input("mlock of a 2 MiB balloon chunk on node ", fast_node_,
                          " failed: ", std::strerror(err), " (errno ", err, ") with ",
                          mib(pinned_bytes()), " already pinned; RLIMIT_MEMLOCK is ",
                          memlock_limit(),
                          ": raise it (ulimit -l, systemd LimitMEMLOCK=) or run with "
                          "CAP_IPC_LOCK");
  }
  chunks_.push_back(chunk);
}

void BalloonActuator::shrink() {
  // munmap also unlocks.
  ::munmap(chunks_.back(), kBalloonChunkBytes);
  chunks_.pop_back();
}

uint64_t BalloonActuator::pinned_bytes_on_node() const {
  const uint64_t page = static_cast<uint64_t>(::sysconf(_SC_PAGESIZE));
  std::vector<void*> pages;
  for (void* chunk : chunks_) {
    for (uint64_t offset = 0; offset < kBalloonChunkBytes; offset += page) {
      pages.push_back(static_cast<char*>(chunk) + offset);
    }
  }
  if (pages.empty()) return 0;
  // With no target nodes, move_pages only reports where each page is.
  std::vector<int> status(pages.size(), -1);
  if (::syscall(SYS_move_pages, 0, pages.size(), pages.data(), nullptr, status.data(), 0) != 0) {
    core::throw_internal("move_pages (query) failed: ", std::strerror(errno));
  }
  uint64_t on_node = 0;
  for (const int node : status) on_node += node == fast_node_ ? page : 0;
  return on_node;
}

}  // namespace tuna::linux_tier
