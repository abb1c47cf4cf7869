#include "tuna/workloads/gups.h"

#include "core/error.h"
#include "tuna/workloads/splitmix.h"

namespace tuna {

Gups::Gups(const GupsOptions& options) : options_(options) {
  if (options.table_bytes < 8 * 1024 || options.hot_bytes == 0 ||
      options.hot_bytes * 2 > options.table_bytes) {
    core::throw_bad_input("gups: the table must be at least 8 KiB and at least twice the hot set");
  }
  if (!(options.hot_fraction >= 0 && options.hot_fraction <= 1)) {
    core::throw_bad_input("gups: hot fraction must lie in [0, 1]");
  }
}

uint64_t Gups::index_of(uint64_t k, uint64_t words, uint64_t hot_words) const {
  const uint64_t r = splitmix64(options_.seed * 0x1000003 + k);
  const bool hot = unit_interval(r) < options_.hot_fraction;
  if (!hot) return splitmix64(r) % words;
  // The hot region starts at word 0, then moves to the second half of the table.
  const uint64_t start = k < options_.updates / 2 ? 0 : words / 2;
  return start + splitmix64(r) % hot_words;
}

void Gups::run(sim::MemorySystem& memory) {
  const uint64_t words = options_.table_bytes / 8;
  const uint64_t hot_words = options_.hot_bytes / 8;
  SimArray<uint64_t> table(memory, words);
  for (uint64_t i = 0; i < words; ++i) table.set(i, i);  // first touch, in order
  for (uint64_t k = 0; k < options_.updates; ++k) {
    const uint64_t i = index_of(k, words, hot_words);
    table.set(i, table.get(i) ^ splitmix64(k));
    memory.compute(4);
  }
  result_ = table.values();
}

std::string Gups::check(const std::vector<uint64_t>& table) const {
  const uint64_t words = options_.table_bytes / 8;
  const uint64_t hot_words = options_.hot_bytes / 8;
  if (table.size() != words) return "gups: the kernel has not run";
  std::vector<uint64_t> expect(words);
  for (uint64_t i = 0; i < words; ++i) expect[i] = i;
  for (uint64_t k = 0; k < options_.updates; ++k) expect[index_of(k, words, hot_words)] ^= splitmix64(k);
  for (uint64_t i = 0; i < words; ++i) {
    if (expect[i] != table[i]) return core::cat("gups: word ", i, " differs from the replay");
  }
  return "";
}

}  // namespace tuna
