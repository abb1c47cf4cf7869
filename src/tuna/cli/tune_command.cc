#include "tuna/cli/tune_command.h"

#include <algorithm>
#include <cstdio>
#include <memory>

#include "tuna/cli/cli_util.h"
#include "tuna/model/oracle.h"
#include "tuna/runner.h"

namespace tuna::cli {
namespace {

struct TuneOptions {
  std::string db, json, plot, policies = "both";
  WorkloadOptions workload;
  MachineOptions machine;
  AdviseOptions advise;
  GuardOptions guard;
  double interval_ms = 5000;
  bool oracle = false;
};

// The all-fast run's elapsed time after `accesses` accesses, interpolated between its samples:
// the same instruction stream, so equal access counts are equal progress.
class AllFastClock {
 public:
  explicit AllFastClock(const RunResult& r) {
    points_.emplace_back(0.0, 0.0);
    for (const auto& s : r.series) {
      points_.emplace_back(s["accesses"].get<double>(), s["elapsed_ns"].get<double>());
    }
    points_.emplace_back(static_cast<double>(r.counters.accesses), r.counters.elapsed_ns);
  }
  double at(double accesses) const {
    auto it = std::lower_bound(points_.begin(), points_.end(), std::make_pair(accesses, -1.0));
    if (it == points_.begin()) return 0;
    if (it == points_.end()) return points_.back().second;
    const auto& [a1, t1] = *it;
    const auto& [a0, t0] = *(it - 1);
    return a1 > a0 ? t0 + (accesses - a0) / (a1 - a0) * (t1 - t0) : t1;
  }

 private:
  std::vector<std::pair<double, double>> points_;  // (accesses, elapsed), increasing
};

struct PolicyReport {
  nlohmann::json json;
  core::PlotSeries ratio_series, slowdown_series;
};

PolicyReport evaluate(const std::string& name, const TunedRun& t, const AllFastClock& clock,
                      double all_fast_ns, double target, double resolution) {
  PolicyReport out;
  out.ratio_series.name = name;
  out.slowdown_series.name = name;
  nlohmann::json steps = nlohmann::json::array();
  double accesses = 0, weighted_ratio = 0, over_ns = 0;
  int over = 0, changes = 0;
  double settled_ns = -1;
  for (size_t i = 0; i < t.steps.size(); ++i) {
    const ControllerStep& s = t.steps[i];
    const double a0 = accesses;
    accesses += static_cast<double>(s.window.accesses);
    const double reference = clock.at(accesses) - clock.at(a0);
    const double actual = reference > 0 ? (s.end_ns - s.start_ns) / reference - 1 : 0;
    weighted_ratio += s.fast_ratio * (s.end_ns - s.start_ns);
    if (actual > target) ++over, over_ns += s.end_ns - s.start_ns;
    if (std::abs(s.next_ratio - s.fast_ratio) > resolution / 2) ++changes;
    if (settled_ns < 0 && i + 1 < t.steps.size() &&
        std::abs(s.next_ratio - s.fast_ratio) <= resolution / 2) {
      settled_ns = s.end_ns;
    }
    out.ratio_series.points.emplace_back(s.start_ns / 1e6, s.fast_ratio);
    // Just before the end, so that the step up or down is drawn vertical (points go in x order).
    out.ratio_series.points.emplace_back(s.end_ns / 1e6 * (1 - 1e-9), s.fast_ratio);
    out.slowdown_series.points.emplace_back((s.start_ns + s.end_ns) / 2e6, 100 * actual);
    steps.push_back({{"start_ms", s.start_ns / 1e6},
                     {"end_ms", s.end_ns / 1e6},
                     {"fast_ratio", s.fast_ratio},
                     {"predicted_slowdown", s.predicted},
                     {"observed_slowdown", s.observed},
                     {"actual_slowdown", actual},
                     {"next_ratio", s.next_ratio},
                     {"counters", counters_json(s.window)}});
  }
  const double elapsed = t.run.counters.elapsed_ns;
  const double mean_ratio = elapsed > 0 ? weighted_ratio / elapsed : 1;
  out.json = {{"policy", name},
              {"actual_slowdown", elapsed / all_fast_ns - 1},
              {"mean_fast_ratio", mean_ratio},
              {"saving", 1 - mean_ratio},
              {"final_ratio", t.steps.empty() ? 1.0 : t.steps.back().fast_ratio},
              {"intervals", t.steps.size()},
              {"intervals_over_target", over},
              {"time_over_target", elapsed > 0 ? over_ns / elapsed : 0},
              {"size_changes", changes},
              {"first_settled_ms", settled_ns < 0 ? nlohmann::json(nullptr) : nlohmann::json(settled_ns / 1e6)},
              {"steps", steps}};
  return out;
}

void run_tune(const TuneOptions& o) {
  check_target(o.advise.target);
  if (!(o.interval_ms > 0)) core::throw_bad_input("--interval-ms must be positive");
  if (o.policies != "both" && o.policies != "ours" && o.policies != "tuna") {
    core::throw_bad_input("--policy '", o.policies, "' (ours, tuna or both)");
  }
  const PerfDatabase db = PerfDatabase::open(o.db);
  db.check_platform(machine_json(o.machine));
  const double interval_ns = o.interval_ms * 1e6;
  const double scale = o.machine.config.time_scale;
  // The all-fast reference, sampled twenty times per tuning interval.
  MachineOptions fine = o.machine;
  fine.config.interval_ns = interval_ns / scale / 20;
  const RunResult all_fast = run_workload(o.workload, fine, sim::Policy::kAllFast, 1);
  const AllFastClock clock(all_fast);
  const double all_fast_ns = all_fast.counters.elapsed_ns;
  std::fprintf(stderr, "all-fast run: %.1f ms simulated; tuning every %.0f ms of Linux time = "
               "%.3f ms simulated (time scale %g)\n",
               all_fast_ns / 1e6, o.interval_ms, o.interval_ms / scale, scale);

  const PlatformCosts costs = platform_costs(o.machine);
  std::vector<std::unique_ptr<SizingPolicy>> policies;
  if (o.policies != "tuna") {
    GuardOptions g = o.guard;
    g.target = o.advise.target;
    policies.push_back(make_guarded_policy(calibrate(db, costs), costs, g));
  }
  if (o.policies != "ours") policies.push_back(make_tuna_policy(db, o.advise));

  nlohmann::json reports = nlohmann::json::array();
  core::LinePlot ratio_plot{"fast memory chosen over time", "simulated time (ms)",
                            "fast memory (fraction of footprint)", {}, {}, {}};
  std::printf("%-6s %8s %8s %8s %6s %9s %8s %9s\n", "policy", "saving", "actual", "final",
              "steps", "over τ", "changes", "settled");
  for (const auto& policy : policies) {
    const std::unique_ptr<Workload> w = make_workload(o.workload);
    const TunedRun t = run_tuned(*w, o.machine, *policy, interval_ns);
    PolicyReport r =
        evaluate(policy->name(), t, clock, all_fast_ns, o.advise.target, o.advise.resolution);
    const nlohmann::json& j = r.json;
    std::printf("%-6s %7.1f%% %7.2f%% %8.2f %6zu %9d %8d %9s\n", policy->name().c_str(),
                100 * j["saving"].get<double>(), 100 * j["actual_slowdown"].get<double>(),
                j["final_ratio"].get<double>(), t.steps.size(), j["intervals_over_target"].get<int>(),
                j["size_changes"].get<int>(),
                j["first_settled_ms"].is_null()
                    ? "never"
                    : core::cat(static_cast<int>(j["first_settled_ms"].get<double>()), " ms").c_str());
    ratio_plot.series.push_back(std::move(r.ratio_series));
    reports.push_back(r.json);
  }
  nlohmann::json report = {{"workload", o.workload.name},
                           {"target", o.advise.target},
                           {"interval_ms", o.interval_ms},
                           {"interval_simulated_ms", o.interval_ms / scale},
                           {"all_fast_ns", all_fast_ns},
                           {"machine", machine_json(o.machine)},
                           {"policies", reports}};
  if (o.oracle) {
    const OracleResult oracle = find_minimal_ratio(
        [&](double r) {
          return run_workload(o.workload, o.machine, sim::Policy::kTpp, r).counters.elapsed_ns /
                     all_fast_ns - 1;
        },
        o.advise.target, 0.01);
    if (oracle.minimal_ratio) {
      report["static_oracle_ratio"] = *oracle.minimal_ratio;
      ratio_plot.y_marks.emplace_back("static oracle", *oracle.minimal_ratio);
      std::printf("static oracle (one size for the whole run): %.2f, saving %.1f%%\n",
                  *oracle.minimal_ratio, 100 * (1 - *oracle.minimal_ratio));
    } else {
      report["static_oracle_ratio"] = nullptr;
      std::printf("static oracle: even all fast memory misses the target\n");
    }
  }
  write_json(o.json, report);
  write_plot(o.plot, ratio_plot);
}

}  // namespace

void add_tune_command(CLI::App& app) {
  auto o = std::make_shared<TuneOptions>();
  CLI::App* cmd = app.add_subcommand(
      "tune",
      "Run a workload under the memory-tuning controller: it starts with all fast memory and, "
      "at the end of every tuning interval, re-sizes the fast tier from that interval's "
      "telemetry (ours: the miss profile through the calibrated model, guarded; tuna: the "
      "nearest micro-benchmarks' curves). Reports the size over time, the actual slowdown per "
      "interval (against an all-fast run at the same progress) and overall, and time to settle.");
  add_workload_options(cmd, &o->workload);
  add_machine_options(cmd, &o->machine);
  cmd->add_option("--db", o->db, "performance database directory (from `tuna profile`)")
      ->required();
  cmd->add_option("--target", o->advise.target, "allowed slowdown against all-fast, e.g. 0.05")
      ->capture_default_str();
  cmd->add_option("--interval-ms", o->interval_ms,
                  "tuning interval in ms of Linux time (the simulator dilates it like TPP's clock)")
      ->capture_default_str();
  cmd->add_option("--policy", o->policies, "ours, tuna or both")->capture_default_str();
  cmd->add_option("--neighbors", o->advise.neighbors, "tuna: settings whose curves are averaged")
      ->capture_default_str()
      ->check(CLI::Range(1, 1000));
  cmd->add_option("--margin", o->guard.margin, "ours: aim this far under the target")
      ->capture_default_str()
      ->check(CLI::Range(0.0, 0.5));
  cmd->add_flag("--oracle", o->oracle,
                "also find the static oracle (the one smallest size for the whole run; ~10 runs)");
  cmd->add_option("--json", o->json, "write the report here");
  cmd->add_option("--plot", o->plot, "write the chosen size over time as SVG here");
  cmd->callback([o] { run_tune(*o); });
}

}  // namespace tuna::cli
