#include "tuna/workloads/xsbench.h"

#include <algorithm>
#include <cmath>
#include <random>

#include "core/error.h"

namespace tuna {
namespace {

constexpr int kXs = 5, kPoint = 1 + kXs;
// XSBench's 12 materials: nuclide counts (small problem: fuel has 34) and lookup probabilities.
constexpr int kNuclides[12] = {34, 5, 4, 4, 27, 21, 21, 21, 21, 21, 9, 9};
constexpr double kDist[12] = {0.140, 0.052, 0.275, 0.134, 0.154, 0.064,
                              0.066, 0.055, 0.008, 0.015, 0.025, 0.013};

struct Draw {
  double energy;
  int material;
};

Draw draw(uint64_t seed, uint64_t k) {
  std::mt19937_64 rng(seed * 1000003 + k);
  std::uniform_real_distribution<double> u(0, 1);
  const double e = u(rng);
  double r = u(rng), acc = 0;
  int m = 11;
  for (int i = 0; i < 12; ++i) {
    acc += kDist[i];
    if (r < acc) {
      m = i;
      break;
    }
  }
  return {e, m};
}

}  // namespace

XsBench::XsBench(const XsBenchOptions& o) : options_(o) {
  if (o.isotopes < 34 || o.isotopes > 400 || o.gridpoints < 2 || o.gridpoints > 100000) {
    core::throw_bad_input("xsbench: isotopes must be 34..400 and gridpoints 2..100000");
  }
  std::mt19937_64 rng(o.seed);
  std::uniform_real_distribution<double> u(0, 1);
  const size_t n = o.gridpoints;
  nuclide_grid_.resize(static_cast<size_t>(o.isotopes) * n * kPoint);
  std::vector<double> energies(n);
  for (int iso = 0; iso < o.isotopes; ++iso) {
    for (double& e : energies) e = u(rng);
    std::sort(energies.begin(), energies.end());
    for (size_t p = 0; p < n; ++p) {
      double* point = &nuclide_grid_[(iso * n + p) * kPoint];
      point[0] = energies[p];
      for (int x = 1; x < kPoint; ++x) point[x] = u(rng);
    }
  }
  union_energy_.resize(static_cast<size_t>(o.isotopes) * n);
  for (int iso = 0; iso < o.isotopes; ++iso) {
    for (size_t p = 0; p < n; ++p)
      union_energy_[iso * n + p] = nuclide_grid_[(iso * n + p) * kPoint];
  }
  std::sort(union_energy_.begin(), union_energy_.end());
  // For every union point and isotope: the isotope's last grid point at or below that energy.
  union_index_.resize(union_energy_.size() * o.isotopes);
  std::vector<size_t> cursor(o.isotopes, 0);
  for (size_t up = 0; up < union_energy_.size(); ++up) {
    for (int iso = 0; iso < o.isotopes; ++iso) {
      while (cursor[iso] + 2 < n &&
             nuclide_grid_[(iso * n + cursor[iso] + 1) * kPoint] <= union_energy_[up]) {
        ++cursor[iso];
      }
      union_index_[up * o.isotopes + iso] = static_cast<int32_t>(cursor[iso]);
    }
  }
  std::mt19937_64 pick(o.seed + 7);
  for (int m = 0; m < 12; ++m) {
    std::vector<int> all(o.isotopes);
    for (int i = 0; i < o.isotopes; ++i) all[i] = i;
    std::shuffle(all.begin(), all.end(), pick);
    materials_.emplace_back(all.begin(), all.begin() + kNuclides[m]);
  }
}

uint64_t XsBench::footprint_bytes() const {
  return nuclide_grid_.size() * 8 + union_energy_.size() * 8 + union_index_.size() * 4 +
         options_.lookups * 8 + 4 * 4096;
}

double XsBench::lookup_plain(double energy, int material) const {
  const size_t idx =
      std::upper_bound(union_energy_.begin(), union_energy_.end(), energy) - union_energy_.begin();
  const size_t up = idx == 0 ? 0 : idx - 1;
  const size_t n = options_.gridpoints;
  double sum = 0;
  for (int iso : materials_[material]) {
    const size_t g = union_index_[up * options_.isotopes + iso];
    const double* lo = &nuclide_grid_[(iso * n + g) * kPoint];
    const double* hi = lo + kPoint;
    const double f = hi[0] == lo[0] ? 0 : (hi[0] - energy) / (hi[0] - lo[0]);
    for (int x = 1; x < kPoint; ++x) sum += hi[x] - f * (hi[x] - lo[x]);
  }
  return sum;
}

void XsBench::run(sim::MemorySystem& memory) {
  const size_t n = options_.gridpoints;
  SimArray<double> grid(memory, nuclide_grid_.size());
  SimArray<double> uenergy(memory, union_energy_.size());
  SimArray<int32_t> uindex(memory, union_index_.size());
  SimArray<double> out(memory, options_.lookups);
  for (size_t i = 0; i < nuclide_grid_.size(); ++i) grid.set(i, nuclide_grid_[i]);
  for (size_t i = 0; i < union_energy_.size(); ++i) uenergy.set(i, union_energy_[i]);
  for (size_t i = 0; i < union_index_.size(); ++i) uindex.set(i, union_index_[i]);
  for (uint64_t k = 0; k < options_.lookups; ++k) {
    const Draw d = draw(options_.seed, k);
    // Binary search: each probe depends on the previous one.
    size_t lo = 0, hi = union_energy_.size();
    while (lo < hi) {
      const size_t mid = (lo + hi) / 2;
      if (uenergy.get(mid, true) <= d.energy)
        lo = mid + 1;
      else
        hi = mid;
      memory.compute(3);
    }
    const size_t up = lo == 0 ? 0 : lo - 1;
    double sum = 0;
    for (int iso : materials_[d.material]) {
      const size_t g = static_cast<size_t>(uindex.get(up * options_.isotopes + iso));
      const size_t base = (iso * n + g) * kPoint;
      const double e0 = grid.get(base, true), e1 = grid.get(base + kPoint, true);
      const double f = e1 == e0 ? 0 : (e1 - d.energy) / (e1 - e0);
      for (int x = 1; x < kPoint; ++x) {
        const double a = grid.get(base + x), b = grid.get(base + kPoint + x);
        sum += b - f * (b - a);
      }
      memory.compute(20);
    }
    out.set(k, sum);
  }
  result_ = out.values();
}

std::string XsBench::check(const std::vector<double>& sums) const {
  if (sums.size() != options_.lookups) return "xsbench: the kernel has not run";
  for (uint64_t k = 0; k < options_.lookups; ++k) {
    const Draw d = draw(options_.seed, k);
    const double expect = lookup_plain(d.energy, d.material);
    if (std::fabs(expect - sums[k]) > 1e-9 * std::max(1.0, std::fabs(expect))) {
      return core::cat("xsbench: lookup ", k, " gives ", sums[k], ", expected ", expect);
    }
  }
  return "";
}

}  // namespace tuna
