// A last-level cache filter: set-associative, 64-byte lines, LRU within a set, so that only
// misses reach memory (and the tiers).
#pragma once

#include <cstdint>
#include <vector>

namespace tuna::sim {

class LastLevelCache {
 public:
  // `bytes` total (a power of two times `ways` × 64), `ways` ≤ 16.
  LastLevelCache(uint64_t bytes, int ways);
  // True on a hit; on a miss the line is filled (evicting the set's least recently used).
  bool access(uint64_t address);
  uint64_t bytes() const { return sets_ * ways_ * 64; }

 private:
  // One set's tags and last-use stamps side by side (two host cache lines), because the
  // simulator's speed is bounded by host cache misses on its own state.
  struct alignas(64) Set {
    uint32_t tag[16];    // line >> set bits, + 1; 0 = empty
    uint32_t stamp[16];  // last use
  };
  uint64_t sets_;
  int set_bits_ = 0;
  int ways_;
  std::vector<Set> set_;
  uint32_t clock_ = 0;
};

}  // namespace tuna::sim
