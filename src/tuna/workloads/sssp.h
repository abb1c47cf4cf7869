// Single-source shortest paths by delta-stepping (Meyer & Sanders; GAP's kernel, serial): integer
// edge weights uniform in [1, 255] (GAP's), symmetric per undirected edge; vertices are settled
// bucket by bucket of width delta, re-inserted when a relaxation lowers their distance. The
// verifier runs Dijkstra on plain memory and compares every distance.
#pragma once

#include "tuna/workloads/graph.h"
#include "tuna/workloads/workload.h"

namespace tuna {

class Sssp : public Workload {
 public:
  explicit Sssp(const GraphOptions& options, uint32_t delta = 32);
  std::string name() const override { return "sssp"; }
  uint64_t footprint_bytes() const override;
  void run(sim::MemorySystem& memory) override;
  std::string verify() const override { return check(dist_); }
  std::string check(const std::vector<uint32_t>& dist) const;

 private:
  Csr graph_;
  std::vector<uint32_t> weights_;  // aligned with graph_.neighbors
  uint32_t source_ = 0, delta_;
  std::vector<uint32_t> dist_;
};

}  // namespace tuna
