// Simulator speed: simulated memory accesses per second of host time on one core (the issue's
// target: at least 50 million), per workload, under TPP with a quarter of the footprint fast.
//
// Each workload runs twice, as fresh instances: natively (its kernel against a memory system that
// only counts accesses) and on the simulator. The native time is what the kernel itself costs on
// the host (GUPS's random updates miss the host's caches no matter what); the difference is the
// simulator's own cost, so two rates come out: end to end, and the simulator's alone.
// Input generation is outside the timed regions. JSON on stdout.
//
//   build/bench/sim_bench > bench/results/sim_cpu.json
#include <cstdio>
#include <memory>
#include <string>
#include <vector>

#include "core/stopwatch.h"
#include "tuna/tier/sim/simulator.h"
#include "tuna/workloads/registry.h"

namespace {

class CountingMemory : public tuna::sim::MemorySystem {
 public:
  uint64_t allocate(uint64_t bytes) override {
    const uint64_t base = next_;
    next_ += (bytes + 4095) / 4096 * 4096;
    return base;
  }
  void load(uint64_t, bool) override { ++accesses; }
  void store(uint64_t) override { ++accesses; }
  void compute(uint64_t) override {}
  uint64_t accesses = 0;

 private:
  uint64_t next_ = 0;
};

tuna::WorkloadOptions options(const std::string& name, int scale) {
  tuna::WorkloadOptions o;
  o.name = name;
  o.gups.updates = 10'000'000;
  o.graph.scale = scale;
  return o;
}

}  // namespace

int main() {
  const std::vector<tuna::WorkloadOptions> runs = {
      options("gups", 0),     options("bfs", 20),     options("pagerank", 18),
      options("sssp", 18),    options("xsbench", 0),  options("btree", 0)};
  std::printf("{\n \"command\": \"build/bench/sim_bench\",\n \"runs\": [\n");
  for (size_t i = 0; i < runs.size(); ++i) {
    auto native = tuna::make_workload(runs[i]);
    CountingMemory counting;
    core::Stopwatch native_watch;
    native->run(counting);
    const double native_s = native_watch.seconds();

    auto w = tuna::make_workload(runs[i]);
    tuna::sim::SimConfig c;
    c.policy = tuna::sim::Policy::kTpp;
    c.fast_bytes = w->footprint_bytes() / 4;
    tuna::sim::Simulator sim(c, w->footprint_bytes());
    core::Stopwatch watch;
    w->run(sim);
    const double s = watch.seconds();
    const auto k = sim.counters();
    const double n = static_cast<double>(k.accesses);
    std::printf(
        "  {\"workload\": \"%s\", \"footprint_mb\": %.0f, \"accesses\": %llu, \"host_seconds\": "
        "%.3f, \"native_kernel_seconds\": %.3f, \"accesses_per_second\": %.0f, "
        "\"simulator_only_accesses_per_second\": %.0f, \"llc_miss_rate\": %.3f, \"verified\": "
        "%s}%s\n",
        w->name().c_str(), w->footprint_bytes() / 1048576.0,
        static_cast<unsigned long long>(k.accesses), s, native_s, n / s,
        n / std::max(s - native_s, 1e-9), static_cast<double>(k.llc_misses) / n,
        w->verify().empty() && counting.accesses == k.accesses ? "true" : "false",
        i + 1 < runs.size() ? "," : "");
  }
  std::printf(" ]\n}\n");
}
