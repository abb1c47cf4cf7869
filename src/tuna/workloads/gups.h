// GUPS (HPCC RandomAccess) with a hot set that moves mid-run: the migration stress test. Each
// update XORs a pseudo-random value into a random word of the table; `hot_fraction` of the
// updates go to a hot region of `hot_bytes`, which jumps to another part of the table halfway.
// The verifier replays the update stream on a plain copy.
#pragma once

#include "tuna/workloads/workload.h"

namespace tuna {

struct GupsOptions {
  uint64_t table_bytes = 256ull << 20;
  uint64_t hot_bytes = 32ull << 20;
  double hot_fraction = 0.9;
  uint64_t updates = 20'000'000;
  uint64_t seed = 1;
};

class Gups : public Workload {
 public:
  explicit Gups(const GupsOptions& options);
  std::string name() const override { return "gups"; }
  uint64_t footprint_bytes() const override { return options_.table_bytes; }
  void run(sim::MemorySystem& memory) override;
  std::string verify() const override { return check(result_); }
  // The verifier on any table (tests feed it wrong ones).
  std::string check(const std::vector<uint64_t>& table) const;

 private:
  // The index of update k (deterministic in k and the seed).
  uint64_t index_of(uint64_t k, uint64_t words, uint64_t hot_words) const;

  GupsOptions options_;
  std::vector<uint64_t> result_;
};

}  // namespace tuna
