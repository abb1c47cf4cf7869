// A last-level cache filter: set-associative, 64-byte lines, true LRU within a set, so that only
// misses reach memory (and the tiers).
#pragma once

#include <cstdint>
#include <vector>

#include "core/huge_page_allocator.h"

namespace tuna::sim {

class LastLevelCache {
 public:
  // `bytes` total (a power of two times `ways` × 64), `ways` ≤ 16.
  LastLevelCache(uint64_t bytes, int ways);
  // True on a hit; on a miss the line is filled (evicting the set's least recently used).
  bool access(uint64_t address);
  uint64_t bytes() const { return sets_ * ways_ * 64; }

 private:
  // The simulator's speed is bounded by host cache misses on its own state, so a set's tags are
  // one host cache line, and its LRU order (a rank per way, 0 = most recent) lives apart in 16
  // bytes, a quarter of the tags' footprint, which mostly stays in the host's L2.
  struct alignas(64) Tags {
    uint32_t tag[16];  // line >> set bits; ~0 = empty
  };
  struct alignas(16) Ranks {
    int8_t rank[16];  // ways beyond `ways_` hold kUnusedWay, above every real rank
  };
  static constexpr int8_t kUnusedWay = 127;
  uint64_t sets_;
  int set_bits_ = 0;
  int ways_;
  core::HugePageVector<Tags> tags_;
  core::HugePageVector<Ranks> ranks_;
};

}  // namespace tuna::sim
