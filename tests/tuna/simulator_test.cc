// The simulated machine: the LLC filter, timing, and GUPS (with its hot-set move) run under
// all-fast, static first-touch and TPP placement.
#include "tuna/tier/sim/simulator.h"

#include <gtest/gtest.h>

#include <map>

#include "core/error.h"
#include "tuna/workloads/bfs.h"
#include "tuna/workloads/btree.h"
#include "tuna/workloads/gups.h"
#include "tuna/workloads/pagerank.h"
#include "tuna/workloads/sssp.h"
#include "tuna/workloads/xsbench.h"

namespace tuna::sim {
namespace {

TEST(LastLevelCache, HitsAWorkingSetThatFitsAndEvictsLeastRecentlyUsed) {
  LastLevelCache llc(64 * 1024, 4);  // 256 sets × 4 ways
  for (uint64_t a = 0; a < 32 * 1024; a += 64) EXPECT_FALSE(llc.access(a));
  for (uint64_t a = 0; a < 32 * 1024; a += 64) EXPECT_TRUE(llc.access(a));
  // One set (stride = sets × 64 = 16 KiB): 4 ways hold lines A B C D; touching A then adding E
  // evicts B, the least recently used.
  LastLevelCache set(64 * 1024, 4);
  const uint64_t s = 16 * 1024;
  for (uint64_t k = 0; k < 4; ++k) set.access(k * s);
  EXPECT_TRUE(set.access(0));
  EXPECT_FALSE(set.access(4 * s));
  EXPECT_TRUE(set.access(0));
  EXPECT_FALSE(set.access(1 * s));
  EXPECT_THROW(LastLevelCache(3000, 4), core::Error);
}

SimConfig small_config(Policy policy, double fast_fraction, uint64_t footprint) {
  SimConfig c;
  c.policy = policy;
  c.fast_bytes = static_cast<uint64_t>(fast_fraction * footprint);
  c.llc_bytes = 256 * 1024;
  c.llc_ways = 8;
  // Linux's 1 s scan period and hot threshold are scaled to this short run (a few ms).
  c.tpp.numa_balancing_scan_period_min_ms = 0.2;
  c.tpp.numa_balancing_hot_threshold_ms = 0.2;
  c.tpp.min_free_kbytes = 64;
  c.tpp.watermark_scale_factor = 200;  // a 2% gap: tiny nodes would otherwise get none
  c.tick_ns = 20e3;
  c.interval_ns = 1e6;
  return c;
}

struct GupsRun {
  TierCounters counters;
  std::string verdict;
};

GupsRun run_gups(Policy policy, double fast_fraction) {
  GupsOptions o;
  o.table_bytes = 8 << 20;
  o.hot_bytes = 1 << 20;
  o.updates = 400'000;
  Gups gups(o);
  Simulator sim(small_config(policy, fast_fraction, o.table_bytes), gups.footprint_bytes());
  gups.run(sim);
  return {sim.counters(), gups.verify()};
}

TEST(Simulator, GupsVerifiesUnderEveryPolicy) {
  for (Policy p : {Policy::kAllFast, Policy::kStatic, Policy::kTpp}) {
    const GupsRun r = run_gups(p, 0.25);
    EXPECT_EQ(r.verdict, "") << policy_name(p);
    EXPECT_EQ(r.counters.accesses, (8u << 20) / 8 + 2 * 400'000u);
    EXPECT_EQ(r.counters.fast_accesses + r.counters.slow_accesses, r.counters.llc_misses);
  }
}

TEST(Simulator, TppFollowsTheMovedHotSetWhereStaticPlacementCannot) {
  const GupsRun fast = run_gups(Policy::kAllFast, 0.25);
  const GupsRun stat = run_gups(Policy::kStatic, 0.25);
  const GupsRun tpp = run_gups(Policy::kTpp, 0.25);
  EXPECT_EQ(fast.counters.slow_accesses, 0u);
  EXPECT_EQ(stat.counters.pgmigrate_success, 0u);
  EXPECT_GT(tpp.counters.pgpromote_success, 0u);
  EXPECT_GT(tpp.counters.pgdemote_kswapd, 0u);
  EXPECT_GT(tpp.counters.numa_hint_faults, 0u);
  EXPECT_LT(fast.counters.elapsed_ns, tpp.counters.elapsed_ns);
  EXPECT_LT(tpp.counters.slow_accesses, stat.counters.slow_accesses);
}

TEST(Simulator, MoreFastMemoryIsNeverSlowerUnderStaticPlacement) {
  double previous = 1e300;
  for (double f : {0.1, 0.3, 0.6, 1.2}) {
    const double t = run_gups(Policy::kStatic, f).counters.elapsed_ns;
    EXPECT_LE(t, previous * 1.0001) << f;
    previous = t;
  }
}

TEST(Simulator, TimeScaleLetsTppActWithinAShortRun) {
  GupsOptions o;
  o.table_bytes = 8 << 20;
  o.hot_bytes = 1 << 20;
  o.updates = 400'000;
  auto run = [&](double scale) {
    SimConfig c;  // Linux's TPP defaults: 1 s scan period and hot threshold
    c.policy = Policy::kTpp;
    c.fast_bytes = o.table_bytes / 4;
    c.llc_bytes = 256 * 1024;
    c.tpp.watermark_scale_factor = 200;
    c.time_scale = scale;
    Gups gups(o);
    Simulator sim(c, gups.footprint_bytes());
    gups.run(sim);
    EXPECT_EQ(gups.verify(), "");
    return sim.counters();
  };
  EXPECT_EQ(run(1).pgpromote_success, 0u);  // the run lasts a few ms: no second scan
  EXPECT_GT(run(1000).pgpromote_success, 0u);
  SimConfig bad;
  bad.time_scale = 0.5;
  EXPECT_THROW(Simulator(bad, 1 << 20), core::Error);
}

TEST(Simulator, KswapdRunsWhenWokenNotAtTheNextTick) {
  SimConfig c = small_config(Policy::kTpp, 0.5, 4 << 20);
  c.tick_ns = 1e15;  // background work would never run again after the first access
  Simulator sim(c, 4 << 20);
  const uint64_t base = sim.allocate(4 << 20);
  for (uint64_t a = 0; a < (4u << 20); a += 4096) sim.store(base + a);
  // First touch drove the fast node to its low watermark; kswapd demoted up to promo each time.
  EXPECT_GT(sim.counters().pgdemote_kswapd, 0u);
  EXPECT_GE(sim.policy().free_pages(Node::kFast), sim.policy().fast_watermarks().low);
}

TEST(Simulator, TheTuningHookResizesTheFastTierMidRun) {
  GupsOptions o;
  o.table_bytes = 8 << 20;
  o.hot_bytes = 1 << 20;
  o.updates = 400'000;
  Gups gups(o);
  SimConfig c = small_config(Policy::kTpp, 1.0, o.table_bytes);
  c.tuning_interval_ns = 1e6;
  std::vector<double> calls;
  uint64_t used_before = 0;
  c.on_tuning_interval = [&](Simulator& sim) {
    calls.push_back(sim.now_ns());
    if (calls.size() == 1) {
      CapacityActuator actuator(sim);
      EXPECT_EQ(actuator.apply(o.table_bytes / 4, true), "fast tier: 8192 KiB -> 2048 KiB\n");
      EXPECT_EQ(sim.fast_bytes(), o.table_bytes);  // a dry run changes nothing
      used_before = sim.policy().capacity(Node::kFast) - sim.policy().free_pages(Node::kFast);
      actuator.apply(o.table_bytes / 4, false);
      EXPECT_EQ(sim.fast_bytes(), o.table_bytes / 4);
    }
  };
  Simulator sim(c, gups.footprint_bytes());
  gups.run(sim);
  EXPECT_EQ(gups.verify(), "");
  ASSERT_GE(calls.size(), 2u);
  EXPECT_GE(calls[0], 1e6);
  EXPECT_GE(calls[1] - calls[0], 1e6);
  // What no longer fit was forced out at once (the only direct demotions of the run).
  ASSERT_GT(used_before, 512u);
  EXPECT_EQ(sim.counters().pgdemote_direct, used_before - 512);
  EXPECT_GT(sim.counters().slow_accesses, 0u);
  c.on_tuning_interval = [](Simulator&) {};
  c.tuning_interval_ns = 0;
  EXPECT_THROW(Simulator(c, 1 << 20), core::Error);
  SimConfig all_fast = small_config(Policy::kAllFast, 1.0, 1 << 20);
  Simulator reference(all_fast, 1 << 20);
  EXPECT_THROW(reference.set_fast_bytes(1 << 19), core::Error);  // it has no fast-tier size
}

TEST(Graphs, KroneckerIsSkewedAndUniformIsNot) {
  for (const char* kind : {"kronecker", "uniform"}) {
    GraphOptions o;
    o.kind = kind;
    o.scale = 12;
    const Csr g = make_graph(o);
    uint64_t max_degree = 0;
    for (uint32_t v = 0; v < g.n; ++v) {
      max_degree = std::max<uint64_t>(max_degree, g.offsets[v + 1] - g.offsets[v]);
    }
    const double mean = static_cast<double>(g.neighbors.size()) / g.n;
    EXPECT_NEAR(mean, 16, 1.5) << kind;
    if (std::string(kind) == "kronecker") {
      EXPECT_GT(max_degree, 20 * mean);
    } else {
      EXPECT_LT(max_degree, 3 * mean);
    }
  }
  GraphOptions bad;
  bad.kind = "grid";
  EXPECT_THROW(make_graph(bad), core::Error);
}

TEST(Simulator, BfsBuildsAVerifiedTreeUnderTpp) {
  for (const char* kind : {"kronecker", "uniform"}) {
    GraphOptions o;
    o.kind = kind;
    o.scale = 12;
    Bfs bfs(o);
    Simulator sim(small_config(Policy::kTpp, 0.3, bfs.footprint_bytes()), bfs.footprint_bytes());
    bfs.run(sim);
    EXPECT_EQ(bfs.verify(), "") << kind;
    EXPECT_GT(sim.counters().accesses, 0u);
  }
}

TEST(Simulator, PageRankConvergesToAVerifiedFixedPoint) {
  GraphOptions o;
  o.scale = 12;
  PageRank pr(o);
  Simulator sim(small_config(Policy::kStatic, 0.3, pr.footprint_bytes()), pr.footprint_bytes());
  pr.run(sim);
  EXPECT_EQ(pr.verify(), "");
  EXPECT_GT(sim.counters().slow_accesses, 0u);
}

// A verifier that accepts wrong results proves nothing: each must reject a corrupted one.
TEST(Workloads, VerifiersRejectWrongResults) {
  GraphOptions o;
  o.scale = 10;
  Bfs bfs(o);
  Simulator a(small_config(Policy::kAllFast, 1, bfs.footprint_bytes()), bfs.footprint_bytes());
  bfs.run(a);
  ASSERT_EQ(bfs.verify(), "");
  // Nothing reached, not even the source.
  std::vector<int64_t> parent(1u << 10, -1);
  EXPECT_NE(bfs.check(parent), "");

  PageRank pr(o);
  Simulator b(small_config(Policy::kAllFast, 1, pr.footprint_bytes()), pr.footprint_bytes());
  pr.run(b);
  ASSERT_EQ(pr.verify(), "");
  EXPECT_NE(pr.check(std::vector<float>(1u << 10, 1.0f / 1024)), "");

  GupsOptions g;
  g.table_bytes = 1 << 20;
  g.hot_bytes = 1 << 16;
  g.updates = 1000;
  Gups gups(g);
  Simulator c(small_config(Policy::kAllFast, 1, g.table_bytes), g.table_bytes);
  gups.run(c);
  ASSERT_EQ(gups.verify(), "");
  std::vector<uint64_t> table((1 << 20) / 8);
  for (size_t i = 0; i < table.size(); ++i) table[i] = i;  // the updates never happened
  EXPECT_NE(gups.check(table), "");
}

TEST(Simulator, XsBenchLookupsVerifyAndRejectWrongSums) {
  XsBenchOptions o;
  o.gridpoints = 200;
  o.lookups = 2000;
  XsBench xs(o);
  Simulator sim(small_config(Policy::kTpp, 0.25, xs.footprint_bytes()), xs.footprint_bytes());
  xs.run(sim);
  EXPECT_EQ(xs.verify(), "");
  EXPECT_NE(xs.check(std::vector<double>(2000, 1.0)), "");
  EXPECT_THROW(XsBench(XsBenchOptions{.isotopes = 3}), core::Error);
}

TEST(Simulator, BTreeServesSkewedYcsbLookupsCorrectly) {
  BTreeOptions o;
  o.records = 20000;
  o.requests = 20000;
  BTree tree(o);
  // Zipfian(0.99): the most popular key takes several percent of the requests.
  std::map<uint64_t, int> counts;
  for (uint64_t k = 0; k < o.requests; ++k) ++counts[tree.request_key(k)];
  int top = 0;
  for (const auto& [key, c] : counts) top = std::max(top, c);
  EXPECT_GT(top, 0.03 * o.requests);
  EXPECT_GT(counts.size(), 2000u);
  Simulator sim(small_config(Policy::kTpp, 0.25, tree.footprint_bytes()), tree.footprint_bytes());
  tree.run(sim);
  EXPECT_EQ(tree.verify(), "");
  EXPECT_NE(tree.check(std::vector<int64_t>(o.requests, 1)), "");
}

TEST(Simulator, SsspMatchesDijkstra) {
  for (const char* kind : {"kronecker", "uniform"}) {
    GraphOptions o;
    o.kind = kind;
    o.scale = 11;
    Sssp sssp(o);
    Simulator sim(small_config(Policy::kTpp, 0.3, sssp.footprint_bytes()), sssp.footprint_bytes());
    sssp.run(sim);
    EXPECT_EQ(sssp.verify(), "") << kind;
    EXPECT_NE(sssp.check(std::vector<uint32_t>(1u << 11, 0)), "");
  }
}

TEST(Simulator, RejectsUnknownPoliciesAndBadTiming) {
  EXPECT_THROW(parse_policy("lru"), core::Error);
  SimConfig c = small_config(Policy::kTpp, 0.5, 1 << 20);
  c.timing.memory_level_parallelism = 0;
  EXPECT_THROW(Simulator(c, 1 << 20), core::Error);
  EXPECT_THROW(Gups(GupsOptions{.table_bytes = 1 << 20, .hot_bytes = 1 << 20}), core::Error);
}

}  // namespace
}  // namespace tuna::sim
