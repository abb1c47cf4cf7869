// The simulated tiered-memory machine: a workload's loads and stores go through the LLC filter;
// misses are served by the tier their page lives on, priced by the timing model; page placement
// and migration follow TPP (or a baseline); simulated time and Linux-named counters come out,
// with a time series per interval.
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "tuna/tier/platform.h"
#include "tuna/tier/sim/llc.h"
#include "tuna/tier/sim/timing.h"
#include "tuna/tier/sim/tpp.h"

namespace tuna::sim {

enum class Policy {
  kTpp,     // first touch + TPP promotion and demotion
  kStatic,  // first touch, no migration
  kAllFast  // everything on the fast tier (the reference for slowdown)
};

Policy parse_policy(const std::string& name);  // "tpp", "static", "all-fast"
std::string policy_name(Policy policy);

class Simulator;

struct SimConfig {
  uint64_t fast_bytes = 0;  // fast-tier capacity (ignored for all-fast)
  uint64_t slow_bytes = 0;  // slow-tier capacity; 0: as much as the address space needs
  Policy policy = Policy::kTpp;
  TppParams tpp;  // Linux knobs (fast_pages and slow_pages are set from the byte sizes)
  TimingParams timing;
  uint64_t llc_bytes = 32ull << 20;
  int llc_ways = 16;
  double tick_ns = 1e6;  // how often kswapd and the NUMA scanner get to run
  // Time dilation for short simulations: TPP's time constants (scan period, hot threshold, tick)
  // are divided by this factor, its promote rate limit multiplied by it, and the per-event
  // costs (hint fault, page migration) divided by it, so that the share of time spent in TPP's
  // work is preserved while its dynamics play out `time_scale` times faster. 1 = Linux as is.
  double time_scale = 1;
  double interval_ns = 1e7;  // time-series sampling period
  // When set, receives the page of every LLC miss: the access stream a PEBS-based profiler
  // samples on Linux.
  std::function<void(uint64_t page)> page_miss_sink;
  // The memory-tuning controller: called every `tuning_interval_ns` (Linux time, dilated like
  // TPP's clock) at the end of a tuning interval; it may resize the fast tier.
  double tuning_interval_ns = 0;
  std::function<void(Simulator&)> on_tuning_interval;
};

struct IntervalSample {
  double time_ns;
  TierCounters counters;  // cumulative at time_ns
  uint64_t fast_used_pages, slow_used_pages;
};

// What workloads see: loads, stores and compute. Addresses come from allocate().
class MemorySystem {
 public:
  virtual ~MemorySystem() = default;
  // Reserves `bytes` of address space (page aligned); returns its base address.
  virtual uint64_t allocate(uint64_t bytes) = 0;
  // `dependent`: the address came from a previous load (pointer chasing): no overlap.
  virtual void load(uint64_t address, bool dependent = false) = 0;
  virtual void store(uint64_t address) = 0;
  virtual void compute(uint64_t units) = 0;
};

class Simulator : public MemorySystem {
 public:
  // `address_bytes`: the most address space workloads will allocate.
  Simulator(const SimConfig& config, uint64_t address_bytes);

  uint64_t allocate(uint64_t bytes) override;
  void load(uint64_t address, bool dependent = false) override { access(address, dependent); }
  void store(uint64_t address) override { access(address, false); }
  void compute(uint64_t units) override {
    counters_.compute_units += units;
    now_ns_ += units * config_.timing.compute_ns;
  }

  double now_ns() const { return now_ns_; }
  // Cumulative counters (workload and TPP).
  TierCounters counters() const;
  const std::vector<IntervalSample>& series() const { return series_; }
  const TppPolicy& policy() const { return tpp_; }

  uint64_t allocated_bytes() const { return next_address_; }
  // Resizes the fast tier (TppPolicy::set_fast_pages); kswapd runs at once if that woke it.
  void set_fast_bytes(uint64_t bytes);
  uint64_t fast_bytes() const;

 private:
  void access(uint64_t address, bool dependent);
  void background();

  SimConfig config_;
  TppPolicy tpp_;
  LastLevelCache llc_;
  TierCounters counters_;
  std::vector<IntervalSample> series_;

  uint64_t address_limit_;
  uint64_t next_address_ = 0;
  double now_ns_ = 0;
  double next_tick_ns_ = 0;
  double next_sample_ns_ = 0;
  double next_tuning_ns_ = 0;
  double line_ns_fast_, line_ns_slow_;  // bandwidth bound per 64-byte line
};

// The simulator's fast-tier capacity as the memory-tuning controller's actuator.
class CapacityActuator : public FastMemoryActuator {
 public:
  explicit CapacityActuator(Simulator& sim) : sim_(&sim) {}
  std::string name() const override { return "simulated fast-tier capacity"; }
  std::string apply(uint64_t bytes, bool dry_run) override;

 private:
  Simulator* sim_;
};

}  // namespace tuna::sim
