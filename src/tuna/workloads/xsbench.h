// XSBench-style macroscopic cross-section lookups (the proxy of OpenMC's hot loop, "small"
// problem shape): per lookup a random energy and material; a binary search of the unionized
// energy grid; then for each nuclide of the material, its grid index from the unionized index
// row, two neighbouring points of that nuclide's grid, interpolation, and accumulation of five
// cross sections. The verifier recomputes every lookup on plain memory and compares the sums.
#pragma once

#include "tuna/workloads/workload.h"

namespace tuna {

struct XsBenchOptions {
  int isotopes = 68;       // XSBench "small"
  int gridpoints = 11303;  // per isotope
  uint64_t lookups = 100'000;
  uint64_t seed = 1;
};

class XsBench : public Workload {
 public:
  explicit XsBench(const XsBenchOptions& options);
  std::string name() const override { return "xsbench"; }
  uint64_t footprint_bytes() const override;
  void run(sim::MemorySystem& memory) override;
  std::string verify() const override { return check(result_); }
  std::string check(const std::vector<double>& sums) const;

 private:
  double lookup_plain(double energy, int material) const;

  XsBenchOptions options_;
  std::vector<double> nuclide_grid_;  // isotope-major: (energy, 5 xs) per point
  std::vector<double> union_energy_;  // sorted energies of all points
  std::vector<int32_t> union_index_;  // per union point, per isotope: grid index
  std::vector<std::vector<int>> materials_;
  std::vector<double> result_;  // per lookup, the sum of the five cross sections
};

}  // namespace tuna
