// Graphs for the graph kernels: Kronecker (Graph500 parameters A = 0.57, B = C = 0.19) or uniform
// random, undirected, stored as CSR. Generation and CSR building are setup, outside the
// simulated memory; kernels copy the CSR into instrumented arrays.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace tuna {

struct GraphOptions {
  std::string kind = "kronecker";  // or "uniform"
  int scale = 18;                  // 2^scale vertices
  int degree = 16;                 // edges per vertex (undirected edges = degree · n / 2)
  uint64_t seed = 1;
};

struct Csr {
  uint32_t n = 0;
  std::vector<uint64_t> offsets;  // n + 1
  std::vector<uint32_t> neighbors;
};

// Throws core::Error (bad input) for an unknown kind or an out-of-range scale.
Csr make_graph(const GraphOptions& options);

}  // namespace tuna
