#include "tuna/tier/sim/simulator.h"

#include <algorithm>

#include "core/error.h"

namespace tuna::sim {
namespace {

constexpr uint64_t kPage = 4096;

uint64_t pages_of(uint64_t bytes) { return (bytes + kPage - 1) / kPage; }

TppParams tpp_params(const SimConfig& c, uint64_t address_bytes) {
  TppParams p = c.tpp;
  p.numa_balancing_scan_period_min_ms /= c.time_scale;
  p.numa_balancing_scan_period_max_ms /= c.time_scale;
  p.numa_balancing_hot_threshold_ms /= c.time_scale;
  p.numa_balancing_promote_rate_limit_MBps *= c.time_scale;
  const uint64_t need = pages_of(address_bytes);
  p.slow_pages = c.slow_bytes > 0 ? pages_of(c.slow_bytes) : need + 1024;
  p.fast_pages = pages_of(c.fast_bytes);
  if (c.policy == Policy::kAllFast) p.fast_pages = 2 * need + 65536;  // never near a watermark
  if (c.policy != Policy::kTpp) p.promotion_enabled = p.demotion_enabled = false;
  return p;
}

SimConfig dilated(SimConfig c) {
  if (!(c.time_scale >= 1))
    core::throw_bad_input("time scale must be at least 1, not ", c.time_scale);
  c.tick_ns /= c.time_scale;
  c.tuning_interval_ns /= c.time_scale;
  c.timing.hint_fault_ns /= c.time_scale;
  c.timing.migrate_page_ns /= c.time_scale;
  return c;
}

}  // namespace

Policy parse_policy(const std::string& name) {
  if (name == "tpp") return Policy::kTpp;
  if (name == "static") return Policy::kStatic;
  if (name == "all-fast") return Policy::kAllFast;
  core::throw_bad_input("unknown policy '", name, "' (tpp, static or all-fast)");
}

std::string policy_name(Policy policy) {
  switch (policy) {
    case Policy::kTpp:
      return "tpp";
    case Policy::kStatic:
      return "static";
    case Policy::kAllFast:
      return "all-fast";
  }
  return "?";
}

Simulator::Simulator(const SimConfig& config, uint64_t address_bytes)
    : config_(dilated(config)),
      tpp_(tpp_params(config_, address_bytes), pages_of(address_bytes)),
      llc_(config.llc_bytes, config.llc_ways),
      address_limit_(pages_of(address_bytes) * kPage) {
  const TimingParams& t = config.timing;
  if (t.fast_bandwidth_gbps <= 0 || t.slow_bandwidth_gbps <= 0 || t.memory_level_parallelism < 1) {
    core::throw_bad_input("bandwidths must be positive and memory-level parallelism at least 1");
  }
  line_ns_fast_ = 64.0 / t.fast_bandwidth_gbps;  // GB/s = bytes/ns
  line_ns_slow_ = 64.0 / t.slow_bandwidth_gbps;
  if (config_.on_tuning_interval && !(config_.tuning_interval_ns > 0)) {
    core::throw_bad_input("a tuning interval must be positive");
  }
  next_tuning_ns_ = config_.tuning_interval_ns;
}

void Simulator::set_fast_bytes(uint64_t bytes) {
  if (config_.policy == Policy::kAllFast) core::throw_bad_input("an all-fast machine has no fast tier size");
  tpp_.set_fast_pages(pages_of(bytes));
  if (tpp_.kswapd_awake()) tpp_.run_kswapd();
}

uint64_t Simulator::fast_bytes() const { return tpp_.capacity(Node::kFast) * kPage; }

std::string CapacityActuator::apply(uint64_t bytes, bool dry_run) {
  const std::string line = core::cat("fast tier: ", sim_->fast_bytes() >> 10, " KiB -> ",
                                     pages_of(bytes) * kPage >> 10, " KiB\n");
  if (!dry_run) sim_->set_fast_bytes(bytes);
  return line;
}

uint64_t Simulator::allocate(uint64_t bytes) {
  const uint64_t base = next_address_;
  const uint64_t rounded = pages_of(bytes) * kPage;
  if (rounded > address_limit_ - base) {
    core::throw_internal("workload allocates beyond its declared footprint (", address_limit_,
                         " bytes)");
  }
  next_address_ += rounded;
  return base;
}

void Simulator::access(uint64_t address, bool dependent) {
  ++counters_.accesses;
  const TimingParams& t = config_.timing;
  const AccessOutcome page = tpp_.access(address / kPage, now_ns_);
  if (page.hint_fault) now_ns_ += t.hint_fault_ns;
  if (page.promoted) now_ns_ += t.migrate_page_ns;
  if (tpp_.kswapd_awake()) tpp_.run_kswapd();  // asynchronous: its copies cost the workload nothing
  const double overlap = dependent ? 1.0 : t.memory_level_parallelism;
  if (llc_.access(address)) {
    now_ns_ += t.llc_hit_ns / overlap;
  } else {
    ++counters_.llc_misses;
    const bool fast = page.node == Node::kFast;
    (fast ? counters_.fast_accesses : counters_.slow_accesses) += 1;
    const double latency = fast ? t.fast_latency_ns : t.slow_latency_ns;
    const double stall = std::max(latency / overlap, fast ? line_ns_fast_ : line_ns_slow_);
    now_ns_ += stall;
    counters_.miss_stall_ns += stall;
    if (!fast) counters_.slow_stall_ns += stall;
    if (config_.page_miss_sink) config_.page_miss_sink(address / kPage);
  }
  if (now_ns_ >= next_tick_ns_) background();
}

void Simulator::background() {
  tpp_.tick(now_ns_);
  next_tick_ns_ = now_ns_ + config_.tick_ns;
  if (now_ns_ >= next_sample_ns_) {
    series_.push_back({now_ns_, counters(),
                       tpp_.capacity(Node::kFast) - tpp_.free_pages(Node::kFast),
                       tpp_.capacity(Node::kSlow) - tpp_.free_pages(Node::kSlow)});
    next_sample_ns_ = now_ns_ + config_.interval_ns;
  }
  if (config_.on_tuning_interval && now_ns_ >= next_tuning_ns_) {
    next_tuning_ns_ = now_ns_ + config_.tuning_interval_ns;
    config_.on_tuning_interval(*this);
  }
}

TierCounters Simulator::counters() const {
  TierCounters c = counters_;
  const TierCounters& p = tpp_.counters();
  c.pgpromote_success = p.pgpromote_success;
  c.pgpromote_candidate = p.pgpromote_candidate;
  c.pgdemote_kswapd = p.pgdemote_kswapd;
  c.pgdemote_direct = p.pgdemote_direct;
  c.numa_hint_faults = p.numa_hint_faults;
  c.numa_pages_migrated = p.numa_pages_migrated;
  c.pgmigrate_success = p.pgmigrate_success;
  c.elapsed_ns = now_ns_;
  return c;
}

}  // namespace tuna::sim
