// Simulator speed: simulated memory accesses per second of host time on one core, for GUPS
// under TPP (the target: at least 50 million per second). Writes JSON to stdout.
//
//   build/bench/sim_bench [updates]
#include <cstdio>
#include <cstdlib>

#include "core/stopwatch.h"
#include "tuna/tier/sim/simulator.h"
#include "tuna/workloads/gups.h"

int main(int argc, char** argv) {
  tuna::GupsOptions o;
  o.table_bytes = 256ull << 20;
  o.hot_bytes = 32ull << 20;
  o.updates = argc > 1 ? std::strtoull(argv[1], nullptr, 10) : 20'000'000;
  std::printf("[\n");
  const tuna::sim::Policy policies[] = {tuna::sim::Policy::kAllFast, tuna::sim::Policy::kStatic,
                                        tuna::sim::Policy::kTpp};
  for (size_t i = 0; i < 3; ++i) {
    tuna::Gups gups(o);
    tuna::sim::SimConfig c;
    c.policy = policies[i];
    c.fast_bytes = o.table_bytes / 4;
    tuna::sim::Simulator sim(c, gups.footprint_bytes());
    core::Stopwatch watch;
    gups.run(sim);
    const double s = watch.seconds();
    const auto k = sim.counters();
    std::printf(
        "  {\"policy\": \"%s\", \"accesses\": %llu, \"host_seconds\": %.3f, "
        "\"accesses_per_second\": %.0f, \"simulated_ms\": %.2f, \"pgpromote_success\": %llu, "
        "\"pgdemote_kswapd\": %llu, \"verified\": %s}%s\n",
        tuna::sim::policy_name(c.policy).c_str(), static_cast<unsigned long long>(k.accesses), s,
        k.accesses / s, k.elapsed_ns / 1e6, static_cast<unsigned long long>(k.pgpromote_success),
        static_cast<unsigned long long>(k.pgdemote_kswapd),
        gups.verify().empty() ? "true" : "false", i + 1 < 3 ? "," : "");
  }
  std::printf("]\n");
}
