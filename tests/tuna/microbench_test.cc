// Tuna's micro-benchmark template: every knob moves the telemetry it is meant to move, the
// verifier catches a wrong result, and bad knobs are refused.
#include "tuna/microbench/microbench.h"

#include <gtest/gtest.h>

#include "core/error.h"

namespace tuna {
namespace {

MicrobenchOptions small() {
  MicrobenchOptions o;
  o.footprint_bytes = 4 << 20;
  o.hot_bytes = 512 << 10;
  o.accesses = 200'000;
  return o;
}

sim::SimConfig machine(double fast_fraction, uint64_t footprint) {
  sim::SimConfig c;
  c.policy = sim::Policy::kTpp;
  c.fast_bytes = static_cast<uint64_t>(fast_fraction * footprint);
  c.llc_bytes = 256 * 1024;
  c.llc_ways = 8;
  c.tpp.watermark_scale_factor = 200;
  c.time_scale = 5000;
  return c;
}

TierCounters run(const MicrobenchOptions& o, double fast_fraction = 0.25) {
  Microbench bench(o);
  sim::Simulator sim(machine(fast_fraction, o.footprint_bytes), bench.footprint_bytes());
  bench.run(sim);
  EXPECT_EQ(bench.verify(), "");
  return sim.counters();
}

TEST(Microbench, KnobsMoveTheirTelemetry) {
  const MicrobenchOptions base = small();
  const TierCounters b = run(base);
  // First touch, then one load per access and one store per write (a fifth of them).
  const double writes = static_cast<double>(b.accesses - base.footprint_bytes / 8 - base.accesses);
  EXPECT_NEAR(writes / base.accesses, base.write_fraction, 0.01);
  EXPECT_EQ(b.compute_units, base.accesses * base.compute_per_access);

  MicrobenchOptions moving = base;
  moving.hot_moves = 3;
  EXPECT_GT(run(moving).pgpromote_success, b.pgpromote_success);

  MicrobenchOptions chasing = base;
  chasing.dependent_fraction = 1;
  EXPECT_GT(run(chasing).elapsed_ns, 1.5 * b.elapsed_ns);  // no overlap between misses

  MicrobenchOptions streaming = base;
  streaming.sequential = true;
  const uint64_t first_touch_misses = base.footprint_bytes / 64;
  EXPECT_LT(run(streaming).llc_misses - first_touch_misses,
            (b.llc_misses - first_touch_misses) / 4);  // eight words per line

  MicrobenchOptions skewed = base;
  skewed.hot_fraction = 1.0;
  EXPECT_LT(run(skewed).slow_accesses, b.slow_accesses);  // the hot set fits the fast tier

  MicrobenchOptions read_only = base;
  read_only.write_fraction = 0;
  EXPECT_EQ(run(read_only).accesses, base.footprint_bytes / 8 + base.accesses);
}

TEST(Microbench, PhasesChangeTheHotSetMidRun) {
  MicrobenchOptions narrow = small(), wide = small(), phased = small();
  wide.hot_bytes = 3 << 20;
  phased.phase_hot_bytes = {512 << 10, 3 << 20, 512 << 10};
  const uint64_t n = run(narrow).slow_accesses, w = run(wide).slow_accesses;
  const uint64_t p = run(phased).slow_accesses;
  EXPECT_GT(p, n);  // the wide middle phase does not fit the 1 MiB fast tier
  EXPECT_LT(p, w);
  EXPECT_EQ(microbench_from_json(to_json(phased)).phase_hot_bytes, phased.phase_hot_bytes);
  phased.phase_hot_bytes[1] = phased.footprint_bytes + 4096;
  EXPECT_THROW(Microbench{phased}, core::Error);
}

TEST(Microbench, VerifierCatchesAWrongTableOrChecksum) {
  Microbench bench(small());
  sim::Simulator sim(machine(1, small().footprint_bytes), bench.footprint_bytes());
  bench.run(sim);
  ASSERT_EQ(bench.verify(), "");
  std::vector<uint64_t> table(small().footprint_bytes / 8);
  for (uint64_t i = 0; i < table.size(); ++i) table[i] = i;
  EXPECT_NE(bench.check(table, 0), "");  // the writes are missing
  EXPECT_NE(bench.check({}, 0), "");
}

TEST(Microbench, RefusesBadKnobs) {
  MicrobenchOptions o = small();
  o.hot_bytes = o.footprint_bytes * 2;
  EXPECT_THROW(Microbench{o}, core::Error);
  o = small();
  o.hot_fraction = 1.5;
  EXPECT_THROW(Microbench{o}, core::Error);
  o = small();
  o.accesses = 0;
  EXPECT_THROW(Microbench{o}, core::Error);
  EXPECT_THROW(microbench_from_json({{"pattern", "zigzag"}}), core::Error);
  EXPECT_THROW(microbench_from_json({{"hot_fraction", "high"}}), core::Error);
  const MicrobenchOptions round = microbench_from_json(to_json(small()));
  EXPECT_EQ(round.hot_bytes, small().hot_bytes);
  EXPECT_EQ(round.accesses, small().accesses);
}

}  // namespace
}  // namespace tuna
