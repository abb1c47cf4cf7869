// An in-memory index: a B+-tree (fanout 16, bulk-loaded from sorted keys) serving point
// lookups from a YCSB request stream: keys drawn from a scrambled Zipfian(0.99), as YCSB's
// workload C does (Gray et al.'s generator, ranks hashed with FNV-1a so popular keys spread over
// the tree). The verifier checks every lookup's value against the key that was asked for.
#pragma once

#include "tuna/workloads/workload.h"

namespace tuna {

struct BTreeOptions {
  uint64_t records = 4'000'000;
  uint64_t requests = 2'000'000;
  double zipf_theta = 0.99;
  uint64_t seed = 1;
};

class BTree : public Workload {
 public:
  explicit BTree(const BTreeOptions& options);
  std::string name() const override { return "btree"; }
  uint64_t footprint_bytes() const override;
  void run(sim::MemorySystem& memory) override;
  std::string verify() const override { return check(found_); }
  std::string check(const std::vector<int64_t>& found) const;
  // The key of request k (the YCSB stream; exposed for tests).
  uint64_t request_key(uint64_t k) const;

 private:
  BTreeOptions options_;
  std::vector<int64_t> nodes_;  // node-major, kNodeWords each
  int64_t root_ = 0;
  double zetan_ = 0, eta_ = 0, alpha_ = 0;
  std::vector<int64_t> found_;
};

}  // namespace tuna
