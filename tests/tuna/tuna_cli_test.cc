// The tuna subcommands as a user runs them — sim, oracle, profile, advise, eval, telemetry,
// apply — and their bad input. The Linux commands run against fake trees only.
#include <gtest/gtest.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "support/run_cli.h"
#include "support/temp_dir.h"

namespace {

using Result = testing_support::CliResult;
Result tuna(const std::string& args) { return testing_support::run_cli(args, TUNA_BINARY); }

const std::string kSmall =
    " --table-mb 8 --hot-mb 1 --updates 200000 --llc-mb 1 --numa-balancing-scan-period-min-ms 1"
    " --numa-balancing-hot-threshold-ms 1 --watermark-scale-factor 200";

TEST(TunaCli, SimReportsSlowdownCountersAndSeries) {
  testing_support::TempDir dir;
  const Result r = tuna("sim" + kSmall + " --fast-ratio 0.25 --json " + dir.path("r.json"));
  ASSERT_EQ(r.exit_code, 0) << r.output;
  const auto j = nlohmann::json::parse(std::ifstream(dir.path("r.json")));
  EXPECT_GT(j["slowdown"].get<double>(), 0.0);
  EXPECT_GT(j["counters"]["slow_accesses"].get<uint64_t>(), 0u);
  EXPECT_TRUE(j["counters"].contains("pgpromote_success"));
  EXPECT_FALSE(j["series"].empty());
}

TEST(TunaCli, OracleFindsAMinimalRatioOnANonIncreasingStaticCurve) {
  testing_support::TempDir dir;
  const Result r = tuna("oracle" + kSmall + " --policy static --target 0.05 --json " +
                        dir.path("o.json") + " --plot " + dir.path("o.svg"));
  ASSERT_EQ(r.exit_code, 0) << r.output;
  std::string svg((std::istreambuf_iterator<char>(std::ifstream(dir.path("o.svg")).rdbuf())), {});
  EXPECT_NE(svg.find("<polyline"), std::string::npos);
  EXPECT_NE(svg.find("target 5%"), std::string::npos);
  const auto j = nlohmann::json::parse(std::ifstream(dir.path("o.json")));
  ASSERT_TRUE(j["minimal_fast_ratio"].is_number());
  double previous = 1e300;
  for (const auto& p : j["curve"]) {
    EXPECT_LE(p["slowdown"].get<double>(), previous * 1.0001 + 1e-9);
    previous = p["slowdown"].get<double>();
  }
  const double minimal = j["minimal_fast_ratio"].get<double>();
  for (const auto& p : j["curve"]) {
    if (p["fast_ratio"].get<double>() >= minimal) {
      EXPECT_LE(p["slowdown"].get<double>(), 0.05);
    }
  }
}

// Any program through lackey: here /usr/bin/sort, which nobody here wrote.
TEST(TunaCli, OracleOnAValgrindLackeyTraceOfAnUnmodifiedProgram) {
  if (std::system("command -v valgrind > /dev/null 2>&1") != 0) {
    GTEST_SKIP() << "valgrind is not installed (scripts/setup.sh installs it)";
  }
  testing_support::TempDir dir;
  const std::string trace = dir.path("sort.trace");
  ASSERT_EQ(std::system(("valgrind --tool=lackey --trace-mem=yes --log-file=" + trace +
                         " /usr/bin/sort /etc/services > /dev/null 2>&1")
                            .c_str()),
            0);
  const Result r = tuna("oracle -w trace --trace " + trace +
                        " --llc-mb 1 --policy static --target 0.01 --json " + dir.path("o.json"));
  ASSERT_EQ(r.exit_code, 0) << r.output;
  const auto j = nlohmann::json::parse(std::ifstream(dir.path("o.json")));
  ASSERT_GE(j["curve"].size(), 3u);
  double previous = 1e300;
  for (const auto& p : j["curve"]) {
    EXPECT_LE(p["slowdown"].get<double>(), previous * 1.0001 + 1e-9);
    previous = p["slowdown"].get<double>();
  }
  EXPECT_TRUE(j["minimal_fast_ratio"].is_number());
}

TEST(TunaCli, BadTracesAreRejectedNamingTheLine) {
  testing_support::TempDir dir;
  std::ofstream(dir.path("trunc.trace"))
      << "==1== Lackey\nI  0401b792,2\n S 1fff0006f0,8\n L 1fff00";
  std::ofstream(dir.path("junk.trace")) << "hello\n";
  std::ofstream(dir.path("empty.trace")) << "==1== nothing\nI  0401b792,2\n";
  const struct {
    std::string file, message;
  } cases[] = {{"trunc.trace", "line 4 is truncated"},
               {"junk.trace", "line 1 is not a lackey record"},
               {"empty.trace", "no memory accesses"},
               {"missing.trace", "cannot open trace"}};
  for (const auto& c : cases) {
    const Result r = tuna("sim -w trace --trace " + dir.path(c.file));
    EXPECT_EQ(r.exit_code, 2) << c.file << ": " << r.output;
    EXPECT_NE(r.output.find(c.message), std::string::npos) << r.output;
  }
  EXPECT_EQ(tuna("sim -w trace").exit_code, 2);
}

TEST(TunaCli, BadInputIsRejectedWithExitCode2) {
  for (const std::string args :
       {"sim --workload nosuch", "sim --fast-ratio 1.5", "sim --policy lru", "oracle --target -1",
        "sim --table-mb 1 --hot-mb 1", "sim --no-such-option", "sim -w bfs --scale 99",
        "sim -w bfs --graph grid"}) {
    const Result r = tuna(args);
    EXPECT_EQ(r.exit_code, 2) << args << ": " << r.output;
    EXPECT_EQ(r.output.find("internal error"), std::string::npos) << r.output;
  }
}

// A micro-benchmark grid and machine small enough for a test: 2 settings × 3 ratios.
const std::string kTinyMachine = " --llc-mb 1 --watermark-scale-factor 200";
void write_tiny_grid(const std::string& path) {
  std::ofstream(path) << R"({"base": {"footprint_bytes": 4194304, "hot_bytes": 524288,
                                      "accesses": 100000},
                             "axes": {"hot_fraction": [0.5, 0.99]},
                             "ratios": [0, 0.5, 1]})";
}

// Profiles the tiny grid (written to DIR/grid.json) into DIR/db.
Result profile_tiny_grid(testing_support::TempDir& dir) {
  write_tiny_grid(dir.path("grid.json"));
  return tuna("profile -q --out " + dir.path("db") + " --grid " + dir.path("grid.json") +
              kTinyMachine);
}

TEST(TunaCli, ProfileAdviseAndEvalEndToEnd) {
  testing_support::TempDir dir;
  const std::string db = dir.path("db");
  Result r = profile_tiny_grid(dir);
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_NE(r.output.find("6 runs (2 settings × 3 ratios)"), std::string::npos) << r.output;

  r = tuna("advise --db " + db + " -w gups --table-mb 4 --hot-mb 1 --updates 100000" +
           kTinyMachine + " --json " + dir.path("a.json"));
  ASSERT_EQ(r.exit_code, 0) << r.output;
  const auto a = nlohmann::json::parse(std::ifstream(dir.path("a.json")));
  EXPECT_GE(a["fast_ratio"].get<double>(), 0.0);
  EXPECT_LE(a["fast_ratio"].get<double>(), 1.0);
  EXPECT_EQ(a["steps"][0]["fast_ratio"].get<double>(), 1.0);  // telemetry at full fast memory
  EXPECT_TRUE(a["actual_slowdown"].is_number());
  EXPECT_TRUE(a["ours"]["actual_slowdown"].is_number());

  std::ofstream(dir.path("workloads.txt")) << "# two small kernels\n"
                                              "-w gups --table-mb 4 --hot-mb 1 --updates 100000\n"
                                              "-w bfs --scale 12\n";
  r = tuna("eval --db " + db + " --workloads " + dir.path("workloads.txt") + kTinyMachine +
           " --json " + dir.path("e.json") + " --plot " + dir.path("e.svg"));
  ASSERT_EQ(r.exit_code, 0) << r.output;
  const auto e = nlohmann::json::parse(std::ifstream(dir.path("e.json")));
  ASSERT_EQ(e["workloads"].size(), 2u);
  for (const auto& w : e["workloads"]) {
    // Null when no ratio meets the target (tiny GUPS churns even with all its memory fast).
    EXPECT_TRUE(w["oracle"]["fast_ratio"].is_number() || w["oracle"]["fast_ratio"].is_null());
    EXPECT_FALSE(w["oracle"]["curve"].empty());
    EXPECT_TRUE(w["tuna_actual_slowdown"].is_number());
    EXPECT_EQ(w["tuna_violation"].get<bool>(),
              w["feasible"].get<bool>() && w["tuna_actual_slowdown"].get<double>() > 0.05);
    EXPECT_GE(w["ours"]["fast_ratio"].get<double>(), 0.0);
    EXPECT_EQ(w["ours"]["steps"][0]["fast_ratio"].get<double>(), 1.0);
  }
  EXPECT_TRUE(e["summary"].contains("captured_of_oracle"));
  std::string svg((std::istreambuf_iterator<char>(std::ifstream(dir.path("e.svg")).rdbuf())), {});
  EXPECT_NE(svg.find("<circle"), std::string::npos);
}

TEST(TunaCli, TuneResizesOnlineAndAccountsForEveryInterval) {
  testing_support::TempDir dir;
  const std::string db = dir.path("db");
  ASSERT_EQ(profile_tiny_grid(dir).exit_code, 0);
  const std::string workload =
      " -w microbench --table-mb 4 --phase-hot-mb 1,3,1 --hot-fraction 0.99 --accesses 600000";
  Result r = tuna("tune --db " + db + workload + kTinyMachine + " --interval-ms 500 --json " +
                  dir.path("t.json") + " --plot " + dir.path("t.svg"));
  ASSERT_EQ(r.exit_code, 0) << r.output;
  const auto t = nlohmann::json::parse(std::ifstream(dir.path("t.json")));
  ASSERT_EQ(t["policies"].size(), 2u);
  for (const auto& p : t["policies"]) {
    const auto& steps = p["steps"];
    ASSERT_GE(steps.size(), 3u) << p["policy"];
    EXPECT_EQ(steps[0]["fast_ratio"].get<double>(), 1.0);  // the controller starts with all
    double accesses = 0, over = 0, end = 0;
    for (size_t i = 0; i < steps.size(); ++i) {
      accesses += steps[i]["counters"]["accesses"].get<double>();
      over += steps[i]["actual_slowdown"].get<double>() > 0.05;
      if (i > 0) {
        EXPECT_EQ(steps[i]["fast_ratio"], steps[i - 1]["next_ratio"]);
      }
      EXPECT_DOUBLE_EQ(steps[i]["start_ms"].get<double>(), end);
      end = steps[i]["end_ms"].get<double>();
    }
    // 512 Ki first-touch stores, 600 k reads, a fifth of them also written.
    EXPECT_NEAR(accesses, 524288 + 1.2 * 600000, 3000);
    EXPECT_EQ(over, p["intervals_over_target"].get<int>());
    const double saving = p["saving"].get<double>();
    EXPECT_GT(saving, 0.0) << p["policy"];  // it did shrink
    EXPECT_LE(saving, 1.0);
  }
  std::string svg((std::istreambuf_iterator<char>(std::ifstream(dir.path("t.svg")).rdbuf())), {});
  EXPECT_NE(svg.find("fast memory chosen over time"), std::string::npos);
  for (const std::string bad : {" --interval-ms 0", " --policy best", " --target 1.5"}) {
    r = tuna("tune --db " + db + workload + kTinyMachine + bad);
    EXPECT_EQ(r.exit_code, 2) << bad << ": " << r.output;
  }
  r = tuna("tune --db " + db + workload + " --llc-mb 2");
  EXPECT_EQ(r.exit_code, 2) << r.output;  // another machine than the database's
  EXPECT_NE(r.output.find("llc_mb"), std::string::npos) << r.output;
}

TEST(TunaCli, BadDatabasesGridsAndTargetsAreRejected) {
  testing_support::TempDir dir;
  const std::string db = dir.path("db");
  ASSERT_EQ(profile_tiny_grid(dir).exit_code, 0);
  const std::string gups = " -w gups --table-mb 4 --hot-mb 1 --updates 100000";
  auto expect_rejected = [&](const std::string& args, const std::string& says) {
    const Result r = tuna(args);
    EXPECT_EQ(r.exit_code, 2) << args << ": " << r.output;
    EXPECT_NE(r.output.find(says), std::string::npos) << args << ": " << r.output;
  };
  expect_rejected("advise --db " + db + gups + " --llc-mb 2 --watermark-scale-factor 200",
                  "another platform configuration: llc_mb 1 in the database, 2 here");
  expect_rejected("advise --db " + db + gups + kTinyMachine + " --target 1.5", "--target");
  expect_rejected("advise --db " + dir.path("none") + gups, "not a Tuna performance database");
  expect_rejected("profile --out " + db + " --platform linux", "only 'sim'");
  std::ofstream(dir.path("bad-grid.json")) << R"({"axes": {"hotness": [1]}, "ratios": [0, 1]})";
  expect_rejected("profile --out " + dir.path("db2") + " --grid " + dir.path("bad-grid.json"),
                  "unknown knob 'hotness'");
  std::ofstream(dir.path("not-json.json")) << "{ratios: [0, 1";
  expect_rejected("profile --out " + dir.path("db2") + " --grid " + dir.path("not-json.json"),
                  "not JSON");
  std::ofstream(dir.path("wl.txt")) << "-w bfs --scale nine\n";
  expect_rejected("eval --db " + db + " --workloads " + dir.path("wl.txt") + kTinyMachine,
                  "-w bfs --scale nine");
  {
    std::fstream f(db + "/perf.tdb", std::ios::in | std::ios::out | std::ios::binary);
    f.seekp(70);
    f.put('\x5a');
  }
  expect_rejected("advise --db " + db + gups + kTinyMachine, "perf.tdb");
}

// A fake root with this machine's captured /proc files and the two sysctls they were taken with.
std::string fake_linux_root(const testing_support::TempDir& dir) {
  namespace fs = std::filesystem;
  const fs::path root = dir.path("root");
  const fs::path data = fs::path(ATTNCACHE_SOURCE_DIR) / "tests" / "data" / "linux";
  fs::create_directories(root / "proc" / "sys" / "vm");
  fs::create_directories(root / "sys" / "devices" / "system" / "node" / "node0");
  fs::copy_file(data / "zoneinfo", root / "proc" / "zoneinfo");
  fs::copy_file(data / "vmstat", root / "proc" / "vmstat");
  const fs::path node0 = root / "sys" / "devices" / "system" / "node" / "node0";
  fs::copy_file(data / "node0_meminfo", node0 / "meminfo");
  fs::copy_file(data / "node0_vmstat", node0 / "vmstat");
  std::ofstream(node0 / "cpulist") << "0-1\n";
  std::ofstream(root / "proc" / "sys" / "vm" / "watermark_scale_factor") << "10\n";
  std::ofstream(root / "proc" / "sys" / "vm" / "min_free_kbytes") << "67584\n";
  return root.string();
}

std::string read_text(const std::string& path) {
  std::ifstream in(path);
  return {std::istreambuf_iterator<char>(in), {}};
}

TEST(TunaCli, TelemetryAndWatermarksOnAFakeTree) {
  testing_support::TempDir dir;
  const std::string root = fake_linux_root(dir);
  Result r = tuna("telemetry --root " + root + " --count 1 --interval 0.01");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_NE(r.output.find("promoted"), std::string::npos);

  const std::string wsf = root + "/proc/sys/vm/watermark_scale_factor";
  r = tuna("apply --actuator watermark --fast-mb 4096 --dry-run --root " + root);
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_NE(r.output.find("dry run"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("vm.watermark_scale_factor: 10 -> "), std::string::npos) << r.output;
  EXPECT_EQ(read_text(wsf), "10\n");  // nothing written

  r = tuna("apply --actuator watermark --fast-mb 4096 --root " + root);
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_NE(read_text(wsf), "10\n");
  // A later call records the raised values as its own; restore only undoes its own changes.
  r = tuna("apply --actuator watermark --restore --root " + root);
  EXPECT_EQ(r.exit_code, 0) << r.output;
  EXPECT_NE(r.output.find("nothing to change"), std::string::npos) << r.output;

  r = tuna("apply --actuator balloon --fast-mb 1024 --dry-run --root " + root);
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_NE(r.output.find("balloon on node 0"), std::string::npos) << r.output;

  for (const std::string& args :
       {"apply --actuator lever --fast-mb 1 --root " + root, "apply --root " + root,
        "apply --fast-mb 1 --root " + dir.path("nowhere"), "telemetry --root " + dir.path("nowhere")}) {
    r = tuna(args);
    EXPECT_EQ(r.exit_code, 2) << args << ": " << r.output;
  }
}

}  // namespace
