#include "tuna/workloads/bfs.h"

#include <deque>

#include "core/error.h"

namespace tuna {
namespace {

constexpr int kAlpha = 15, kBeta = 18;
uint64_t words(uint32_t n) { return (n + 63) / 64; }

}  // namespace

Bfs::Bfs(const GraphOptions& options) : graph_(make_graph(options)) {
  while (source_ < graph_.n && graph_.offsets[source_ + 1] == graph_.offsets[source_]) ++source_;
  if (source_ == graph_.n) core::throw_bad_input("bfs: the graph has no edges");
}

uint64_t Bfs::footprint_bytes() const {
  const uint64_t n = graph_.n;
  return (n + 1) * 8 + graph_.neighbors.size() * 4 + n * 8 + 2 * n * 4 + 2 * words(n) * 8 +
         8 * 4096;  // offsets, neighbors, parent, two queues, two bitmaps, page rounding
}

void Bfs::run(sim::MemorySystem& memory) {
  const uint32_t n = graph_.n;
  SimArray<uint64_t> offsets(memory, n + 1);
  SimArray<uint32_t> neighbors(memory, graph_.neighbors.size());
  SimArray<int64_t> parent(memory, n);
  SimArray<uint32_t> queue(memory, n), next_queue(memory, n);
  SimArray<uint64_t> frontier(memory, words(n)), next_frontier(memory, words(n));
  for (uint32_t v = 0; v <= n; ++v) offsets.set(v, graph_.offsets[v]);
  for (uint64_t i = 0; i < graph_.neighbors.size(); ++i) neighbors.set(i, graph_.neighbors[i]);
  for (uint32_t v = 0; v < n; ++v) parent.set(v, -1);

  parent.set(source_, source_);
  queue.set(0, source_);
  uint64_t queue_size = 1;
  uint64_t unexplored_edges = graph_.neighbors.size();
  bool bottom_up = false;
  while (queue_size > 0) {
    uint64_t frontier_edges = 0;
    for (uint64_t i = 0; i < queue_size; ++i) {
      const uint32_t u = queue.get(i);
      frontier_edges += offsets.get(u + 1) - offsets.get(u);
    }
    unexplored_edges -= std::min(unexplored_edges, frontier_edges);
    if (!bottom_up && frontier_edges > unexplored_edges / kAlpha)
      bottom_up = true;
    else if (bottom_up && queue_size < n / kBeta)
      bottom_up = false;
    uint64_t next_size = 0;
    if (bottom_up) {
      for (uint64_t w = 0; w < words(n); ++w) frontier.set(w, 0);
      for (uint64_t i = 0; i < queue_size; ++i) {
        const uint32_t u = queue.get(i);
        frontier.set(u / 64, frontier.get(u / 64) | (1ull << (u % 64)));
      }
      for (uint32_t v = 0; v < n; ++v) {
        if (parent.get(v) >= 0) continue;
        const uint64_t end = offsets.get(v + 1);
        for (uint64_t e = offsets.get(v); e < end; ++e) {
          const uint32_t u = neighbors.get(e);
          memory.compute(2);
          if ((frontier.get(u / 64, true) >> (u % 64)) & 1) {
            parent.set(v, u);
            next_queue.set(next_size++, v);
            break;
          }
        }
      }
    } else {
      for (uint64_t i = 0; i < queue_size; ++i) {
        const uint32_t u = queue.get(i);
        const uint64_t end = offsets.get(u + 1, true);
        for (uint64_t e = offsets.get(u, true); e < end; ++e) {
          const uint32_t v = neighbors.get(e);
          memory.compute(2);
          if (parent.get(v, true) < 0) {
            parent.set(v, u);
            next_queue.set(next_size++, v);
          }
        }
      }
    }
    std::swap(queue.raw(), next_queue.raw());  // the values; the addresses stay with the arrays
    queue_size = next_size;
  }
  parent_ = parent.values();
}

std::string Bfs::check(const std::vector<int64_t>& parent) const {
  const uint32_t n = graph_.n;
  if (parent.size() != n) return "bfs: the kernel has not run";
  std::vector<int64_t> depth(n, -1);
  std::deque<uint32_t> q{source_};
  depth[source_] = 0;
  while (!q.empty()) {
    const uint32_t u = q.front();
    q.pop_front();
    for (uint64_t e = graph_.offsets[u]; e < graph_.offsets[u + 1]; ++e) {
      const uint32_t v = graph_.neighbors[e];
      if (depth[v] < 0) depth[v] = depth[u] + 1, q.push_back(v);
    }
  }
  if (parent[source_] != source_) return "bfs: the source is not its own parent";
  for (uint32_t v = 0; v < n; ++v) {
    if ((parent[v] < 0) != (depth[v] < 0)) return core::cat("bfs: vertex ", v, " reachability");
    if (parent[v] < 0 || v == source_) continue;
    const auto u = static_cast<uint32_t>(parent[v]);
    if (depth[v] != depth[u] + 1)
      return core::cat("bfs: vertex ", v, " is not one level below its parent");
    bool edge = false;
    for (uint64_t e = graph_.offsets[u]; e < graph_.offsets[u + 1] && !edge; ++e) {
      edge = graph_.neighbors[e] == v;
    }
    if (!edge) return core::cat("bfs: parent edge ", u, "-", v, " does not exist");
  }
  return "";
}

}  // namespace tuna
