// splitmix64: a fast, well-mixed pseudo-random stream from a counter, so that a workload's k-th
// access is a pure function of k and its seed (and its verifier can replay it).
#pragma once

#include <cstdint>

namespace tuna {

inline uint64_t splitmix64(uint64_t x) {
  x += 0x9e3779b97f4a7c15ull;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
  return x ^ (x >> 31);
}

// A uniform double in [0, 1) from the top 53 bits.
inline double unit_interval(uint64_t r) { return static_cast<double>(r >> 11) * 0x1.0p-53; }

}  // namespace tuna
