// Direction-optimizing BFS (Beamer et al., as in the GAP benchmark suite: top-down steps while
// the frontier is small, bottom-up steps while it touches more than 1/α of the unexplored
// edges, back when it shrinks below n/β; α = 15, β = 18) from a source of non-zero degree. The
// verifier checks that the parent array is a BFS tree: the source is its own parent, every
// parent edge exists, and depths (recomputed by a plain BFS) differ by exactly one along it.
#pragma once

#include "tuna/workloads/graph.h"
#include "tuna/workloads/workload.h"

namespace tuna {

class Bfs : public Workload {
 public:
  explicit Bfs(const GraphOptions& options);
  std::string name() const override { return "bfs"; }
  uint64_t footprint_bytes() const override;
  void run(sim::MemorySystem& memory) override;
  std::string verify() const override { return check(parent_); }
  // The verifier on any parent array (tests feed it wrong ones).
  std::string check(const std::vector<int64_t>& parent) const;
  uint32_t source() const { return source_; }

 private:
  Csr graph_;
  uint32_t source_ = 0;
  std::vector<int64_t> parent_;
};

}  // namespace tuna
