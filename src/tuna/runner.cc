#include "tuna/runner.h"

#include <cmath>

#include "core/error.h"
#include "tuna/tier/sim/watermarks.h"

namespace tuna {

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
                  "limit) with per-event costs scaled alike; 1 = Linux as is (see "
                  "docs/tuna-simulator.md: dilation changes which pages count as hot)")
      ->capture_default_str();
  cmd->add_option("--watermark-scale-factor", c.tpp.watermark_scale_factor)
      ->capture_default_str()
      ->check(CLI::Range(1, 3000));
}

nlohmann::json counters_json(const TierCounters& c) {
  return {{"elapsed_ns", c.elapsed_ns},
          {"accesses", c.accesses},
          {"llc_misses", c.llc_misses},
          {"fast_accesses", c.fast_accesses},
          {"slow_accesses", c.slow_accesses},
          {"compute_units", c.compute_units},
          {"miss_stall_ns", c.miss_stall_ns},
          {"slow_stall_ns", c.slow_stall_ns},
          {"pgpromote_success", c.pgpromote_success},
          {"pgpromote_candidate", c.pgpromote_candidate},
          {"pgdemote_kswapd", c.pgdemote_kswapd},
          {"pgdemote_direct", c.pgdemote_direct},
          {"numa_hint_faults", c.numa_hint_faults},
          {"numa_pages_migrated", c.numa_pages_migrated},
          {"pgmigrate_success", c.pgmigrate_success}};
}

RunResult run_workload(const WorkloadOptions& w, const MachineOptions& m, sim::Policy p,
                       double fast_ratio, bool observe_profile) {
  return run_workload(*make_workload(w), m, p, fast_ratio, observe_profile);
}

namespace {

sim::SimConfig config_for(const Workload& workload, const MachineOptions& m, sim::Policy p,
                          double fast_ratio) {
  sim::SimConfig c = m.config;
  c.policy = p;
  c.llc_bytes = m.llc_mb << 20;
  c.fast_bytes = static_cast<uint64_t>(fast_ratio * workload.footprint_bytes());
  return c;
}

std::unique_ptr<ProfileBuilder> observe_misses(const Workload& workload, sim::SimConfig* c) {
  auto profile = std::make_unique<ProfileBuilder>((workload.footprint_bytes() + 4095) / 4096);
  c->page_miss_sink = [p = profile.get()](uint64_t page) { p->add_miss(page); };
  return profile;
}

RunResult finish_run(Workload& workload, const sim::Simulator& sim, const ProfileBuilder* profile) {
  const std::string verdict = workload.verify();
  if (!verdict.empty()) core::throw_internal("workload result is wrong: ", verdict);
  RunResult r{sim.counters(), nlohmann::json::array(), {}};
  if (profile != nullptr) r.profile = profile->finish(r.counters);
  for (const auto& s : sim.series()) {
    nlohmann::json j = counters_json(s.counters);
    j["time_ns"] = s.time_ns;
    j["fast_used_pages"] = s.fast_used_pages;
    j["slow_used_pages"] = s.slow_used_pages;
    r.series.push_back(j);
  }
  return r;
}

}  // namespace

RunResult run_workload(Workload& workload, const MachineOptions& m, sim::Policy p,
                       double fast_ratio, bool observe_profile) {
  sim::SimConfig c = config_for(workload, m, p, fast_ratio);
  std::unique_ptr<ProfileBuilder> profile;
  if (observe_profile) profile = observe_misses(workload, &c);
  sim::Simulator sim(c, workload.footprint_bytes());
  workload.run(sim);
  return finish_run(workload, sim, profile.get());
}

TunedRun run_tuned(Workload& workload, const MachineOptions& m, SizingPolicy& policy,
                   double interval_ns) {
  sim::SimConfig c = config_for(workload, m, sim::Policy::kTpp, 1.0);
  std::unique_ptr<ProfileBuilder> profile;
  if (policy.wants_profile()) profile = observe_misses(workload, &c);
  MemoryTuningController* controller = nullptr;
  c.tuning_interval_ns = interval_ns;
  c.on_tuning_interval = [&controller](sim::Simulator& s) { controller->on_interval(s.counters()); };
  sim::Simulator sim(c, workload.footprint_bytes());
  sim::CapacityActuator actuator(sim);
  MemoryTuningController tuner(policy, actuator, workload.footprint_bytes(), platform_costs(m),
                               profile.get());
  controller = &tuner;
  workload.run(sim);
  tuner.finish(sim.counters());
  return {finish_run(workload, sim, nullptr), tuner.steps()};
}

PlatformCosts platform_costs(const MachineOptions& m) {
  const sim::SimConfig& c = m.config;
  PlatformCosts costs;
  costs.latency_ratio = c.timing.slow_latency_ns / c.timing.fast_latency_ns;
  costs.hint_fault_ns = c.timing.hint_fault_ns / c.time_scale;
  costs.migrate_page_ns = c.timing.migrate_page_ns / c.time_scale;
  const sim::TppParams tpp = c.tpp;
  costs.usable = [tpp](double ratio, uint64_t footprint_pages) {
    if (footprint_pages == 0) return ratio;
    // As the simulator sizes the nodes (Simulator's tpp_params): the fast node holds the ratio
    // of the footprint, the slow node all of it and 1024 pages more.
    const auto fast = static_cast<uint64_t>(std::ceil(ratio * static_cast<double>(footprint_pages)));
    const uint64_t total = fast + footprint_pages + 1024;
    const uint64_t min_kb = tpp.min_free_kbytes > 0 ? tpp.min_free_kbytes
                                                    : sim::default_min_free_kbytes(total * 4);
    const sim::Watermarks w =
        sim::zone_watermarks(fast, min_kb * fast / total, tpp.watermark_scale_factor);
    return static_cast<double>(fast > w.promo ? fast - w.promo : 0) /
           static_cast<double>(footprint_pages);
  };
  return costs;
}

nlohmann::json machine_json(const MachineOptions& m) {
  const sim::SimConfig& c = m.config;
  const sim::TimingParams& t = c.timing;
  return {{"llc_mb", m.llc_mb},
          {"llc_ways", c.llc_ways},
          {"fast_latency_ns", t.fast_latency_ns},
          {"slow_latency_ns", t.slow_latency_ns},
          {"fast_bandwidth_gbps", t.fast_bandwidth_gbps},
          {"slow_bandwidth_gbps", t.slow_bandwidth_gbps},
          {"llc_hit_ns", t.llc_hit_ns},
          {"compute_ns", t.compute_ns},
          {"memory_level_parallelism", t.memory_level_parallelism},
          {"migrate_page_ns", t.migrate_page_ns},
          {"hint_fault_ns", t.hint_fault_ns},
          {"numa_balancing_scan_period_min_ms", c.tpp.numa_balancing_scan_period_min_ms},
          {"numa_balancing_hot_threshold_ms", c.tpp.numa_balancing_hot_threshold_ms},
          {"numa_balancing_promote_rate_limit_MBps", c.tpp.numa_balancing_promote_rate_limit_MBps},
          {"numa_balancing_scan_size_mb", c.tpp.numa_balancing_scan_size_mb},
          {"watermark_scale_factor", c.tpp.watermark_scale_factor},
          {"time_scale", c.time_scale},
          {"tick_ns", c.tick_ns}};
}

}  // namespace tuna
