// AttnCache on the GPU over a query workload, measured the way evaluation.h measures it on the
// CPU: the exact path, AttnCache, an exact-input result cache and both together, side by side on
// the same batches, with lookups (on the CPU: layer-0 input, projector, Faiss) and map loading
// (the device map cache: conversion, pinned staging, host → device copies) inside the timed
// region, at the workload's real hit rate.
//
// The GPU path applies the paper's hit rule only: our layer-0 check needs a candidate's exact
// layer-0 maps before the remaining layers run, which a GPU forward pass (one CUDA graph per batch
// shape) does not stop for; fidelity on hits is measured instead.
//
// Every path first runs each batch twice untimed (cuBLASLt's per-shape autotuning, then CUDA
// graph capture), so the timed pass measures a warmed server. AttnCache's timed pass starts with
// an empty map cache ("cold": entries load on first use); a second pass ("resident") reruns it
// with the cache as the first pass left it.
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <nlohmann/json.hpp>
#include <vector>

#include "attncache/device_embedder.h"
#include "attncache/memo/attn_cache.h"
#include "attncache/memo/map_database.h"

namespace attncache::memo {

// Why AttnCache with its layer-0 check runs on the CPU only, and what lets it run on the GPU: the
// `why` and `remedy` of device_for_cpu_only_work for `--device`.
inline constexpr const char* kLayer0CheckOnCpu = "AttnCache's layer-0 check needs the CPU engine";
inline constexpr const char* kLayer0CheckRemedy = "--paper drops it: the paper's hit rule alone";

struct GpuEvalOptions {
  double threshold = 0.995;
  ReusePolicy policy;
  int batch = 32;
  size_t cache_bytes = size_t{4} << 30;  // the device map cache's budget
  bool p4_maps = false;  // the device map cache holds (causal) maps as P4, not as stored
  bool pin_host_maps = false;  // the database page-locked in host memory (for_database's pin_host)
  int per_hit_queries = 256;             // forced reuse of same-length candidates, timed
  bool progress = false;
};

// AttnCache's forward pass on the GPU, one batch per call: lookups on the CPU (the paper's hit
// rule), the hits' maps through a device map cache of `options.cache_bytes`, one GPU forward pass
// for hits and misses together. Returns the batch's vectors ([batch × dim], as model.embed) and
// each sequence's lookup in `found`. Throws bad input as evaluate_on_gpu does. `report`, if
// given, is set to a function that returns the map cache's counts and how its database is held
// (as evaluate_on_gpu's "map_cache"), and the time per phase (lookup, map cache, forward) per
// query it served since the last report (a batch it refused, which ran on the CPU, counts in
// neither).
using GpuAttnCacheFn = std::function<std::vector<float>(const std::vector<std::vector<int32_t>>&,
                                                        std::vector<Lookup>* found)>;
GpuAttnCacheFn gpu_attncache(PrefillModel& model, DeviceEmbedder& gpu, const MapDatabase& db,
                             const GpuEvalOptions& options,
                             std::function<nlohmann::json()>* report = nullptr);

// `on_gpu`, with the CPU behind it as DeviceEmbedder has for the exact path: a batch the GPU
// refuses as bad input runs on the CPU after a note; a GPU failure (core::Error of kind internal)
// sends that batch and every later one there after one warning, and sets `*failed` (if given).
// The CPU side is what `make_on_cpu` returns, called once on first use (AttnCache on the CPU
// engine, its maps read from the database); its own errors are passed on.
GpuAttnCacheFn with_cpu_fallback(GpuAttnCacheFn on_gpu, std::function<GpuAttnCacheFn()> make_on_cpu,
                                 bool* failed = nullptr);

// `model` is the CPU model (tokenization and lookups), `gpu` the same model on the GPU. Throws
// bad input when `gpu` is not on a GPU or the build has no CUDA backend.
nlohmann::json evaluate_on_gpu(PrefillModel& model, DeviceEmbedder& gpu, const MapDatabase& db,
                               const std::vector<std::vector<int32_t>>& queries,
                               const GpuEvalOptions& options);

}  // namespace attncache::memo
