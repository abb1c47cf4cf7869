// Small pieces the CPU benchmarks share: reading token-id files and measuring the core clock.
#pragma once

#include <omp.h>

#include <cstdint>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "core/error.h"
#include "core/stopwatch.h"

namespace bench {

// The first `count` lines of `path`, each a sequence of space-separated token ids. Throws
// core::Error (bad input) when the file cannot be read, has too few lines, or a line is empty.
inline std::vector<std::vector<int32_t>> read_id_lines(const std::string& path, int count) {
  std::ifstream in(path);
  if (!in) core::throw_bad_input("cannot open ", path);
  std::vector<std::vector<int32_t>> seqs;
  std::string line;
  while (static_cast<int>(seqs.size()) < count && std::getline(in, line)) {
    std::istringstream ss(line);
    std::vector<int32_t> ids;
    int32_t id;
    while (ss >> id) ids.push_back(id);
    if (!ss.eof()) core::throw_bad_input(path, ": line ", seqs.size() + 1, " is not token ids");
    if (ids.empty()) core::throw_bad_input(path, ": line ", seqs.size() + 1, " is empty");
    seqs.push_back(std::move(ids));
  }
  if (static_cast<int>(seqs.size()) < count) {
    core::throw_bad_input(path, ": ", seqs.size(), " lines; ", count, " needed");
  }
  return seqs;
}

// Core clock in GHz, measured: a chain of dependent integer adds retires one add per cycle, so
// adds per second is the clock. (The nominal MHz in /proc/cpuinfo is the base clock; the cores
// run faster under load, which made GEMMs look like >100% of "peak".)
inline double measure_clock_ghz() {
  constexpr uint64_t kIterations = 50'000'000;
  uint64_t x = 0;
  core::Stopwatch watch;
  for (uint64_t i = 0; i < kIterations; ++i) {
    asm volatile(
        "add $1, %0\n\tadd $1, %0\n\tadd $1, %0\n\tadd $1, %0\n\t"
        "add $1, %0\n\tadd $1, %0\n\tadd $1, %0\n\tadd $1, %0"
        : "+r"(x));
  }
  return static_cast<double>(x) / watch.seconds() / 1e9;
}

// fp32 FMA peak of the threads in GFLOP/s: two 256-bit FMA pipes per core (Zen 4 issues
// AVX-512 as 2×256) = 16 FMAs = 32 FLOP per cycle.
inline double fp32_peak_gflops(double clock_ghz) {
  return clock_ghz * 32.0 * omp_get_max_threads();
}

}  // namespace bench
