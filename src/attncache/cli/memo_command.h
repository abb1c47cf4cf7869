// Commands of the attention-map memoization database: `attncache build` (collect maps, train
// the projector, index) and `attncache eval` (hit rate, fidelity and speed on a query workload).
#pragma once

#include <CLI/CLI.hpp>
#include <string>

namespace attncache::cli {

void add_build_command(CLI::App& app);
void add_eval_command(CLI::App& app);

// --pin-maps and --gpu-maps: how a command that reads a map database on the GPU feeds and
// holds its device map cache (memo::GpuEvalOptions::pin_host_maps, p4_maps = "p4").
void add_gpu_map_cache_options(CLI::App& cmd, bool& pin_maps, std::string& gpu_maps);

}  // namespace attncache::cli
