// Limits the fast memory a workload may use by occupying the rest: anonymous memory bound to the
// fast node (mbind MPOL_BIND) and locked (mlock) so that neither reclaim nor TPP's demotion can
// move it. Works without root where RLIMIT_MEMLOCK allows the pinned size; the kernel makes
// room for each chunk by reclaiming (on a tiered machine, demoting) the node's other pages.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "tuna/tier/platform.h"

namespace tuna::linux_tier {

// 2 MiB chunks: the balloon grows and shrinks by one huge page worth at a time.
constexpr uint64_t kBalloonChunkBytes = uint64_t{2} << 20;

// Chunks that leave at most `bytes` of `capacity_bytes` unpinned: ⌈(capacity − bytes) / chunk⌉,
// 0 when bytes ≥ capacity.
uint64_t balloon_chunks(uint64_t capacity_bytes, uint64_t bytes);

class BalloonActuator : public FastMemoryActuator {
 public:
  // The node's capacity is MemTotal of <root>/sys/devices/system/node/node<fast_node>/meminfo,
  // read at each apply(). Throws core::Error (bad input) for a negative node.
  explicit BalloonActuator(int fast_node, std::string root = "/");
  BalloonActuator(const BalloonActuator&) = delete;
  BalloonActuator& operator=(const BalloonActuator&) = delete;
  ~BalloonActuator() override;  // unpins everything

  std::string name() const override { return "balloon"; }
  // Pins capacity − bytes (in whole chunks) on the fast node: one line "balloon on node 0: 4 MiB
  // -> 12 MiB pinned", none when the size does not change. Throws core::Error (bad input) when
  // the kernel refuses mbind (EPERM: needs CAP_SYS_NICE in some containers; EINVAL: no such
  // node) or mlock (naming RLIMIT_MEMLOCK); the chunks pinned before the failure stay pinned.
  std::string apply(uint64_t bytes, bool dry_run) override;

  uint64_t pinned_bytes() const { return chunks_.size() * kBalloonChunkBytes; }
  // Of the pinned bytes, those the kernel reports (move_pages) on the fast node: all of them
  // unless the node filled up while binding. Throws core::Error (internal) when the query fails.
  uint64_t pinned_bytes_on_node() const;

 private:
  void grow();    // pins one chunk
  void shrink();  // unpins the last chunk

  int fast_node_;
  std::string root_;
  std::vector<void*> chunks_;
};

}  // namespace tuna::linux_tier
