#include "tuna/cli/platform_commands.h"

#include <cstdio>
#include <memory>

#include "core/progress.h"
#include "core/stopwatch.h"
#include "tuna/cli/cli_util.h"
#include "tuna/model/oracle.h"
#include "tuna/runner.h"

namespace tuna::cli {
namespace {

struct SimCliOptions {
  WorkloadOptions workload;
  MachineOptions machine;
  std::string json, plot, policy = "tpp";
  double fast_ratio = 0.5, target = 0.05, precision = 0.01;
};

core::LinePlot migration_plot(const std::string& title, const nlohmann::json& series) {
  core::LinePlot chart{title, "simulated time (ms)", "pages per interval", {}, {}, {}};
  chart.series = {{"promoted", {}}, {"demoted", {}}};
  for (size_t i = 1; i < series.size(); ++i) {
    const auto& a = series[i - 1];
    const auto& b = series[i];
    auto delta = [&](const char* key) { return b[key].get<double>() - a[key].get<double>(); };
    const double t = b["time_ns"].get<double>() / 1e6;
    chart.series[0].points.emplace_back(t, delta("pgpromote_success"));
    chart.series[1].points.emplace_back(t, delta("pgdemote_kswapd") + delta("pgdemote_direct"));
  }
  return chart;
}

void run_sim(const SimCliOptions& o) {
  const sim::Policy p = sim::parse_policy(o.policy);
  check_ratio(o.fast_ratio, "--fast-ratio");
  core::Stopwatch watch;
  const RunResult ref = run_workload(o.workload, o.machine, sim::Policy::kAllFast, 1.0);
  const RunResult run = run_workload(o.workload, o.machine, p, o.fast_ratio);
  const double s = slowdown(run.counters, ref.counters);
  const TierCounters& c = run.counters;
  std::printf("%s, %s, fast ratio %.3f: simulated %.2f ms, all-fast %.2f ms, slowdown %.2f%%\n",
              o.workload.name.c_str(), o.policy.c_str(), o.fast_ratio, c.elapsed_ns / 1e6,
              ref.counters.elapsed_ns / 1e6, 100 * s);
  std::printf(
      "  accesses %llu, LLC misses %llu (slow tier %llu), promoted %llu, demoted %llu, hint "
      "faults %llu; host %.1f s\n",
      (unsigned long long)c.accesses, (unsigned long long)c.llc_misses,
      (unsigned long long)c.slow_accesses, (unsigned long long)c.pgpromote_success,
      (unsigned long long)c.pgdemote_kswapd, (unsigned long long)c.numa_hint_faults,
      watch.seconds());
  write_json(o.json, {{"workload", o.workload.name},
                      {"policy", o.policy},
                      {"fast_ratio", o.fast_ratio},
                      {"slowdown", s},
                      {"all_fast", counters_json(ref.counters)},
                      {"counters", counters_json(c)},
                      {"series", run.series}});
  write_plot(o.plot, migration_plot(
                         o.workload.name + ": page migrations per interval (" + o.policy + ")",
                         run.series));
}

void run_oracle(const SimCliOptions& o) {
  const sim::Policy p = sim::parse_policy(o.policy);
  check_ratio(o.target, "--target");
  const double ref =
      run_workload(o.workload, o.machine, sim::Policy::kAllFast, 1.0).counters.elapsed_ns;
  std::vector<nlohmann::json> counters;
  core::Progress progress("oracle sweep", 11, true);
  const OracleResult r = find_minimal_ratio(
      [&](double ratio) {
        const RunResult run = run_workload(o.workload, o.machine, p, ratio);
        counters.push_back({{"fast_ratio", ratio}, {"counters", counters_json(run.counters)}});
        return run.counters.elapsed_ns / ref - 1;
      },
      o.target, o.precision, [&] { progress.advance(1); });
  progress.finish();
  nlohmann::json curve = nlohmann::json::array();
  std::printf("%10s %10s\n", "fast ratio", "slowdown");
  for (const CurvePoint& pt : r.curve) {
    std::printf("%10.4f %9.2f%%\n", pt.fast_ratio, 100 * pt.slowdown);
    nlohmann::json point = {{"fast_ratio", pt.fast_ratio}, {"slowdown", pt.slowdown}};
    for (const auto& c : counters) {
      if (c["fast_ratio"] == pt.fast_ratio) point["counters"] = c["counters"];
    }
    curve.push_back(point);
  }
  if (r.minimal_ratio) {
    std::printf("minimal fast ratio meeting %.1f%%: %.4f of the footprint\n", 100 * o.target,
                *r.minimal_ratio);
  } else {
    std::printf("no ratio meets %.1f%%\n", 100 * o.target);
  }
  if (!o.plot.empty()) {
    core::LinePlot chart{o.workload.name + ": slowdown against fast memory (" + o.policy + ")",
                         "fast memory / footprint", "slowdown against all-fast", {}, {}, {}};
    chart.series.push_back({o.policy, {}});
    for (const CurvePoint& pt : r.curve) chart.series[0].points.emplace_back(pt.fast_ratio, pt.slowdown);
    chart.y_marks.emplace_back(core::cat("target ", 100 * o.target, "%"), o.target);
    if (r.minimal_ratio) chart.x_marks.emplace_back(core::cat("minimal ", *r.minimal_ratio), *r.minimal_ratio);
    write_plot(o.plot, chart);
  }
  write_json(o.json, {{"workload", o.workload.name},
                      {"policy", o.policy},
                      {"target", o.target},
                      {"all_fast_ns", ref},
                      {"minimal_fast_ratio", r.minimal_ratio ? nlohmann::json(*r.minimal_ratio)
                                                             : nlohmann::json()},
                      {"curve", curve}});
}

}  // namespace

void add_sim_command(CLI::App& app) {
  auto o = std::make_shared<SimCliOptions>();
  CLI::App* cmd = app.add_subcommand(
      "sim",
      "Run a workload once at a fast-memory ratio (of its footprint) and report simulated "
      "time, slowdown against all-fast, Linux-named counters and a time series.");
  add_workload_options(cmd, &o->workload);
  add_machine_options(cmd, &o->machine);
  cmd->add_option("--fast-ratio", o->fast_ratio, "fast memory as a fraction of the footprint")
      ->capture_default_str();
  cmd->add_option("--policy", o->policy, "tpp, static (first touch, no migration) or all-fast")
      ->capture_default_str();
  cmd->add_option("--json", o->json, "write the report here");
  cmd->add_option("--plot", o->plot,
                  "write pages promoted and demoted per sampling interval over time as SVG here");
  cmd->callback([o] { run_sim(*o); });
}

void add_oracle_command(CLI::App& app) {
  auto o = std::make_shared<SimCliOptions>();
  CLI::App* cmd = app.add_subcommand(
      "oracle",
      "Find the smallest fast-memory ratio whose slowdown against all-fast stays "
      "within the target: a coarse sweep, then bisection.");
  add_workload_options(cmd, &o->workload);
  add_machine_options(cmd, &o->machine);
  cmd->add_option("--target", o->target, "allowed slowdown, e.g. 0.05 for 5%")
      ->capture_default_str();
  cmd->add_option("--precision", o->precision, "bisection stops at this ratio width")
      ->capture_default_str();
  cmd->add_option("--policy", o->policy, "tpp or static")->capture_default_str();
  cmd->add_option("--json", o->json, "write the report here");
  cmd->add_option("--plot", o->plot, "write the slowdown curve as SVG here");
  cmd->callback([o] { run_oracle(*o); });
}

}  // namespace tuna::cli
