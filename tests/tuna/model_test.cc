// Tuna's model: the performance database (round trip, nearest settings, interpolation, corrupt
// and foreign databases), the profiler's journal (resume, another grid), and the sizing rule
// against hand-made curves.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>

#include "core/error.h"
#include "support/temp_dir.h"
#include "tuna/model/advisor.h"
#include "tuna/model/histogram_model.h"
#include "tuna/model/oracle.h"
#include "tuna/model/perf_db.h"
#include "tuna/model/profiler.h"

namespace tuna {
namespace {

// Two settings on three ratios: a sensitive one (slowdown 40% → 10% → 0) with many misses and an
// insensitive one (4% → 2% → 0) with few.
PerfDbContents two_settings() {
  PerfDbContents c;
  c.platform = {{"llc_mb", 32}, {"time_scale", 1000}};
  c.settings = {{{"name", "sensitive"}}, {{"name", "insensitive"}}};
  c.ratios = {0, 0.5, 1};
  const double sensitive[] = {0.4, 0.1, 0}, insensitive[] = {0.04, 0.02, 0};
  for (uint32_t r = 0; r < 3; ++r) {
    c.runs.push_back({0, r, {100.0 * (2 - r), 1, 200}, sensitive[r]});
    c.runs.push_back({1, r, {10.0 * (2 - r), 20, 5}, insensitive[r]});
  }
  return c;
}

TEST(PerfDatabase, RoundTripsAndFindsTheNearestSetting) {
  testing_support::TempDir dir;
  write_perf_db(dir.path("db"), two_settings());
  const PerfDatabase db = PerfDatabase::open(dir.path("db"));
  EXPECT_EQ(db.run_count(), 6u);
  EXPECT_EQ(db.setting(1)["name"], "insensitive");
  // Metrics like the sensitive setting's at ratio 0.5 (searched among the runs at 0.5 only).
  const auto m = db.nearest({110, 1.2, 180}, 0.45, 2);
  ASSERT_EQ(m.size(), 2u);
  EXPECT_EQ(m[0].setting, 0u);
  EXPECT_LT(m[0].distance, m[1].distance);
  EXPECT_EQ(db.nearest({9, 19, 6}, 0.9, 1)[0].setting, 1u);
  EXPECT_DOUBLE_EQ(db.slowdown(0, 0.25), 0.25);  // halfway between 0.4 and 0.1
  EXPECT_DOUBLE_EQ(db.slowdown(1, 1), 0.0);
  EXPECT_NO_THROW(db.check_platform({{"llc_mb", 32}}));
  try {
    db.check_platform({{"llc_mb", 8}, {"time_scale", 1000}});
    FAIL() << "another platform was accepted";
  } catch (const core::Error& e) {
    EXPECT_NE(std::string(e.what()).find("llc_mb 32 in the database, 8 here"), std::string::npos)
        << e.what();
  }
}

TEST(PerfDatabase, RejectsIncompleteGridsCorruptFilesAndMissingDatabases) {
  testing_support::TempDir dir;
  PerfDbContents c = two_settings();
  c.runs.pop_back();
  EXPECT_THROW(write_perf_db(dir.path("db"), c), core::Error);
  EXPECT_THROW(PerfDatabase::open(dir.path("nowhere")), core::Error);
  write_perf_db(dir.path("db"), two_settings());
  const std::string store = dir.path("db") + "/perf.tdb";
  {
    std::fstream f(store, std::ios::in | std::ios::out | std::ios::binary);
    f.seekp(70);  // inside the first record
    f.put('\x5a');
  }
  EXPECT_THROW(PerfDatabase::open(dir.path("db")), core::Error);
  write_perf_db(dir.path("db"), two_settings());
  std::filesystem::resize_file(store, std::filesystem::file_size(store) / 2);
  EXPECT_THROW(PerfDatabase::open(dir.path("db")), core::Error);
}

TEST(Advisor, ChoosesTheSmallestSizeWhosePredictionMeetsTheTarget) {
  testing_support::TempDir dir;
  write_perf_db(dir.path("db"), two_settings());
  const PerfDatabase db = PerfDatabase::open(dir.path("db"));
  const std::vector<SettingMatch> sensitive = {{0, 0}};
  // 0.1 at 0.5, 0 at 1: 5% is reached at 0.75.
  EXPECT_NEAR(minimal_predicted_ratio(db, sensitive, 0.05, 0.01), 0.75, 1e-9);
  EXPECT_NEAR(minimal_predicted_ratio(db, {{1, 0}}, 0.05, 0.01), 0.0, 1e-9);
  // The controller: a workload that always looks like the sensitive setting settles at 0.75.
  AdviseOptions one;
  one.neighbors = 1;
  int runs = 0;
  const Advice a = advise(
      db,
      [&](double ratio) {
        ++runs;
        TierCounters c;
        c.accesses = 1'000'000;
        c.pgpromote_success = static_cast<uint64_t>(100 * (2 - 2 * ratio));
        c.compute_units = c.accesses;
        c.llc_misses = 200'000;
        c.elapsed_ns = 1e6;
        return c;
      },
      one);
  EXPECT_TRUE(a.converged);
  EXPECT_NEAR(a.fast_ratio, 0.75, 1e-9);
  EXPECT_NEAR(a.predicted_slowdown, 0.05, 1e-9);
  EXPECT_EQ(a.steps.front().fast_ratio, 1.0);
  EXPECT_EQ(runs, 2);  // full memory, then the chosen size confirms itself
  AdviseOptions bad;
  bad.target = 1.5;
  EXPECT_THROW(advise(db, [](double) { return TierCounters{}; }, bad), core::Error);
}

TEST(Oracle, SweepsThenBisectsToTheFirstRatioMeetingTheTarget) {
  int runs = 0;
  const OracleResult r = find_minimal_ratio(
      [&](double ratio) {
        ++runs;
        return 0.3 * (1 - ratio);  // 5% at 5/6
      },
      0.05, 0.01);
  ASSERT_TRUE(r.minimal_ratio.has_value());
  EXPECT_GE(*r.minimal_ratio, 5.0 / 6 - 1e-9);
  EXPECT_LT(*r.minimal_ratio, 5.0 / 6 + 0.01);
  EXPECT_EQ(runs, static_cast<int>(r.curve.size()));
  EXPECT_FALSE(find_minimal_ratio([](double) { return 0.5; }, 0.05, 0.01).minimal_ratio);
}

TEST(HistogramModel, StackDistancesCostAndCalibrationByHand) {
  TierCounters c;
  c.llc_misses = 8;
  c.miss_stall_ns = 80;  // 10 ns per miss
  c.elapsed_ns = 100;
  // Misses on pages 0 1 0 2 1 0 3 0 of 4: first misses (allocations) at 0 1 2 3; the others at
  // stack distances 1 (page 0: {1}), 2 (page 1: {0, 2}), 2 (page 0: {2, 1}), 1 (page 0: {3}).
  ProfileBuilder builder(4);
  for (uint64_t page : {0, 1, 0, 2, 1, 0, 3, 0}) builder.add_miss(page);
  const WorkloadProfile p = builder.finish(c);
  ASSERT_EQ(p.outside.size(), 101u);
  EXPECT_DOUBLE_EQ(p.outside[0], 1.0);  // no fast memory at all
  EXPECT_DOUBLE_EQ(p.outside[1], 0.5);  // one page holds allocations only
  EXPECT_DOUBLE_EQ(p.outside[25], 0.5);
  EXPECT_DOUBLE_EQ(p.outside[26], 0.25);
  EXPECT_DOUBLE_EQ(p.outside[50], 0.25);
  EXPECT_DOUBLE_EQ(p.outside[51], 0.0);
  PlatformCosts costs;
  costs.latency_ratio = 2;
  // 8 misses · 0.25 outside · 10 ns · (2 − 1) over 100 ns.
  EXPECT_NEAR(slow_traffic_cost(p, costs, 0.5), 0.2, 1e-12);
  costs.usable = [](double r, uint64_t) { return r / 2; };  // half is watermark headroom
  EXPECT_NEAR(slow_traffic_cost(p, costs, 1.0), 0.2, 1e-12);
  // Points on a line are fitted exactly whatever their weights.
  const SlowdownModel m = calibrate({{0.1, 0.21}, {0.2, 0.41}, {0.4, 0.81}});
  EXPECT_NEAR(m.alpha, 2, 1e-9);
  EXPECT_NEAR(m.beta, 0.01, 1e-9);
  // Off the line, the runs near the target pull harder than a 60% one.
  const SlowdownModel w = calibrate({{0.0, 0.0}, {0.05, 0.05}, {0.6, 0.9}});
  const SlowdownModel unweighted_alpha_would_be{(0.9 * 0.6 + 0.05 * 0.05 - 0.65 * 0.95 / 3) /
                                                    (0.6 * 0.6 + 0.05 * 0.05 - 0.65 * 0.65 / 3),
                                                0};
  EXPECT_LT(w.alpha, unweighted_alpha_would_be.alpha);
}

TEST(HistogramModel, StackDistancesSurviveRenumberingOverLongStreams) {
  // A cycle over 100 pages: after the first pass every miss is at distance 99, over more misses
  // than the tree has times (it renumbers them).
  ProfileBuilder builder(100);
  const uint64_t n = 3'000'000;
  for (uint64_t t = 0; t < n; ++t) builder.add_miss(t % 100);
  TierCounters c;
  c.llc_misses = n;
  const WorkloadProfile p = builder.finish(c);
  EXPECT_NEAR(p.outside[99], static_cast<double>(n - 100) / n, 1e-12);
  EXPECT_DOUBLE_EQ(p.outside[100], 0.0);
}

TEST(HistogramModel, ObservedSlowdownFromCountersByHand) {
  TierCounters c;
  c.fast_accesses = 100;
  c.slow_accesses = 50;
  c.miss_stall_ns = 100 * 10 + 50 * 20;  // 10 ns per fast miss, 20 per slow
  c.slow_stall_ns = 50 * 20;
  c.numa_hint_faults = 10;
  c.pgpromote_success = 2;
  c.elapsed_ns = 2590;
  PlatformCosts costs;
  costs.latency_ratio = 2;
  costs.hint_fault_ns = 5;
  costs.migrate_page_ns = 20;
  // extra = 50 · 10 + 10 · 5 + 2 · 20 = 590 over the other 2000 ns.
  EXPECT_NEAR(observed_slowdown(c, costs), 0.295, 1e-12);
}

// A workload whose pages are placed perfectly by hotness: its counters at any size follow from
// its histogram, scaled by `miss_factor` (1: our model's view; 2: twice the slow traffic).
std::pair<TierCounters, WorkloadProfile> synthetic_run(double ratio, double miss_factor) {
  std::vector<uint32_t> page_misses(100);
  for (int i = 0; i < 100; ++i) page_misses[i] = 1000 / (i + 1);  // Zipf-like
  std::vector<uint32_t> sorted = page_misses;
  double total = 0, outside = 0;
  for (int i = 0; i < 100; ++i) total += sorted[i];
  for (int i = static_cast<int>(std::lround(ratio * 100)); i < 100; ++i) outside += sorted[i];
  TierCounters c;
  c.llc_misses = static_cast<uint64_t>(total);
  c.slow_accesses = static_cast<uint64_t>(std::min(total, miss_factor * outside));
  c.fast_accesses = c.llc_misses - c.slow_accesses;
  c.slow_stall_ns = 22.0 * c.slow_accesses;
  c.miss_stall_ns = 10.0 * c.fast_accesses + c.slow_stall_ns;
  c.elapsed_ns = 200000 + c.miss_stall_ns;
  // Pages sorted by misses stand in for the stack: page i at distance i.
  WorkloadProfile p;
  p.misses = total;
  p.stall_per_miss_ns = c.miss_stall_ns / total;
  p.elapsed_ns = c.elapsed_ns;
  p.footprint_pages = 100;
  p.outside.assign(101, 0);
  for (int k = 0; k <= 100; ++k) {
    double out = 0;
    for (int i = k; i < 100; ++i) out += sorted[i];
    p.outside[k] = out / total;
  }
  return {c, p};
}

TEST(HistogramModel, GuardMeetsTheTargetWhenTheModelIsRightAndWhenItIsOptimistic) {
  PlatformCosts costs;
  costs.latency_ratio = 2.2;
  GuardOptions g;
  g.target = 0.05;
  g.margin = 0.01;
  for (double factor : {1.0, 2.0}) {
    const GuardedChoice c = choose_with_guard(
        SlowdownModel{}, costs, [&](double r, bool) { return synthetic_run(r, factor); }, g);
    const auto [counters, unused] = synthetic_run(c.fast_ratio, factor);
    const double actual = observed_slowdown(counters, costs);
    EXPECT_LE(actual, 0.05) << factor;
    EXPECT_LT(c.fast_ratio, 1.0) << factor;
    // A smaller size would have missed the target by more than the guard's margin allows.
    const auto [smaller, unused2] = synthetic_run(c.fast_ratio - 0.05, factor);
    EXPECT_GT(observed_slowdown(smaller, costs), 0.04 - 1e-9) << factor;
    if (factor == 1.0) {
      EXPECT_NEAR(c.confidence, 1.0, 0.1);
    } else {
      EXPECT_GT(c.steps.size(), 2u);  // it had to grow
    }
  }
}

// A kernel whose result is always wrong: every run of it must fail loudly, never report a size.
class WrongKernel : public Workload {
 public:
  std::string name() const override { return "wrong"; }
  uint64_t footprint_bytes() const override { return 1 << 20; }
  void run(sim::MemorySystem& memory) override {
    SimArray<uint64_t> a(memory, 1024);
    for (size_t i = 0; i < a.size(); ++i) a.set(i, i);
  }
  std::string verify() const override { return "wrong: word 7 is 8"; }
};

TEST(Runner, AWorkloadThatFailsItsVerifierIsAnError) {
  WrongKernel w;
  try {
    run_workload(w, MachineOptions{}, sim::Policy::kTpp, 0.5);
    FAIL() << "a wrong result was accepted";
  } catch (const core::Error& e) {
    EXPECT_EQ(e.kind(), core::ErrorKind::kInternal);
    EXPECT_NE(std::string(e.what()).find("wrong: word 7 is 8"), std::string::npos) << e.what();
  }
}

ProfileGrid tiny_grid() {
  return grid_from_json({{"base", {{"footprint_bytes", 2 << 20}, {"hot_bytes", 256 << 10},
                                   {"accesses", 50000}}},
                         {"axes", {{"hot_fraction", {0.5, 0.99}}}},
                         {"ratios", {0, 0.5, 1}}});
}

MachineOptions tiny_machine() {
  MachineOptions m;
  m.llc_mb = 1;
  m.config.tpp.watermark_scale_factor = 200;
  return m;
}

TEST(Profiler, FillsTheDatabaseAndResumesFromItsJournal) {
  testing_support::TempDir dir;
  const std::string db_dir = dir.path("db");
  profile(db_dir, tiny_grid(), tiny_machine(), 2, false);
  const PerfDatabase db = PerfDatabase::open(db_dir);
  EXPECT_EQ(db.run_count(), 6u);
  for (uint32_t s = 0; s < 2; ++s) {
    EXPECT_GT(db.slowdown(s, 0), db.slowdown(s, 1));  // slow memory costs time
  }
  // An interrupted profile: the journal's last run is cut in half and the database is gone.
  const std::string journal = db_dir + "/journal.jsonl";
  std::string text;
  {
    std::ifstream in(journal);
    text.assign(std::istreambuf_iterator<char>(in), {});
  }
  const size_t last = text.rfind('\n', text.size() - 2);
  std::ofstream(journal, std::ios::trunc) << text.substr(0, last + 10);
  std::filesystem::remove(db_dir + "/perf.tdb");
  profile(db_dir, tiny_grid(), tiny_machine(), 2, false);
  const PerfDatabase resumed = PerfDatabase::open(db_dir);
  for (uint32_t s = 0; s < 2; ++s) {
    for (double r : {0.0, 0.5, 1.0}) EXPECT_DOUBLE_EQ(resumed.slowdown(s, r), db.slowdown(s, r));
  }
  profile(db_dir, tiny_grid(), tiny_machine(), 1, false);  // the journal is still well formed
  EXPECT_EQ(resumed.profiles().size(), 2u);
  const SlowdownModel model = calibrate(resumed, platform_costs(tiny_machine()));
  EXPECT_GT(model.alpha, 0.0);
  // Another grid in the same directory is refused rather than mixed in.
  ProfileGrid other = tiny_grid();
  other.ratios = {0, 1};
  EXPECT_THROW(profile(db_dir, other, tiny_machine(), 1, false), core::Error);
}

TEST(Profiler, GridsNameTheirMistakes) {
  EXPECT_THROW(grid_from_json({{"axes", {{"hotness", {1}}}}, {"ratios", {0, 1}}}), core::Error);
  EXPECT_THROW(grid_from_json({{"axes", {{"hot_fraction", 0.5}}}, {"ratios", {0, 1}}}),
               core::Error);
  EXPECT_THROW(grid_from_json({{"ratios", {0.5, 0.2}}}), core::Error);
  EXPECT_THROW(grid_from_json({{"ratios", {0, 1}}, {"base", {{"hot_fraction", 2}}}}),
               core::Error);
  EXPECT_EQ(default_grid().settings.size(), 72u);
}

}  // namespace
}  // namespace tuna
