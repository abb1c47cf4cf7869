// Workloads by name, with their command-line options, for the `tuna` tools.
#pragma once

#include <CLI/CLI.hpp>
#include <memory>
#include <string>

#include "tuna/microbench/microbench.h"
#include "tuna/workloads/bfs.h"
#include "tuna/workloads/btree.h"
#include "tuna/workloads/gups.h"
#include "tuna/workloads/lackey_trace.h"
#include "tuna/workloads/pagerank.h"
#include "tuna/workloads/sssp.h"
#include "tuna/workloads/xsbench.h"

namespace tuna {

struct WorkloadOptions {
  std::string name = "gups";
  uint64_t seed = 1;
  GupsOptions gups;
  GraphOptions graph;
  std::string trace;
  XsBenchOptions xsbench;
  BTreeOptions btree;
  MicrobenchOptions microbench;
  std::string pattern = "random";     // microbench
  uint64_t table_mb = 256, hot_mb = 32;  // gups and microbench
  double hot_fraction = 0.9;             // gups and microbench
  std::vector<uint64_t> phase_hot_mb;    // microbench
};

// Adds --workload and every workload's options to `cmd`.
void add_workload_options(CLI::App* cmd, WorkloadOptions* o);
// Workload options from a command-line fragment, as `tuna sim` takes them ("-w bfs --scale 16").
// Throws core::Error (bad input) naming the fragment when it does not parse.
WorkloadOptions parse_workload_args(const std::string& args);
// A fresh instance (workloads run once). Throws core::Error for an unknown name.
std::unique_ptr<Workload> make_workload(const WorkloadOptions& o);

}  // namespace tuna
