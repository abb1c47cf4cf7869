#include "tuna/workloads/registry.h"

#include "core/error.h"

namespace tuna {

void add_workload_options(CLI::App* cmd, WorkloadOptions* o) {
  cmd->add_option("-w,--workload", o->name,
                  "workload: gups, bfs, sssp, pagerank, xsbench, btree or trace")
      ->capture_default_str();
  cmd->add_option("--graph", o->graph.kind,
                  "graph kernels: kronecker (Graph500 A=0.57, B=C=0.19) or uniform")
      ->capture_default_str();
  cmd->add_option("--scale", o->graph.scale, "graph kernels: 2^scale vertices")
      ->capture_default_str();
  cmd->add_option("--degree", o->graph.degree, "graph kernels: average degree")
      ->capture_default_str();
  cmd->add_option("--table-mb", o->table_mb, "gups: table size in MiB")
      ->capture_default_str()
      ->check(CLI::Range(1, 1 << 20));
  cmd->add_option("--hot-mb", o->hot_mb, "gups: hot-set size in MiB (moves halfway)")
      ->capture_default_str()
      ->check(CLI::Range(1, 1 << 20));
  cmd->add_option("--hot-fraction", o->gups.hot_fraction, "gups: share of updates to the hot set")
      ->capture_default_str()
      ->check(CLI::Range(0.0, 1.0));
  cmd->add_option("--updates", o->gups.updates, "gups: updates")->capture_default_str();
  cmd->add_option("--seed", o->seed, "random seed of the workload's input")->capture_default_str();
  cmd->add_option("--isotopes", o->xsbench.isotopes, "xsbench: isotopes (68: small)")
      ->capture_default_str();
  cmd->add_option("--gridpoints", o->xsbench.gridpoints, "xsbench: grid points per isotope")
      ->capture_default_str();
  cmd->add_option("--lookups", o->xsbench.lookups, "xsbench: cross-section lookups")
      ->capture_default_str();
  cmd->add_option("--records", o->btree.records, "btree: records in the index")
      ->capture_default_str();
  cmd->add_option("--requests", o->btree.requests, "btree: YCSB point lookups")
      ->capture_default_str();
  cmd->add_option("--zipf-theta", o->btree.zipf_theta, "btree: request skew (YCSB: 0.99)")
      ->capture_default_str();
  cmd->add_option("--trace", o->trace,
                  "trace: a file from valgrind --tool=lackey --trace-mem=yes --log-file=FILE");
}

std::unique_ptr<Workload> make_workload(const WorkloadOptions& o) {
  auto seeded = [&](auto options) {
    options.seed = o.seed;
    return options;
  };
  if (o.name == "gups") {
    GupsOptions g = seeded(o.gups);
    g.table_bytes = o.table_mb << 20;
    g.hot_bytes = o.hot_mb << 20;
    return std::make_unique<Gups>(g);
  }
  if (o.name == "bfs") return std::make_unique<Bfs>(seeded(o.graph));
  if (o.name == "sssp") return std::make_unique<Sssp>(seeded(o.graph));
  if (o.name == "pagerank") return std::make_unique<PageRank>(seeded(o.graph));
  if (o.name == "xsbench") return std::make_unique<XsBench>(seeded(o.xsbench));
  if (o.name == "btree") return std::make_unique<BTree>(seeded(o.btree));
  if (o.name == "trace") {
    if (o.trace.empty()) core::throw_bad_input("workload 'trace' needs --trace FILE");
    return std::make_unique<LackeyTrace>(o.trace);
  }
  core::throw_bad_input("unknown workload '", o.name,
                        "' (available: gups, bfs, sssp, pagerank, xsbench, btree, trace)");
}

}  // namespace tuna
