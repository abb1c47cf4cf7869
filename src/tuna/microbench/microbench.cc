#include "tuna/microbench/microbench.h"

#include "core/error.h"
#include "tuna/workloads/splitmix.h"

namespace tuna {
namespace {

struct PlainTable {
  std::vector<uint64_t>& words;
  uint64_t get(size_t i, bool) const { return words[i]; }
  void set(size_t i, uint64_t v) { words[i] = v; }
};

}  // namespace

void validate(const MicrobenchOptions& o) {
  auto fraction = [](double v, const char* what) {
    if (!(v >= 0 && v <= 1)) core::throw_bad_input("microbench: ", what, " ", v, " must lie in [0, 1]");
  };
  if (o.footprint_bytes < 64 * 1024) core::throw_bad_input("microbench: footprint below 64 KiB");
  auto hot_set = [&](uint64_t bytes) {
    if (bytes < 4096 || bytes > o.footprint_bytes) {
      core::throw_bad_input("microbench: the hot set must be 4 KiB to the footprint, not ", bytes,
                            " bytes");
    }
  };
  if (o.phase_hot_bytes.empty()) hot_set(o.hot_bytes);
  for (uint64_t bytes : o.phase_hot_bytes) hot_set(bytes);
  fraction(o.hot_fraction, "hot fraction");
  fraction(o.write_fraction, "write fraction");
  fraction(o.dependent_fraction, "dependent fraction");
  if (o.accesses == 0) core::throw_bad_input("microbench: no accesses");
}

nlohmann::json to_json(const MicrobenchOptions& o) {
  return {{"footprint_bytes", o.footprint_bytes},
          {"hot_bytes", o.hot_bytes},
          {"hot_fraction", o.hot_fraction},
          {"pattern", o.sequential ? "sequential" : "random"},
          {"write_fraction", o.write_fraction},
          {"dependent_fraction", o.dependent_fraction},
          {"compute_per_access", o.compute_per_access},
          {"hot_moves", o.hot_moves},
          {"phase_hot_bytes", o.phase_hot_bytes},
          {"accesses", o.accesses},
          {"seed", o.seed}};
}

MicrobenchOptions microbench_from_json(const nlohmann::json& j) {
  MicrobenchOptions o;
  try {
    o.footprint_bytes = j.value("footprint_bytes", o.footprint_bytes);
    o.hot_bytes = j.value("hot_bytes", o.hot_bytes);
    o.hot_fraction = j.value("hot_fraction", o.hot_fraction);
    const std::string pattern = j.value("pattern", std::string("random"));
    if (pattern != "random" && pattern != "sequential") {
      core::throw_bad_input("microbench: pattern '", pattern, "' (random or sequential)");
    }
    o.sequential = pattern == "sequential";
    o.write_fraction = j.value("write_fraction", o.write_fraction);
    o.dependent_fraction = j.value("dependent_fraction", o.dependent_fraction);
    o.compute_per_access = j.value("compute_per_access", o.compute_per_access);
    o.hot_moves = j.value("hot_moves", o.hot_moves);
    o.phase_hot_bytes = j.value("phase_hot_bytes", o.phase_hot_bytes);
    o.accesses = j.value("accesses", o.accesses);
    o.seed = j.value("seed", o.seed);
  } catch (const nlohmann::json::exception& e) {
    core::throw_bad_input("microbench settings: ", e.what());
  }
  validate(o);
  return o;
}

Microbench::Microbench(const MicrobenchOptions& options) : options_(options) { validate(options); }

template <typename Table>
uint64_t Microbench::play(Table& table, sim::MemorySystem* memory) const {
  const MicrobenchOptions& o = options_;
  const uint64_t words = o.footprint_bytes / 8;
  const uint64_t phases = o.hot_moves + 1;
  const uint64_t sizes = o.phase_hot_bytes.size();
  uint64_t checksum = 0, last = 0, hot_cursor = 0, cold_cursor = 0;
  for (uint64_t k = 0; k < o.accesses; ++k) {
    const uint64_t r = splitmix64(o.seed * 0x1000003 + k);
    const uint64_t phase = k * phases / o.accesses;
    const uint64_t hot_words = (sizes > 0 ? o.phase_hot_bytes[k * sizes / o.accesses] : o.hot_bytes) / 8;
    const bool hot = unit_interval(r) < o.hot_fraction;
    const uint64_t start = hot ? phase * hot_words % (words - hot_words + 1) : 0;
    const uint64_t size = hot ? hot_words : words;
    const uint64_t r2 = splitmix64(r);
    const bool dependent = unit_interval(r2) < o.dependent_fraction;
    uint64_t offset;
    if (dependent) {
      offset = splitmix64(last ^ k) % size;
    } else if (o.sequential) {
      uint64_t& cursor = hot ? hot_cursor : cold_cursor;
      offset = cursor++ % size;
    } else {
      offset = splitmix64(r2) % size;
    }
    const uint64_t i = start + offset;
    last = table.get(i, dependent);
    if (unit_interval(splitmix64(r2 ^ 0x5bd1e995)) < o.write_fraction) {
      table.set(i, last ^ r);
    } else {
      checksum += last;
    }
    if (memory != nullptr && o.compute_per_access > 0) memory->compute(o.compute_per_access);
  }
  return checksum;
}

void Microbench::run(sim::MemorySystem& memory) {
  SimArray<uint64_t> table(memory, options_.footprint_bytes / 8);
  for (uint64_t i = 0; i < table.size(); ++i) table.set(i, i);  // first touch, in order
  checksum_ = play(table, &memory);
  result_ = table.values();
}

std::string Microbench::check(const std::vector<uint64_t>& table, uint64_t checksum) const {
  const uint64_t words = options_.footprint_bytes / 8;
  if (table.size() != words) return "microbench: the kernel has not run";
  std::vector<uint64_t> expect(words);
  for (uint64_t i = 0; i < words; ++i) expect[i] = i;
  PlainTable plain{expect};
  if (play(plain, nullptr) != checksum) return "microbench: the read checksum differs from the replay";
  for (uint64_t i = 0; i < words; ++i) {
    if (expect[i] != table[i]) return core::cat("microbench: word ", i, " differs from the replay");
  }
  return "";
}

}  // namespace tuna
