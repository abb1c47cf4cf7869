// tuna: how much fast memory does a workload need on tiered memory? This tool runs workloads on
// the simulated tiered machine (`sim`) and finds the true minimal fast-memory size for a
// slowdown target by sweeping (`oracle`).
#include <CLI/CLI.hpp>
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <nlohmann/json.hpp>

#include "core/atomic_file.h"
#include "core/error.h"
#include "core/progress.h"
#include "core/stopwatch.h"
#include "core/svg_plot.h"
#include "tuna/tier/sim/simulator.h"
#include "tuna/workloads/registry.h"

namespace {

struct MachineOptions {
  tuna::sim::SimConfig config;
  uint64_t llc_mb = 32;
};

void add_machine_options(CLI::App* cmd, MachineOptions* m) {
  auto& c = m->config;
  cmd->add_option("--llc-mb", m->llc_mb, "last-level cache size in MiB")->capture_default_str();
  cmd->add_option("--fast-latency-ns", c.timing.fast_latency_ns)->capture_default_str();
  cmd->add_option("--slow-latency-ns", c.timing.slow_latency_ns)->capture_default_str();
  cmd->add_option("--fast-bandwidth-gbps", c.timing.fast_bandwidth_gbps)->capture_default_str();
  cmd->add_option("--slow-bandwidth-gbps", c.timing.slow_bandwidth_gbps)->capture_default_str();
  cmd->add_option("--mlp", c.timing.memory_level_parallelism, "memory-level parallelism")
      ->capture_default_str();
  cmd->add_option("--migrate-page-ns", c.timing.migrate_page_ns)->capture_default_str();
  cmd->add_option("--hint-fault-ns", c.timing.hint_fault_ns)->capture_default_str();
  cmd->add_option("--numa-balancing-scan-period-min-ms", c.tpp.numa_balancing_scan_period_min_ms)
      ->capture_default_str();
  cmd->add_option("--numa-balancing-hot-threshold-ms", c.tpp.numa_balancing_hot_threshold_ms)
      ->capture_default_str();
  cmd->add_option("--numa-balancing-promote-rate-limit-MBps",
                  c.tpp.numa_balancing_promote_rate_limit_MBps)
      ->capture_default_str();
  cmd->add_option("--time-scale", c.time_scale,
                  "run TPP's clock this many times faster (scan period, hot threshold, rate "
                  "limit) with per-event costs scaled alike, for short simulations")
      ->capture_default_str();
  cmd->add_option("--watermark-scale-factor", c.tpp.watermark_scale_factor)
      ->capture_default_str()
      ->check(CLI::Range(1, 3000));
}

nlohmann::json counters_json(const tuna::TierCounters& c) {
  return {{"elapsed_ns", c.elapsed_ns},
          {"accesses", c.accesses},
          {"llc_misses", c.llc_misses},
          {"fast_accesses", c.fast_accesses},
          {"slow_accesses", c.slow_accesses},
          {"compute_units", c.compute_units},
          {"pgpromote_success", c.pgpromote_success},
          {"pgpromote_candidate", c.pgpromote_candidate},
          {"pgdemote_kswapd", c.pgdemote_kswapd},
          {"pgdemote_direct", c.pgdemote_direct},
          {"numa_hint_faults", c.numa_hint_faults},
          {"numa_pages_migrated", c.numa_pages_migrated},
          {"pgmigrate_success", c.pgmigrate_success}};
}

struct RunResult {
  tuna::TierCounters counters;
  nlohmann::json series;
};

// One run of a fresh workload instance; fails if the workload's verifier does.
RunResult run_once(const tuna::WorkloadOptions& w, const MachineOptions& m, tuna::sim::Policy p,
                   double fast_ratio) {
  auto workload = tuna::make_workload(w);
  tuna::sim::SimConfig c = m.config;
  c.policy = p;
  c.llc_bytes = m.llc_mb << 20;
  c.fast_bytes = static_cast<uint64_t>(fast_ratio * workload->footprint_bytes());
  tuna::sim::Simulator sim(c, workload->footprint_bytes());
  workload->run(sim);
  const std::string verdict = workload->verify();
  if (!verdict.empty()) core::throw_internal("workload result is wrong: ", verdict);
  RunResult r{sim.counters(), nlohmann::json::array()};
  for (const auto& s : sim.series()) {
    nlohmann::json j = counters_json(s.counters);
    j["time_ns"] = s.time_ns;
    j["fast_used_pages"] = s.fast_used_pages;
    j["slow_used_pages"] = s.slow_used_pages;
    r.series.push_back(j);
  }
  return r;
}

void write_json(const std::string& path, const nlohmann::json& j) {
  if (path.empty()) return;
  core::AtomicFileWriter out(path);
  out.write(j.dump(2) + "\n");
  out.commit();
}

void write_plot(const std::string& path, const core::LinePlot& chart) {
  core::AtomicFileWriter out(path);
  out.write(core::render_svg(chart));
  out.commit();
}

void check_ratio(double r, const char* what) {
  if (!(r >= 0.0 && r <= 1.0)) core::throw_bad_input(what, " ", r, " must lie in [0, 1]");
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app(
      "tuna: fast-memory sizing for tiered memory (fast DRAM + slow CXL-like memory, pages\n"
      "migrated by TPP), on a simulated tiered machine.\n\n"
      "Exit codes: 0 ok, 1 internal failure, 2 bad input or usage.");
  app.require_subcommand(1);
  tuna::WorkloadOptions workload;
  MachineOptions machine;
  std::string json, plot, policy = "tpp";
  double fast_ratio = 0.5, target = 0.05, precision = 0.01;

  CLI::App* sim = app.add_subcommand(
      "sim",
      "Run a workload once at a fast-memory ratio (of its footprint) and report simulated "
      "time, slowdown against all-fast, Linux-named counters and a time series.");
  add_workload_options(sim, &workload);
  add_machine_options(sim, &machine);
  sim->add_option("--fast-ratio", fast_ratio, "fast memory as a fraction of the footprint")
      ->capture_default_str();
  sim->add_option("--policy", policy, "tpp, static (first touch, no migration) or all-fast")
      ->capture_default_str();
  sim->add_option("--json", json, "write the report here");
  sim->add_option("--plot", plot,
                  "write pages promoted and demoted per sampling interval over time as SVG here");

  CLI::App* oracle = app.add_subcommand(
      "oracle",
      "Find the smallest fast-memory ratio whose slowdown against all-fast stays "
      "within the target: a coarse sweep, then bisection.");
  add_workload_options(oracle, &workload);
  add_machine_options(oracle, &machine);
  oracle->add_option("--target", target, "allowed slowdown, e.g. 0.05 for 5%")
      ->capture_default_str();
  oracle->add_option("--precision", precision, "bisection stops at this ratio width")
      ->capture_default_str();
  oracle->add_option("--policy", policy, "tpp or static")->capture_default_str();
  oracle->add_option("--json", json, "write the report here");
  oracle->add_option("--plot", plot, "write the slowdown curve as SVG here");

  try {
    app.parse(argc, argv);
    const tuna::sim::Policy p = tuna::sim::parse_policy(policy);
    if (sim->parsed()) {
      check_ratio(fast_ratio, "--fast-ratio");
      core::Stopwatch watch;
      const RunResult ref = run_once(workload, machine, tuna::sim::Policy::kAllFast, 1.0);
      const RunResult run = run_once(workload, machine, p, fast_ratio);
      const double slowdown = run.counters.elapsed_ns / ref.counters.elapsed_ns - 1;
      std::printf("%s, %s, fast ratio %.3f: simulated %.2f ms, all-fast %.2f ms, slowdown %.2f%%\n",
                  workload.name.c_str(), policy.c_str(), fast_ratio, run.counters.elapsed_ns / 1e6,
                  ref.counters.elapsed_ns / 1e6, 100 * slowdown);
      std::printf(
          "  accesses %llu, LLC misses %llu (slow tier %llu), promoted %llu, demoted "
          "%llu, hint faults %llu; host %.1f s\n",
          (unsigned long long)run.counters.accesses, (unsigned long long)run.counters.llc_misses,
          (unsigned long long)run.counters.slow_accesses,
          (unsigned long long)run.counters.pgpromote_success,
          (unsigned long long)run.counters.pgdemote_kswapd,
          (unsigned long long)run.counters.numa_hint_faults, watch.seconds());
      write_json(json, {{"workload", workload.name},
                        {"policy", policy},
                        {"fast_ratio", fast_ratio},
                        {"slowdown", slowdown},
                        {"all_fast", counters_json(ref.counters)},
                        {"counters", counters_json(run.counters)},
                        {"series", run.series}});
      if (!plot.empty()) {
        core::LinePlot chart{workload.name + ": page migrations per interval (" + policy + ")",
                             "simulated time (ms)", "pages per interval", {}, {}, {}};
        chart.series = {{"promoted", {}}, {"demoted", {}}};
        for (size_t i = 1; i < run.series.size(); ++i) {
          const auto& a = run.series[i - 1];
          const auto& b = run.series[i];
          const double t = b["time_ns"].get<double>() / 1e6;
          chart.series[0].points.emplace_back(
              t, b["pgpromote_success"].get<double>() - a["pgpromote_success"].get<double>());
          chart.series[1].points.emplace_back(
              t, b["pgdemote_kswapd"].get<double>() + b["pgdemote_direct"].get<double>() -
                     a["pgdemote_kswapd"].get<double>() - a["pgdemote_direct"].get<double>());
        }
        write_plot(plot, chart);
      }
    } else {
      check_ratio(target, "--target");
      if (!(precision > 0 && precision < 1))
        core::throw_bad_input("--precision must lie in (0, 1)");
      const double ref =
          run_once(workload, machine, tuna::sim::Policy::kAllFast, 1.0).counters.elapsed_ns;
      nlohmann::json curve = nlohmann::json::array();
      auto slowdown_at = [&](double r) {
        const RunResult run = run_once(workload, machine, p, r);
        const double s = run.counters.elapsed_ns / ref - 1;
        curve.push_back(
            {{"fast_ratio", r}, {"slowdown", s}, {"counters", counters_json(run.counters)}});
        return s;
      };
      core::Progress progress("oracle sweep", 11, true);
      double lo = 0, hi = 1;  // slowdown(lo) > target ≥ slowdown(hi)
      bool found = false;
      for (int k = 0; k <= 10; ++k) {
        const double r = k / 10.0;
        const double s = slowdown_at(r);
        progress.advance(1);
        if (s <= target) {
          hi = r;
          lo = std::max(0.0, r - 0.1);
          found = true;
          break;
        }
      }
      progress.finish();
      if (found && hi > 0) {
        while (hi - lo > precision) {
          const double mid = (lo + hi) / 2;
          (slowdown_at(mid) <= target ? hi : lo) = mid;
        }
      }
      std::sort(curve.begin(), curve.end(),
                [](const auto& a, const auto& b) { return a["fast_ratio"] < b["fast_ratio"]; });
      std::printf("%10s %10s\n", "fast ratio", "slowdown");
      for (const auto& pt : curve) {
        std::printf("%10.4f %9.2f%%\n", pt["fast_ratio"].get<double>(),
                    100 * pt["slowdown"].get<double>());
      }
      if (found) {
        std::printf("minimal fast ratio meeting %.1f%%: %.4f of the footprint\n", 100 * target, hi);
      } else {
        std::printf("no ratio meets %.1f%%\n", 100 * target);
      }
      if (!plot.empty()) {
        core::LinePlot chart{workload.name + ": slowdown against fast memory (" + policy + ")",
                             "fast memory / footprint",
                             "slowdown against all-fast",
                             {},
                             {},
                             {}};
        chart.series.push_back({policy, {}});
        for (const auto& pt : curve) {
          chart.series[0].points.emplace_back(pt["fast_ratio"].get<double>(),
                                              pt["slowdown"].get<double>());
        }
        chart.y_marks.emplace_back(core::cat("target ", 100 * target, "%"), target);
        if (found) chart.x_marks.emplace_back(core::cat("minimal ", hi), hi);
        write_plot(plot, chart);
      }
      write_json(json, {{"workload", workload.name},
                        {"policy", policy},
                        {"target", target},
                        {"all_fast_ns", ref},
                        {"minimal_fast_ratio", found ? nlohmann::json(hi) : nlohmann::json()},
                        {"curve", curve}});
    }
  } catch (const CLI::ParseError& e) {
    const int code = app.exit(e);
    return code == 0 ? 0 : 2;
  } catch (const core::Error& e) {
    std::fprintf(stderr, "tuna: error: %s\n", e.what());
    return e.exit_code();
  } catch (const std::exception& e) {
    std::fprintf(stderr, "tuna: internal error: %s\n", e.what());
    return 1;
  }
  return 0;
}
