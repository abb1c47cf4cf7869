// PageRank as the GAP benchmark suite computes it: pull direction, damping 0.85, iterations until
// the L1 change falls below 1e-4 (at most 20). The verifier recomputes the scores with the same
// iteration on plain memory and checks the result is a fixed point to the same tolerance.
#pragma once

#include "tuna/workloads/graph.h"
#include "tuna/workloads/workload.h"

namespace tuna {

class PageRank : public Workload {
 public:
  explicit PageRank(const GraphOptions& options);
  std::string name() const override { return "pagerank"; }
  uint64_t footprint_bytes() const override;
  void run(sim::MemorySystem& memory) override;
  std::string verify() const override { return check(scores_); }
  // The verifier on any score vector (tests feed it wrong ones).
  std::string check(const std::vector<float>& scores) const;

 private:
  Csr graph_;
  std::vector<float> scores_;
};

}  // namespace tuna
