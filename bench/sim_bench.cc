// Simulator speed: simulated memory accesses per second of host time on one core (the issue's
// target: at least 50 million), per workload, under TPP with a quarter of the footprint fast.
// Input generation is outside the timed region; the kernel's own work is inside. JSON on stdout.
//
//   build/bench/sim_bench
#include <cstdio>
#include <memory>
#include <vector>

#include "core/stopwatch.h"
#include "tuna/tier/sim/simulator.h"
#include "tuna/workloads/bfs.h"
#include "tuna/workloads/gups.h"
#include "tuna/workloads/pagerank.h"

int main() {
  std::vector<std::unique_ptr<tuna::Workload>> workloads;
  tuna::GupsOptions g;
  g.updates = 10'000'000;
  workloads.push_back(std::make_unique<tuna::Gups>(g));
  tuna::GraphOptions graph;
  graph.scale = 20;
  workloads.push_back(std::make_unique<tuna::Bfs>(graph));
  graph.scale = 18;
  workloads.push_back(std::make_unique<tuna::PageRank>(graph));
  std::printf("[\n");
  for (size_t i = 0; i < workloads.size(); ++i) {
    tuna::Workload& w = *workloads[i];
    tuna::sim::SimConfig c;
    c.policy = tuna::sim::Policy::kTpp;
    c.fast_bytes = w.footprint_bytes() / 4;
    tuna::sim::Simulator sim(c, w.footprint_bytes());
    core::Stopwatch watch;
    w.run(sim);
    const double s = watch.seconds();
    const auto k = sim.counters();
    std::printf(
        "  {\"workload\": \"%s\", \"footprint_mb\": %.0f, \"accesses\": %llu, \"host_seconds\": "
        "%.3f, \"accesses_per_second\": %.0f, \"llc_miss_rate\": %.3f, \"verified\": %s}%s\n",
        w.name().c_str(), w.footprint_bytes() / 1048576.0,
        static_cast<unsigned long long>(k.accesses), s, k.accesses / s,
        static_cast<double>(k.llc_misses) / k.accesses, w.verify().empty() ? "true" : "false",
        i + 1 < workloads.size() ? "," : "");
  }
  std::printf("]\n");
}
