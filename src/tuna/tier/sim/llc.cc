#include "tuna/tier/sim/llc.h"

#if defined(__AVX2__)
#include <immintrin.h>
#endif

#include "core/error.h"

namespace tuna::sim {
namespace {

constexpr uint32_t kEmpty = ~0u;

// Bit w set where tags.tag[w] == tag.
uint32_t matching_ways(const uint32_t* tags, uint32_t tag) {
#if defined(__AVX2__)
  const __m256i t = _mm256_set1_epi32(static_cast<int>(tag));
  const auto lo = _mm256_cmpeq_epi32(_mm256_load_si256(reinterpret_cast<const __m256i*>(tags)), t);
  const auto hi =
      _mm256_cmpeq_epi32(_mm256_load_si256(reinterpret_cast<const __m256i*>(tags + 8)), t);
  return static_cast<uint32_t>(_mm256_movemask_ps(_mm256_castsi256_ps(lo))) |
         static_cast<uint32_t>(_mm256_movemask_ps(_mm256_castsi256_ps(hi))) << 8;
#else
  uint32_t mask = 0;
  for (int w = 0; w < 16; ++w) mask |= static_cast<uint32_t>(tags[w] == tag) << w;
  return mask;
#endif
}

// Way `w` becomes the most recent: every way more recent than it ages by one.
void make_most_recent(int8_t* rank, int w) {
  const int8_t r = rank[w];
#if defined(__AVX2__)
  __m128i v = _mm_load_si128(reinterpret_cast<const __m128i*>(rank));
  v = _mm_sub_epi8(v, _mm_cmplt_epi8(v, _mm_set1_epi8(r)));  // −(−1) where rank < r
  _mm_store_si128(reinterpret_cast<__m128i*>(rank), v);
#else
  for (int k = 0; k < 16; ++k) rank[k] = static_cast<int8_t>(rank[k] + (rank[k] < r));
#endif
  rank[w] = 0;
}

}  // namespace

LastLevelCache::LastLevelCache(uint64_t bytes, int ways) : ways_(ways) {
  if (ways < 1 || ways > 16) core::throw_bad_input("LLC ways must be 1 to 16, not ", ways);
  sets_ = bytes / (64 * static_cast<uint64_t>(ways));
  if (sets_ == 0 || (sets_ & (sets_ - 1)) != 0) {
    core::throw_bad_input("LLC of ", bytes, " bytes and ", ways,
                          " ways does not give a power-of-two number of sets");
  }
  while ((1ull << set_bits_) < sets_) ++set_bits_;
  Tags empty;
  Ranks initial;
  for (int w = 0; w < 16; ++w) {
    empty.tag[w] = kEmpty;
    // Empty ways are the least recent, way 0 first, so sets fill in way order.
    initial.rank[w] = w < ways ? static_cast<int8_t>(ways - 1 - w) : kUnusedWay;
  }
  tags_.assign(sets_, empty);
  ranks_.assign(sets_, initial);
}

bool LastLevelCache::access(uint64_t address) {
  const uint64_t line = address >> 6;
  const uint64_t set = line & (sets_ - 1);
  const auto tag = static_cast<uint32_t>(line >> set_bits_);
  uint32_t* tags = tags_[set].tag;
  int8_t* rank = ranks_[set].rank;
  const uint32_t hit = matching_ways(tags, tag);
  if (hit != 0) {
    make_most_recent(rank, __builtin_ctz(hit));
    return true;
  }
  int victim = 0;
  while (rank[victim] != ways_ - 1) ++victim;
  tags[victim] = tag;
  make_most_recent(rank, victim);
  return false;
}

}  // namespace tuna::sim
