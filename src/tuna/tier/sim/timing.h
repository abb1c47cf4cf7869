// The timing model of the simulated machine. Defaults and their sources are in
// docs/tuna-simulator.md: local DRAM ≈ 100 ns idle load latency, CXL-attached or remote-socket
// memory ≈ 1.5–2.5× that, page migration ≈ a few µs per 4 KiB page.
#pragma once

namespace tuna::sim {

struct TimingParams {
  double llc_hit_ns = 12;           // LLC hit latency
  double fast_latency_ns = 100;     // fast tier (local DRAM) load-to-use latency
  double slow_latency_ns = 220;     // slow tier (CXL / remote socket), 2.2× fast
  double fast_bandwidth_gbps = 60;  // GB/s one core can draw from each tier
  double slow_bandwidth_gbps = 25;
  double memory_level_parallelism = 8;  // independent misses in flight
  double compute_ns = 0.3;              // per compute unit (≈ an instruction at 3.3 GHz, IPC 1)
  double hint_fault_ns = 1500;          // a NUMA hint fault taken by the application
  double migrate_page_ns = 3000;        // copy + remap + TLB shootdown of one 4 KiB page
};

}  // namespace tuna::sim
