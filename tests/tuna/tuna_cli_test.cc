// `tuna sim` and `tuna oracle` as a user runs them, and their bad input.
#include <gtest/gtest.h>

#include <cstdlib>
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

}  // namespace
