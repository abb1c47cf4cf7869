#include "tuna/workloads/graph.h"

#include <algorithm>
#include <numeric>
#include <random>

#include "core/error.h"

namespace tuna {

Csr make_graph(const GraphOptions& o) {
  if (o.scale < 4 || o.scale > 28) core::throw_bad_input("graph scale ", o.scale, " not in 4..28");
  if (o.degree < 1 || o.degree > 256)
    core::throw_bad_input("graph degree ", o.degree, " not in 1..256");
  if (o.kind != "kronecker" && o.kind != "uniform") {
    core::throw_bad_input("unknown graph kind '", o.kind, "' (kronecker or uniform)");
  }
  const uint32_t n = 1u << o.scale;
  const uint64_t m = static_cast<uint64_t>(n) * o.degree / 2;
  std::mt19937_64 rng(o.seed);
  std::uniform_real_distribution<double> u(0, 1);
  std::vector<std::pair<uint32_t, uint32_t>> edges;
  edges.reserve(m);
  for (uint64_t e = 0; e < m; ++e) {
    uint32_t a = 0, b = 0;
    if (o.kind == "uniform") {
      a = static_cast<uint32_t>(rng() % n);
      b = static_cast<uint32_t>(rng() % n);
    } else {
      for (int level = 0; level < o.scale; ++level) {
        const double r = u(rng);
        const int quadrant = r < 0.57 ? 0 : r < 0.76 ? 1 : r < 0.95 ? 2 : 3;
        a = (a << 1) | (quadrant >> 1);
        b = (b << 1) | (quadrant & 1);
      }
    }
    if (a != b) edges.emplace_back(a, b);
  }
  if (o.kind == "kronecker") {  // Graph500 permutes vertex labels so degree does not follow ids
    std::vector<uint32_t> perm(n);
    std::iota(perm.begin(), perm.end(), 0u);
    std::shuffle(perm.begin(), perm.end(), rng);
    for (auto& [a, b] : edges) a = perm[a], b = perm[b];
  }
  Csr g;
  g.n = n;
  g.offsets.assign(n + 1, 0);
  for (const auto& [a, b] : edges) ++g.offsets[a + 1], ++g.offsets[b + 1];
  for (uint32_t v = 0; v < n; ++v) g.offsets[v + 1] += g.offsets[v];
  g.neighbors.resize(g.offsets[n]);
  std::vector<uint64_t> cursor(g.offsets.begin(), g.offsets.end() - 1);
  for (const auto& [a, b] : edges) g.neighbors[cursor[a]++] = b, g.neighbors[cursor[b]++] = a;
  return g;
}

}  // namespace tuna
