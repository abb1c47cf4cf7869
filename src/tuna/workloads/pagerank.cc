#include "tuna/workloads/pagerank.h"

#include <cmath>

#include "core/error.h"

namespace tuna {
namespace {

constexpr float kDamping = 0.85f;
constexpr double kTolerance = 1e-4;
constexpr int kMaxIterations = 20;

}  // namespace

PageRank::PageRank(const GraphOptions& options) : graph_(make_graph(options)) {}

uint64_t PageRank::footprint_bytes() const {
  const uint64_t n = graph_.n;
  return (n + 1) * 8 + graph_.neighbors.size() * 4 + 2 * n * 4 + 4 * 4096;
}

void PageRank::run(sim::MemorySystem& memory) {
  const uint32_t n = graph_.n;
  SimArray<uint64_t> offsets(memory, n + 1);
  SimArray<uint32_t> neighbors(memory, graph_.neighbors.size());
  SimArray<float> scores(memory, n), contrib(memory, n);
  for (uint32_t v = 0; v <= n; ++v) offsets.set(v, graph_.offsets[v]);
  for (uint64_t i = 0; i < graph_.neighbors.size(); ++i) neighbors.set(i, graph_.neighbors[i]);
  const float base = (1.0f - kDamping) / n;
  for (uint32_t v = 0; v < n; ++v) scores.set(v, 1.0f / n);
  for (int it = 0; it < kMaxIterations; ++it) {
    for (uint32_t v = 0; v < n; ++v) {
      const uint64_t degree = offsets.get(v + 1) - offsets.get(v);
      contrib.set(v, degree > 0 ? scores.get(v) / degree : 0.0f);
      memory.compute(2);
    }
    double error = 0;
    for (uint32_t v = 0; v < n; ++v) {
      float sum = 0;
      const uint64_t end = offsets.get(v + 1);
      for (uint64_t e = offsets.get(v); e < end; ++e) {
        sum += contrib.get(neighbors.get(e), true);
        memory.compute(1);
      }
      const float old = scores.get(v);
      const float next = base + kDamping * sum;
      scores.set(v, next);
      error += std::fabs(next - old);
    }
    if (error < kTolerance) break;
  }
  scores_ = scores.values();
}

std::string PageRank::check(const std::vector<float>& scores) const {
  const uint32_t n = graph_.n;
  if (scores.size() != n) return "pagerank: the kernel has not run";
  // One more iteration on plain memory must barely move the scores (a fixed point).
  std::vector<float> contrib(n);
  for (uint32_t v = 0; v < n; ++v) {
    const uint64_t degree = graph_.offsets[v + 1] - graph_.offsets[v];
    contrib[v] = degree > 0 ? scores[v] / degree : 0.0f;
  }
  double change = 0;
  for (uint32_t v = 0; v < n; ++v) {
    float sum = 0;
    for (uint64_t e = graph_.offsets[v]; e < graph_.offsets[v + 1]; ++e) {
      sum += contrib[graph_.neighbors[e]];
    }
    change += std::fabs((1.0f - kDamping) / n + kDamping * sum - scores[v]);
  }
  // With 20 iterations at most, GAP's verifier accepts a residual of the same order.
  if (change > 20 * kTolerance)
    return core::cat("pagerank: not a fixed point (L1 change ", change, ")");
  return "";
}

}  // namespace tuna
