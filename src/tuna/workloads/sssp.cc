#include "tuna/workloads/sssp.h"

#include <algorithm>
#include <limits>
#include <queue>

#include "core/error.h"

namespace tuna {
namespace {

constexpr uint32_t kInfinity = std::numeric_limits<uint32_t>::max();

uint32_t weight(uint32_t a, uint32_t b, uint64_t seed) {
  uint64_t x = (static_cast<uint64_t>(std::min(a, b)) << 32 | std::max(a, b)) ^ (seed * 0x9e37u);
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
  return static_cast<uint32_t>((x ^ (x >> 31)) % 255) + 1;
}

}  // namespace

Sssp::Sssp(const GraphOptions& options, uint32_t delta)
    : graph_(make_graph(options)), delta_(delta) {
  weights_.resize(graph_.neighbors.size());
  for (uint32_t u = 0; u < graph_.n; ++u) {
    for (uint64_t e = graph_.offsets[u]; e < graph_.offsets[u + 1]; ++e) {
      weights_[e] = weight(u, graph_.neighbors[e], options.seed);
    }
  }
  while (source_ < graph_.n && graph_.offsets[source_ + 1] == graph_.offsets[source_]) ++source_;
  if (source_ == graph_.n) core::throw_bad_input("sssp: the graph has no edges");
}

uint64_t Sssp::footprint_bytes() const {
  const uint64_t n = graph_.n;
  return (n + 1) * 8 + graph_.neighbors.size() * 8 + n * 4 + 8 * 4096;
}

void Sssp::run(sim::MemorySystem& memory) {
  const uint32_t n = graph_.n;
  SimArray<uint64_t> offsets(memory, n + 1);
  SimArray<uint32_t> neighbors(memory, graph_.neighbors.size());
  SimArray<uint32_t> weights(memory, weights_.size());
  SimArray<uint32_t> dist(memory, n);
  for (uint32_t v = 0; v <= n; ++v) offsets.set(v, graph_.offsets[v]);
  for (uint64_t i = 0; i < weights_.size(); ++i) {
    neighbors.set(i, graph_.neighbors[i]);
    weights.set(i, weights_[i]);
  }
  for (uint32_t v = 0; v < n; ++v) dist.set(v, kInfinity);
  // Buckets live in host memory (as GAP's thread-local bins would live in cache).
  std::vector<std::vector<uint32_t>> buckets(1);
  dist.set(source_, 0);
  buckets[0].push_back(source_);
  for (size_t b = 0; b < buckets.size(); ++b) {
    while (!buckets[b].empty()) {
      std::vector<uint32_t> frontier;
      frontier.swap(buckets[b]);
      for (uint32_t u : frontier) {
        const uint32_t du = dist.get(u, true);
        if (du / delta_ != b) continue;  // stale entry: settled in an earlier bucket
        const uint64_t end = offsets.get(u + 1, true);
        for (uint64_t e = offsets.get(u, true); e < end; ++e) {
          const uint32_t v = neighbors.get(e);
          const uint32_t nd = du + weights.get(e);
          memory.compute(3);
          if (nd < dist.get(v, true)) {
            dist.set(v, nd);
            const size_t nb = nd / delta_;
            if (nb >= buckets.size()) buckets.resize(nb + 1);
            buckets[nb].push_back(v);
          }
        }
      }
    }
  }
  dist_ = dist.values();
}

std::string Sssp::check(const std::vector<uint32_t>& dist) const {
  if (dist.size() != graph_.n) return "sssp: the kernel has not run";
  std::vector<uint32_t> expect(graph_.n, kInfinity);
  using Item = std::pair<uint32_t, uint32_t>;
  std::priority_queue<Item, std::vector<Item>, std::greater<>> heap;
  expect[source_] = 0;
  heap.push({0, source_});
  while (!heap.empty()) {
    const auto [d, u] = heap.top();
    heap.pop();
    if (d != expect[u]) continue;
    for (uint64_t e = graph_.offsets[u]; e < graph_.offsets[u + 1]; ++e) {
      const uint32_t v = graph_.neighbors[e];
      if (d + weights_[e] < expect[v]) {
        expect[v] = d + weights_[e];
        heap.push({expect[v], v});
      }
    }
  }
  for (uint32_t v = 0; v < graph_.n; ++v) {
    if (dist[v] != expect[v]) {
      return core::cat("sssp: vertex ", v, " at distance ", dist[v], ", Dijkstra says ", expect[v]);
    }
  }
  return "";
}

}  // namespace tuna
