#include "tuna/tier/sim/llc.h"

#include "core/error.h"

namespace tuna::sim {

LastLevelCache::LastLevelCache(uint64_t bytes, int ways) : ways_(ways) {
  if (ways < 1 || ways > 16) core::throw_bad_input("LLC ways must be 1 to 16, not ", ways);
  sets_ = bytes / (64 * static_cast<uint64_t>(ways));
  if (sets_ == 0 || (sets_ & (sets_ - 1)) != 0) {
    core::throw_bad_input("LLC of ", bytes, " bytes and ", ways,
                          " ways does not give a power-of-two number of sets");
  }
  while ((1ull << set_bits_) < sets_) ++set_bits_;
  set_.assign(sets_, Set{});
}

bool LastLevelCache::access(uint64_t address) {
  const uint64_t line = address >> 6;
  Set& set = set_[line & (sets_ - 1)];
  const auto tag = static_cast<uint32_t>((line >> set_bits_) + 1);
  ++clock_;
  int empty = -1, lru = 0;
  uint32_t max_age = 0;
  for (int w = 0; w < ways_; ++w) {
    const uint32_t t = set.tag[w];
    if (t == tag) {
      set.stamp[w] = clock_;
      return true;
    }
    if (t == 0) {
      if (empty < 0) empty = w;
      continue;
    }
    const uint32_t age = clock_ - set.stamp[w];  // wrap-safe
    if (age >= max_age) {
      max_age = age;
      lru = w;
    }
  }
  const int victim = empty >= 0 ? empty : lru;
  set.tag[victim] = tag;
  set.stamp[victim] = clock_;
  return false;
}

}  // namespace tuna::sim
