#include "tuna/workloads/registry.h"

#include "core/error.h"

namespace tuna {

void add_workload_options(CLI::App* cmd, WorkloadOptions* o) {
  cmd->add_option("-w,--workload", o->name,
                  "workload: gups, bfs, sssp, pagerank, xsbench, btree, trace or microbench")
      ->capture_default_str();
  cmd->add_option("--graph", o->graph.kind,
                  "graph kernels: kronecker (Graph500 A=0.57, B=C=0.19) or uniform")
      ->capture_default_str();
  cmd->add_option("--scale", o->graph.scale, "graph kernels: 2^scale vertices")
      ->capture_default_str();
  cmd->add_option("--degree", o->graph.degree, "graph kernels: average degree")
      ->capture_default_str();
  cmd->add_option("--table-mb", o->table_mb, "gups, microbench: table (footprint) size in MiB")
      ->capture_default_str()
      ->check(CLI::Range(1, 1 << 20));
  cmd->add_option("--hot-mb", o->hot_mb,
                  "gups, microbench: hot-set size in MiB (gups: moves halfway)")
      ->capture_default_str()
      ->check(CLI::Range(1, 1 << 20));
  cmd->add_option("--hot-fraction", o->hot_fraction,
                  "gups, microbench: share of accesses to the hot set")
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
  cmd->add_option("--pattern", o->pattern, "microbench: random or sequential within a region")
      ->capture_default_str();
  cmd->add_option("--write-fraction", o->microbench.write_fraction,
                  "microbench: share of read-modify-writes")
      ->capture_default_str()
      ->check(CLI::Range(0.0, 1.0));
  cmd->add_option("--dependent-fraction", o->microbench.dependent_fraction,
                  "microbench: share of accesses whose address comes from the previous read")
      ->capture_default_str()
      ->check(CLI::Range(0.0, 1.0));
  cmd->add_option("--compute-per-access", o->microbench.compute_per_access,
                  "microbench: compute units between accesses")
      ->capture_default_str();
  cmd->add_option("--hot-moves", o->microbench.hot_moves,
                  "microbench: times the hot set moves to fresh memory")
      ->capture_default_str();
  cmd->add_option("--phase-hot-mb", o->phase_hot_mb,
                  "microbench: hot-set sizes in MiB, one per equal phase of the run (e.g. 8,40,8)")
      ->delimiter(',');
  cmd->add_option("--accesses", o->microbench.accesses, "microbench: accesses")
      ->capture_default_str();
  cmd->add_option("--trace", o->trace,
                  "trace: a file from valgrind --tool=lackey --trace-mem=yes --log-file=FILE");
}

WorkloadOptions parse_workload_args(const std::string& args) {
  CLI::App app("workload");
  WorkloadOptions o;
  add_workload_options(&app, &o);
  try {
    app.parse(args, false);
  } catch (const CLI::ParseError& e) {
    core::throw_bad_input("workload '", args, "': ", e.what());
  }
  return o;
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
    g.hot_fraction = o.hot_fraction;
    return std::make_unique<Gups>(g);
  }
  if (o.name == "microbench") {
    MicrobenchOptions m = seeded(o.microbench);
    m.footprint_bytes = o.table_mb << 20;
    m.hot_bytes = o.hot_mb << 20;
    m.hot_fraction = o.hot_fraction;
    m.phase_hot_bytes.clear();
    for (uint64_t mb : o.phase_hot_mb) m.phase_hot_bytes.push_back(mb << 20);
    if (o.pattern != "random" && o.pattern != "sequential") {
      core::throw_bad_input("microbench: pattern '", o.pattern, "' (random or sequential)");
    }
    m.sequential = o.pattern == "sequential";
    return std::make_unique<Microbench>(m);
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
                        "' (available: gups, bfs, sssp, pagerank, xsbench, btree, trace, microbench)");
}

}  // namespace tuna
