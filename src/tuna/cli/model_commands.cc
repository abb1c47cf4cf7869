#include "tuna/cli/model_commands.h"

#include <cstdio>
#include <fstream>
#include <memory>
#include <mutex>

#include "core/parallel.h"
#include "core/progress.h"
#include "core/stopwatch.h"
#include "tuna/cli/cli_util.h"
#include "tuna/model/accuracy.h"
#include "tuna/model/advisor.h"
#include "tuna/model/oracle.h"
#include "tuna/model/profiler.h"
#include "tuna/runner.h"

namespace tuna::cli {
namespace {

nlohmann::json metrics_json(const Metrics& m) {
  return {{"migration_per_maccess", m.migration_per_maccess},
          {"compute_per_access", m.compute_per_access},
          {"misses_per_kaccess", m.misses_per_kaccess}};
}

nlohmann::json advice_json(const Advice& a) {
  nlohmann::json steps = nlohmann::json::array();
  double t = 0;
  for (const TuningStep& s : a.steps) {
    nlohmann::json matches = nlohmann::json::array();
    for (const SettingMatch& m : s.matches) {
      matches.push_back({{"setting", m.setting}, {"distance", m.distance}});
    }
    t += s.simulated_ns;
    steps.push_back({{"fast_ratio", s.fast_ratio},
                     {"metrics", metrics_json(s.metrics)},
                     {"matches", matches},
                     {"chosen_ratio", s.chosen_ratio},
                     {"predicted_slowdown", s.predicted_slowdown},
                     {"interval_end_ns", t}});
  }
  return {{"fast_ratio", a.fast_ratio},
          {"predicted_slowdown", a.predicted_slowdown},
          {"converged", a.converged},
          {"steps", steps}};
}

struct ModelCliOptions {
  std::string db, out, grid, platform = "sim", json, workloads, plot;
  WorkloadOptions workload;
  MachineOptions machine;
  AdviseOptions advise;
  GuardOptions guard;
  double precision = 0.01;
  int jobs = 0;
  bool quiet = false;
};

// `what`: what runs in parallel, for the help text.
void add_parallel_options(CLI::App* cmd, ModelCliOptions* o, const std::string& what) {
  cmd->add_option("-j,--jobs", o->jobs, what + " in parallel (0: one per core)")
      ->capture_default_str()
      ->check(CLI::Range(0, 1024));
  cmd->add_flag("-q,--quiet", o->quiet, "no progress bar");
}

void add_advise_options(CLI::App* cmd, ModelCliOptions* o) {
  cmd->add_option("--db", o->db, "performance database directory (from `tuna profile`)")
      ->required();
  cmd->add_option("--target", o->advise.target, "allowed slowdown against all-fast, e.g. 0.05")
      ->capture_default_str();
  cmd->add_option("--neighbors", o->advise.neighbors,
                  "micro-benchmark settings whose slowdown curves are averaged")
      ->capture_default_str()
      ->check(CLI::Range(1, 1000));
  cmd->add_option("--max-steps", o->advise.max_steps,
                  "tuning intervals before the controller stops re-tuning")
      ->capture_default_str()
      ->check(CLI::Range(1, 100));
  cmd->add_option("--margin", o->guard.margin,
                  "ours: aim this far under the target (the guard's safety margin)")
      ->capture_default_str()
      ->check(CLI::Range(0.0, 0.5));
  cmd->add_option("--json", o->json, "write the report here");
}

void run_profile(const ModelCliOptions& o) {
  if (o.platform != "sim") {
    core::throw_bad_input("--platform '", o.platform,
                          "': only 'sim' can be profiled (a Linux tiered machine is not yet "
                          "supported)");
  }
  ProfileGrid grid = default_grid();
  if (!o.grid.empty()) {
    std::ifstream in(o.grid);
    if (!in) core::throw_bad_input("cannot read grid file ", o.grid);
    nlohmann::json j;
    try {
      j = nlohmann::json::parse(in);
    } catch (const nlohmann::json::exception& e) {
      core::throw_bad_input(o.grid, ": not JSON: ", e.what());
    }
    grid = grid_from_json(j);
  }
  core::Stopwatch watch;
  std::fprintf(stderr, "profiling %zu settings × %zu ratios into %s\n", grid.settings.size(),
               grid.ratios.size(), o.out.c_str());
  profile(o.out, grid, o.machine, o.jobs, !o.quiet);
  const PerfDatabase db = PerfDatabase::open(o.out);
  std::printf("performance database %s: %zu runs (%zu settings × %zu ratios) in %.1f s\n",
              o.out.c_str(), db.run_count(), db.setting_count(), db.ratios().size(),
              watch.seconds());
}

// What Tuna chose for one workload and what it cost, measured.
struct Sized {
  Advice advice;
  double actual_slowdown = 0;
};

Sized size_workload(const PerfDatabase& db, const WorkloadOptions& w, const MachineOptions& m,
                    const AdviseOptions& a, double all_fast_ns) {
  Sized s;
  s.advice = advise(db, [&](double r) { return run_workload(w, m, sim::Policy::kTpp, r).counters; },
                    a);
  s.actual_slowdown =
      run_workload(w, m, sim::Policy::kTpp, s.advice.fast_ratio).counters.elapsed_ns /
          all_fast_ns - 1;
  return s;
}

struct Guarded {
  GuardedChoice choice;
  double actual_slowdown = 0;
};

// `model`: ours, calibrated on the database for the machine `m` (calibrate(db, platform_costs(m))).
Guarded size_ours(const SlowdownModel& model, const WorkloadOptions& w, const MachineOptions& m,
                  const GuardOptions& g, double all_fast_ns) {
  const PlatformCosts costs = platform_costs(m);
  Guarded out;
  out.choice = choose_with_guard(
      model, costs,
      [&](double r, bool count) {
        RunResult run = run_workload(w, m, sim::Policy::kTpp, r, count);
        return std::make_pair(run.counters, std::move(run.profile));
      },
      g);
  out.actual_slowdown =
      run_workload(w, m, sim::Policy::kTpp, out.choice.fast_ratio).counters.elapsed_ns /
          all_fast_ns - 1;
  return out;
}

nlohmann::json guarded_json(const GuardedChoice& c) {
  nlohmann::json steps = nlohmann::json::array();
  for (const GuardStep& s : c.steps) {
    steps.push_back({{"fast_ratio", s.fast_ratio},
                     {"predicted_slowdown", s.predicted},
                     {"observed_slowdown", s.observed}});
  }
  return {{"fast_ratio", c.fast_ratio},
          {"model_predicted_slowdown", c.predicted_slowdown},
          {"confidence", c.confidence},
          {"steps", steps}};
}

void run_advise(const ModelCliOptions& o) {
  check_target(o.advise.target);
  const PerfDatabase db = PerfDatabase::open(o.db);
  db.check_platform(machine_json(o.machine));
  const double ref = run_workload(o.workload, o.machine, sim::Policy::kAllFast, 1).counters.elapsed_ns;
  const Sized s = size_workload(db, o.workload, o.machine, o.advise, ref);
  std::printf("Tuna (the paper's rule: nearest micro-benchmarks at the current size):\n");
  std::printf("%5s %10s %12s %12s %12s %10s %10s\n", "step", "fast ratio", "migr/Macc",
              "compute/acc", "miss/kacc", "chosen", "predicted");
  for (size_t i = 0; i < s.advice.steps.size(); ++i) {
    const TuningStep& t = s.advice.steps[i];
    std::printf("%5zu %10.2f %12.1f %12.2f %12.2f %10.2f %9.2f%%\n", i, t.fast_ratio,
                t.metrics.migration_per_maccess, t.metrics.compute_per_access,
                t.metrics.misses_per_kaccess, t.chosen_ratio, 100 * t.predicted_slowdown);
  }
  double tuna_ns = 0;
  for (const TuningStep& t : s.advice.steps) tuna_ns += t.simulated_ns;
  std::printf("Tuna: fast memory %.2f of the footprint (%s after %zu intervals, %.1f ms "
              "simulated), predicted slowdown %.2f%%, actual %.2f%% (target %.1f%%)\n",
              s.advice.fast_ratio, s.advice.converged ? "converged" : "not converged",
              s.advice.steps.size(), tuna_ns / 1e6, 100 * s.advice.predicted_slowdown,
              100 * s.actual_slowdown, 100 * o.advise.target);
  GuardOptions g = o.guard;
  g.target = o.advise.target;
  const Guarded ours =
      size_ours(calibrate(db, platform_costs(o.machine)), o.workload, o.machine, g, ref);
  std::printf("\nours (access histogram + calibrated model + guard):\n%5s %10s %10s %10s\n", "step",
              "fast ratio", "predicted", "observed");
  for (size_t i = 0; i < ours.choice.steps.size(); ++i) {
    const GuardStep& t = ours.choice.steps[i];
    std::printf("%5zu %10.2f %9.2f%% %9.2f%%\n", i, t.fast_ratio, 100 * t.predicted,
                100 * t.observed);
  }
  std::printf("ours: fast memory %.2f of the footprint (after %zu intervals), actual %.2f%% "
              "(confidence, observed/predicted: %.2f)\n",
              ours.choice.fast_ratio, ours.choice.steps.size(), 100 * ours.actual_slowdown,
              ours.choice.confidence);
  nlohmann::json j = advice_json(s.advice);
  j["workload"] = o.workload.name;
  j["target"] = o.advise.target;
  j["actual_slowdown"] = s.actual_slowdown;
  j["ours"] = guarded_json(ours.choice);
  j["ours"]["actual_slowdown"] = ours.actual_slowdown;
  write_json(o.json, j);
}

nlohmann::json stats_json(const ErrorStats& e) {
  return {{"mean", e.mean}, {"p95", e.p95}, {"max", e.max}, {"points", e.points}};
}

// The workloads of `tuna eval` by default: every kernel at two scales, each a `tuna sim`
// workload fragment.
std::vector<std::string> default_eval_workloads() {
  return {"-w gups --table-mb 64 --hot-mb 8 --updates 5000000",
          "-w gups --table-mb 256 --hot-mb 32 --updates 20000000",
          "-w bfs --graph kronecker --scale 16",
          "-w bfs --graph kronecker --scale 18",
          "-w bfs --graph uniform --scale 16",
          "-w bfs --graph uniform --scale 18",
          "-w sssp --graph kronecker --scale 16",
          "-w sssp --graph kronecker --scale 18",
          "-w pagerank --graph kronecker --scale 16",
          "-w pagerank --graph kronecker --scale 18",
          "-w xsbench --gridpoints 2000 --lookups 50000",
          "-w xsbench --gridpoints 11303 --lookups 100000",
          "-w btree --records 1000000 --requests 500000",
          "-w btree --records 4000000 --requests 2000000"};
}

// One size for every workload, from the database alone: the smallest ratio at which 95% of the
// micro-benchmark settings meet the target.
double static_fraction(const PerfDatabase& db, double target, double resolution) {
  const int steps = static_cast<int>(std::lround(1 / resolution));
  for (int k = 0; k <= steps; ++k) {
    size_t meet = 0;
    for (uint32_t s = 0; s < db.setting_count(); ++s) meet += db.slowdown(s, k * resolution) <= target;
    if (meet >= 0.95 * static_cast<double>(db.setting_count())) return k * resolution;
  }
  return 1;
}

void run_eval(const ModelCliOptions& o) {
  check_target(o.advise.target);
  const PerfDatabase db = PerfDatabase::open(o.db);
  db.check_platform(machine_json(o.machine));
  std::vector<std::string> fragments = default_eval_workloads();
  if (!o.workloads.empty()) {
    std::ifstream in(o.workloads);
    if (!in) core::throw_bad_input("cannot read workload list ", o.workloads);
    fragments.clear();
    for (std::string line; std::getline(in, line);) {
      if (line.find_first_not_of(" \t") != std::string::npos && line[0] != '#') fragments.push_back(line);
    }
    if (fragments.empty()) core::throw_bad_input(o.workloads, " lists no workloads");
  }
  std::vector<WorkloadOptions> workloads;
  for (const std::string& f : fragments) workloads.push_back(parse_workload_args(f));
  const double fixed = static_fraction(db, o.advise.target, o.advise.resolution);
  const double tau = o.advise.target;
  nlohmann::json rows = nlohmann::json::array();
  core::PlotSeries tuna_points{"Tuna", {}, false}, fixed_points{"static fraction", {}, false};
  double tuna_saving = 0, ours_saving = 0, oracle_saving = 0, fixed_saving_sum = 0;
  int violations = 0, ours_violations = 0, fixed_violations = 0, infeasible = 0;
  int pond_violations = 0;
  double pond_saving = 0;
  core::PlotSeries ours_points{"ours", {}, false};
  GuardOptions guard = o.guard;
  guard.target = o.advise.target;
  std::printf("%-52s %6s | %6s %7s %8s | %6s %8s | %6s %8s | %7s\n", "workload", "oracle",
              "Tuna", "pred.", "actual", "ours", "actual", "static", "actual", "TPP@1");
  struct Row {
    double ref = 0, fixed_actual = 0, full = 0, seconds = 0;
    double pond_ratio = 1, pond_predicted = 0, pond_actual = 0;
    std::vector<double> tuna_errors, ours_errors;  // |predicted − measured| on the oracle's curve
    OracleResult oracle;
    Sized tuna;
    Guarded ours;
  };
  std::vector<Row> results(workloads.size());
  const PlatformCosts costs = platform_costs(o.machine);
  const SlowdownModel model = calibrate(db, costs);  // ours, also Pond's predictor
  core::Progress progress("eval", workloads.size(), !o.quiet);
  std::mutex mutex;
  core::parallel_for(workloads.size(), o.jobs, [&](size_t i) {
    const WorkloadOptions& w = workloads[i];
    Row& row = results[i];
    core::Stopwatch watch;
    row.ref = run_workload(w, o.machine, sim::Policy::kAllFast, 1).counters.elapsed_ns;
    auto tpp_slowdown = [&](double r) {
      return run_workload(w, o.machine, sim::Policy::kTpp, r).counters.elapsed_ns / row.ref - 1;
    };
    row.oracle = find_minimal_ratio(tpp_slowdown, tau, o.precision);
    row.tuna = size_workload(db, w, o.machine, o.advise, row.ref);
    row.ours = size_ours(model, w, o.machine, guard, row.ref);
    row.fixed_actual = tpp_slowdown(fixed);
    row.full = tpp_slowdown(1);
    // Pond: no migration; a workload predicted insensitive to the slow tier's latency goes there
    // whole, any other stays in fast memory (ours touch all they allocate, so Pond's untouched
    // memory is nil). Its predictor: our calibrated model with no fast memory at all.
    row.pond_predicted = predict_slowdown(model, row.ours.choice.profile, costs, 0);
    row.pond_ratio = row.pond_predicted <= tau ? 0 : 1;
    row.pond_actual =
        run_workload(w, o.machine, sim::Policy::kStatic, row.pond_ratio).counters.elapsed_ns /
            row.ref - 1;
    // Both models' first predictions (from the observation at full fast memory) against the
    // oracle's measured curve: the workloads were never in the database, so this is
    // leave-every-workload-out by construction.
    const std::vector<SettingMatch>& first_matches = row.tuna.advice.steps.front().matches;
    for (const CurvePoint& p : row.oracle.curve) {
      row.tuna_errors.push_back(std::abs(predict_slowdown(db, first_matches, p.fast_ratio) - p.slowdown));
      row.ours_errors.push_back(std::abs(
          predict_slowdown(model, row.ours.choice.profile, costs, p.fast_ratio) - p.slowdown));
    }
    row.seconds = watch.seconds();
    std::lock_guard<std::mutex> lock(mutex);
    progress.advance(1);
  });
  progress.finish();
  for (size_t i = 0; i < workloads.size(); ++i) {
    const Row& row = results[i];
    const OracleResult& oracle = row.oracle;
    const Sized& tuna = row.tuna;
    const Guarded& ours = row.ours;
    const double oracle_ratio = oracle.minimal_ratio.value_or(1);
    // Where even all fast memory misses the target, no size can meet it: not a violation.
    const bool feasible = oracle.minimal_ratio.has_value();
    infeasible += !feasible;
    const bool violated = feasible && tuna.actual_slowdown > tau;
    const bool ours_violated = feasible && ours.actual_slowdown > tau;
    violations += violated;
    ours_violations += ours_violated;
    ours_saving += 1 - ours.choice.fast_ratio;
    fixed_violations += feasible && row.fixed_actual > tau;
    tuna_saving += 1 - tuna.advice.fast_ratio;
    oracle_saving += 1 - oracle_ratio;
    fixed_saving_sum += 1 - fixed;
    pond_saving += 1 - row.pond_ratio;
    pond_violations += feasible && row.pond_actual > tau;
    tuna_points.points.emplace_back(1 - oracle_ratio, 1 - tuna.advice.fast_ratio);
    ours_points.points.emplace_back(1 - oracle_ratio, 1 - ours.choice.fast_ratio);
    fixed_points.points.emplace_back(1 - oracle_ratio, 1 - fixed);
    std::printf("%-52s %6.2f | %6.2f %6.2f%% %7.2f%%%s | %6.2f %7.2f%%%s | %6.2f %7.2f%% | %6.2f%%\n",
                fragments[i].c_str(), oracle_ratio, tuna.advice.fast_ratio,
                100 * tuna.advice.predicted_slowdown, 100 * tuna.actual_slowdown,
                violated ? "!" : " ", ours.choice.fast_ratio, 100 * ours.actual_slowdown,
                ours_violated ? "!" : " ", fixed, 100 * row.fixed_actual, 100 * row.full);
    nlohmann::json curve = nlohmann::json::array();
    for (const CurvePoint& p : oracle.curve) curve.push_back({p.fast_ratio, p.slowdown});
    rows.push_back({{"workload", fragments[i]},
                    {"all_fast_ns", row.ref},
                    {"oracle", {{"fast_ratio", oracle.minimal_ratio ? nlohmann::json(oracle_ratio)
                                                                    : nlohmann::json()},
                                {"curve", curve}}},
                    {"tuna", advice_json(tuna.advice)},
                    {"tuna_actual_slowdown", tuna.actual_slowdown},
                    {"feasible", feasible},
                    {"tuna_violation", violated},
                    {"ours", guarded_json(ours.choice)},
                    {"ours_actual_slowdown", ours.actual_slowdown},
                    {"ours_violation", ours_violated},
                    {"static_fraction",
                     {{"fast_ratio", fixed}, {"actual_slowdown", row.fixed_actual}}},
                    {"tpp_all_fast_slowdown", row.full},
                    {"pond", {{"fast_ratio", row.pond_ratio},
                              {"predicted_slowdown_all_slow", row.pond_predicted},
                              {"actual_slowdown", row.pond_actual}}},
                    {"host_seconds", row.seconds}});
  }
  const double n = static_cast<double>(workloads.size());
  std::vector<double> tuna_errors, ours_errors;
  for (const Row& row : results) {
    tuna_errors.insert(tuna_errors.end(), row.tuna_errors.begin(), row.tuna_errors.end());
    ours_errors.insert(ours_errors.end(), row.ours_errors.begin(), row.ours_errors.end());
  }
  const ErrorStats tuna_error = error_stats(tuna_errors), ours_error = error_stats(ours_errors);
  auto captured = [&](double saving) { return oracle_saving > 0 ? saving / oracle_saving : 0.0; };
  std::printf("\nmean fast-memory saving at a %.0f%% target (%% of footprint; the paper: Tuna 8.5%%):\n"
              "  oracle          %5.1f%%\n"
              "  Tuna            %5.1f%%  %d violations, %3.0f%% of the oracle's saving\n"
              "  ours            %5.1f%%  %d violations, %3.0f%% of the oracle's saving\n"
              "  static %.2f     %5.1f%%  %d violations\n"
              "  Pond-style      %5.1f%%  %d violations\n",
              100 * tau, 100 * oracle_saving / n, 100 * tuna_saving / n, violations,
              100 * captured(tuna_saving), 100 * ours_saving / n, ours_violations,
              100 * captured(ours_saving), fixed, 100 * fixed_saving_sum / n, fixed_violations,
              100 * pond_saving / n, pond_violations);
  std::printf("prediction error on the oracle's measured points (first prediction, from full fast "
              "memory): Tuna mean %.2f%% p95 %.2f%%, ours mean %.2f%% p95 %.2f%%\n",
              100 * tuna_error.mean, 100 * tuna_error.p95, 100 * ours_error.mean,
              100 * ours_error.p95);
  if (infeasible > 0) {
    std::printf("  %d workload(s) miss the target even with all fast memory (not counted as "
                "violations)\n", infeasible);
  }
  write_json(o.json, {{"target", tau},
                      {"platform", machine_json(o.machine)},
                      {"db", o.db},
                      {"summary",
                       {{"workloads", workloads.size()},
                        {"tuna_mean_saving", tuna_saving / n},
                        {"tuna_violations", violations},
                        {"oracle_mean_saving", oracle_saving / n},
                        {"static_fraction", fixed},
                        {"static_fraction_mean_saving", fixed_saving_sum / n},
                        {"static_fraction_violations", fixed_violations},
                        {"infeasible_workloads", infeasible},
                        {"pond_mean_saving", pond_saving / n},
                        {"tuna_prediction_error", stats_json(tuna_error)},
                        {"ours_prediction_error", stats_json(ours_error)},
                        {"pond_violations", pond_violations},
                        {"captured_of_oracle", captured(tuna_saving)},
                        {"ours_mean_saving", ours_saving / n},
                        {"ours_violations", ours_violations},
                        {"ours_captured_of_oracle", captured(ours_saving)}}},
                      {"workloads", rows}});
  if (!o.plot.empty()) {
    core::LinePlot chart{core::cat("fast-memory saving at a ", 100 * tau, "% slowdown target"),
                         "oracle's saving (fraction of footprint)", "chosen saving", {}, {}, {}};
    chart.series = {{"oracle (diagonal)", {{0, 0}, {1, 1}}}, tuna_points, ours_points,
                    fixed_points};
    write_plot(o.plot, chart);
  }
}


void run_accuracy(const ModelCliOptions& o) {
  const PerfDatabase db = PerfDatabase::open(o.db);
  db.check_platform(machine_json(o.machine));
  const AccuracyReport r = leave_one_setting_out(db, platform_costs(o.machine), o.advise.neighbors);
  std::printf("leave-one-setting-out over %zu settings × %zu ratios: |predicted − measured| "
              "slowdown\n%-32s %8s %8s %8s\n",
              db.setting_count(), db.ratios().size(), "model", "mean", "p95", "max");
  auto line = [](const char* name, const ErrorStats& e) {
    std::printf("%-32s %7.2f%% %7.2f%% %7.2f%%\n", name, 100 * e.mean, 100 * e.p95, 100 * e.max);
  };
  line("Tuna (nearest telemetry)", r.tuna);
  line("ours (histogram + calibration)", r.ours);
  std::printf("where the measured slowdown is at most 15%% (%zu points):\n", r.ours_near_target.points);
  line("Tuna (nearest telemetry)", r.tuna_near_target);
  line("ours (histogram + calibration)", r.ours_near_target);
  write_json(o.json, {{"db", o.db},
                      {"neighbors", o.advise.neighbors},
                      {"tuna", stats_json(r.tuna)},
                      {"ours", stats_json(r.ours)},
                      {"tuna_near_target", stats_json(r.tuna_near_target)},
                      {"ours_near_target", stats_json(r.ours_near_target)}});
}

}  // namespace

void add_accuracy_command(CLI::App& app) {
  auto o = std::make_shared<ModelCliOptions>();
  CLI::App* cmd = app.add_subcommand(
      "accuracy",
      "Leave one micro-benchmark setting out at a time and predict its slowdown at every "
      "profiled ratio from the rest, Tuna's way and ours: mean, p95 and max error.");
  cmd->add_option("--db", o->db, "performance database directory")->required();
  cmd->add_option("--neighbors", o->advise.neighbors, "Tuna: settings averaged")
      ->capture_default_str()
      ->check(CLI::Range(1, 1000));
  cmd->add_option("--json", o->json, "write the report here");
  add_machine_options(cmd, &o->machine);
  cmd->callback([o] { run_accuracy(*o); });
}

void add_eval_command(CLI::App& app) {
  auto o = std::make_shared<ModelCliOptions>();
  CLI::App* cmd = app.add_subcommand(
      "eval",
      "Evaluate Tuna over many workloads: its chosen size and actual slowdown against the "
      "oracle's minimal size, ours, a one-size-fits-all static fraction, a Pond-style static "
      "placement, and TPP with all fast memory. A table, JSON and a figure.");
  add_machine_options(cmd, &o->machine);
  add_advise_options(cmd, o.get());
  cmd->add_option("--workloads", o->workloads,
                  "file with one `tuna sim` workload fragment per line (default: every kernel at "
                  "two scales)");
  cmd->add_option("--precision", o->precision, "the oracle's bisection width")
      ->capture_default_str();
  cmd->add_option("--plot", o->plot, "write Tuna's saving against the oracle's as SVG here");
  add_parallel_options(cmd, o.get(), "workloads evaluated");
  cmd->callback([o] { run_eval(*o); });
}

void add_profile_command(CLI::App& app) {
  auto o = std::make_shared<ModelCliOptions>();
  CLI::App* cmd = app.add_subcommand(
      "profile",
      "Run Tuna's micro-benchmark over a grid of knob settings × fast-memory ratios on the "
      "platform and record each run's telemetry metrics and slowdown in a performance database. "
      "Interrupted profiles resume from DIR/journal.jsonl.");
  cmd->add_option("--platform", o->platform, "where to profile: sim (the simulated machine)")
      ->capture_default_str();
  cmd->add_option("--out", o->out, "database directory")->required();
  cmd->add_option("--grid", o->grid,
                  "JSON grid: {\"base\": {knobs}, \"axes\": {\"knob\": [values]}, \"ratios\": "
                  "[...]} (default: 72 settings × 11 ratios; see docs/tuna.md)");
  add_parallel_options(cmd, o.get(), "settings profiled");
  add_machine_options(cmd, &o->machine);
  cmd->callback([o] { run_profile(*o); });
}

void add_advise_command(CLI::App& app) {
  auto o = std::make_shared<ModelCliOptions>();
  CLI::App* cmd = app.add_subcommand(
      "advise",
      "Size a workload's fast memory as Tuna does: run it, read its telemetry, find the nearest "
      "micro-benchmark settings in the performance database, choose the smallest size whose "
      "predicted slowdown meets the target, apply it and re-tune until the choice settles. "
      "The actual slowdown at the chosen size is measured too.");
  add_workload_options(cmd, &o->workload);
  add_machine_options(cmd, &o->machine);
  add_advise_options(cmd, o.get());
  cmd->callback([o] { run_advise(*o); });
}

}  // namespace tuna::cli
