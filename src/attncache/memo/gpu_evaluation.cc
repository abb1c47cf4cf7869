#include "attncache/memo/gpu_evaluation.h"

#include <algorithm>
#include <memory>
#include <numeric>
#include <string>

#include "attncache/memo/eval_common.h"
#include "core/error.h"
#include "core/progress.h"
#include "core/stopwatch.h"
#ifdef ATTNCACHE_WITH_CUDA
#include "attncache/memo/device_map_cache.h"
#endif

namespace attncache::memo {

GpuAttnCacheFn with_cpu_fallback(GpuAttnCacheFn on_gpu, std::function<GpuAttnCacheFn()> make_on_cpu,
                                 bool* failed) {
  struct State {
    GpuAttnCacheFn gpu, cpu;
    std::function<GpuAttnCacheFn()> make_cpu;
    bool* failed;
  };
  auto state =
      std::make_shared<State>(State{std::move(on_gpu), nullptr, std::move(make_on_cpu), failed});
  return [state](const std::vector<std::vector<int32_t>>& batch, std::vector<Lookup>* found) {
    if (state->gpu) {
      try {
        return state->gpu(batch, found);
      } catch (const core::Error& e) {
        if (cpu_takes_over(e, batch.size(), "AttnCache")) {
          state->gpu = nullptr;
          if (state->failed != nullptr) *state->failed = true;
        }
      }
    }
    if (!state->cpu) state->cpu = state->make_cpu();
    return state->cpu(batch, found);
  };
}

#ifndef ATTNCACHE_WITH_CUDA

namespace {
[[noreturn]] void no_cuda() {
  core::throw_bad_input(
      "this build has no CUDA backend (configure with -DATTNCACHE_CUDA=ON and the CUDA toolkit "
      "installed)");
}
}  // namespace

nlohmann::json evaluate_on_gpu(PrefillModel&, DeviceEmbedder&, const MapDatabase&,
                               const std::vector<std::vector<int32_t>>&, const GpuEvalOptions&) {
  no_cuda();
}

GpuAttnCacheFn gpu_attncache(PrefillModel&, DeviceEmbedder&, const MapDatabase&,
                             const GpuEvalOptions&, std::function<nlohmann::json()>*) {
  no_cuda();
}

#else

namespace {

// AttnCache with the GPU model: lookups on the CPU, the hits' maps through the device map cache,
// one forward pass on the GPU for hits and misses together (misses first, as on the CPU).
class GpuAttnCache {
 public:
  GpuAttnCache(PrefillModel& model, DeviceEmbedder& gpu, const MapDatabase& db,
               const GpuEvalOptions& options)
      : lookups_(model, db, options.threshold, options.policy, {false, 0.0f}),
        gpu_(gpu),
        maps_(DeviceMapCache::for_database(db, options.cache_bytes, options.p4_maps,
                                           options.pin_host_maps)),
        policy_(options.policy),
        layers_(db.layers()) {}

  // Where the time of embed() and embed_with() went, in seconds, and the queries they served.
  struct Phases {
    double lookup = 0, maps = 0, forward = 0;
    size_t queries = 0;
  };

  // A batch refused here runs elsewhere (on the CPU): its partial times leave no trace.
  std::vector<float> embed(const Batch& batch, std::vector<Lookup>* found) {
    const Phases before = phases_;
    try {
      core::Stopwatch watch;
      *found = lookups_.lookup_batch(batch);
      phases_.lookup += watch.seconds();
      std::vector<int64_t> entries(batch.size(), -1);
      for (size_t s = 0; s < batch.size(); ++s) {
        if ((*found)[s].hit) entries[s] = (*found)[s].entry;
      }
      return embed_with(batch, entries);
    } catch (...) {
      phases_ = before;
      throw;
    }
  }

  // With the maps of given entries (−1: exact), bypassing lookup.
  std::vector<float> embed_with(const Batch& batch, const std::vector<int64_t>& entries) {
    if (std::all_of(entries.begin(), entries.end(), [](int64_t e) { return e < 0; })) {
      core::Stopwatch watch;
      std::vector<float> out = gpu_.embed_with_maps(batch, nullptr);
      phases_.forward += watch.seconds();
      phases_.queries += batch.size();
      return out;
    }
    std::vector<size_t> order(batch.size());
    std::iota(order.begin(), order.end(), 0);
    std::stable_partition(order.begin(), order.end(), [&](size_t s) { return entries[s] < 0; });
    Batch sorted(batch.size());
    std::vector<int64_t> sorted_entries(batch.size());
    for (size_t i = 0; i < order.size(); ++i) {
      sorted[i] = batch[order[i]];
      sorted_entries[i] = entries[order[i]];
    }
    core::Stopwatch watch;
    DeviceMapPlan plan;
    try {
      plan = maps_->plan(sorted_entries);
    } catch (const core::Error& e) {
      // The caller reports the failure and falls back; the exact path should not meet it again.
      if (e.kind() == core::ErrorKind::kInternal) gpu_.drop_gpu();
      throw;
    }
    phases_.maps += watch.seconds();
    const size_t nseq = batch.size();
    for (int l = 0; l < layers_; ++l) {
      for (size_t s = 0; s < nseq; ++s) {
        DeviceMapPlan::Slot& slot = plan.slots[l * nseq + s];
        if (((policy_.layers >> l) & 1) == 0) slot.stored = nullptr;
        slot.heads = policy_.heads;
      }
    }
    watch.reset();
    const std::vector<float> out = gpu_.embed_with_maps(sorted, &plan);
    phases_.forward += watch.seconds();
    phases_.queries += nseq;
    const size_t d = out.size() / nseq;
    std::vector<float> result(out.size());
    for (size_t i = 0; i < nseq; ++i) {
      std::copy_n(out.data() + i * d, d, result.data() + order[i] * d);
    }
    return result;
  }

  // The time spent per phase since the last call, per query served; restarts the count.
  nlohmann::json take_phases() {
    const double q = static_cast<double>(std::max<size_t>(1, phases_.queries));
    nlohmann::json j = {{"queries", phases_.queries},
                        {"lookup_ms_per_query", 1e3 * phases_.lookup / q},
                        {"map_cache_ms_per_query", 1e3 * phases_.maps / q},
                        {"forward_ms_per_query", 1e3 * phases_.forward / q}};
    phases_ = {};
    return j;
  }

  nlohmann::json stats() const {
    const DeviceMapCache::Stats s = maps_->stats();
    return {{"hits", s.hits},
            {"misses", s.misses},
            {"evictions", s.evictions},
            {"resident_entries", s.resident_entries},
            {"resident_bytes", s.resident_bytes},
            {"staging_bytes", s.staging_bytes},
            {"scratch_bytes", s.scratch_bytes},
            {"host_source", maps_->source_note().empty() ? "staged" : maps_->source_note()}};
  }

 private:
  AttnCache lookups_;
  DeviceEmbedder& gpu_;
  std::unique_ptr<DeviceMapCache> maps_;
  ReusePolicy policy_;
  int layers_;
  Phases phases_;
};

// Forced reuse of each query's same-length candidate against the exact path, batch by batch,
// maps resident: the per-hit ratio on the GPU. Median over three rounds of alternating runs.
nlohmann::json per_hit(DeviceEmbedder& gpu, GpuAttnCache& cache, const Batch& queries,
                       const std::vector<int64_t>& entries, size_t batch_size) {
  constexpr int kRounds = 3;
  const std::vector<Batch> batches = split_batches(queries, batch_size);
  auto entries_of = [&](size_t b) {
    const size_t b0 = b * batch_size;
    return std::vector<int64_t>(entries.begin() + b0,
                                entries.begin() + std::min(entries.size(), b0 + batch_size));
  };
  for (int warm = 0; warm < 2; ++warm) {
    for (size_t b = 0; b < batches.size(); ++b) {
      gpu.embed_with_maps(batches[b], nullptr);
      cache.embed_with(batches[b], entries_of(b));
    }
  }
  std::vector<double> ratios;
  double exact_total = 0, hit_total = 0;
  for (int round = 0; round < kRounds; ++round) {
    double exact = 0, hit = 0;
    for (size_t b = 0; b < batches.size(); ++b) {
      for (int turn = 0; turn < 2; ++turn) {
        const bool exact_turn = (turn + round + b) % 2 == 0;
        core::Stopwatch w;
        if (exact_turn) {
          gpu.embed_with_maps(batches[b], nullptr);
        } else {
          cache.embed_with(batches[b], entries_of(b));
        }
        (exact_turn ? exact : hit) += w.seconds();
      }
    }
    ratios.push_back(exact / std::max(1e-12, hit));
    exact_total += exact;
    hit_total += hit;
  }
  return {{"queries", queries.size()},
          {"batch", batch_size},
          {"rounds", kRounds},
          {"exact_ms_per_query", 1e3 * exact_total / kRounds / queries.size()},
          {"hit_ms_per_query", 1e3 * hit_total / kRounds / queries.size()},
          {"end_to_end_speedup", percentile(ratios, 50)}};
}

}  // namespace

GpuAttnCacheFn gpu_attncache(PrefillModel& model, DeviceEmbedder& gpu, const MapDatabase& db,
                             const GpuEvalOptions& options,
                             std::function<nlohmann::json()>* report) {
  if (!gpu.on_gpu()) core::throw_bad_input("AttnCache on the GPU needs the model on a GPU");
  auto cache = std::make_shared<GpuAttnCache>(model, gpu, db, options);
  if (report != nullptr) {
    *report = [cache, budget = options.cache_bytes] {
      nlohmann::json j = cache->stats();
      j["budget_bytes"] = budget;
      j["phases"] = cache->take_phases();
      return j;
    };
  }
  return [cache](const Batch& batch, std::vector<Lookup>* found) {
    return cache->embed(batch, found);
  };
}

nlohmann::json evaluate_on_gpu(PrefillModel& model, DeviceEmbedder& gpu, const MapDatabase& db,
                               const Batch& queries, const GpuEvalOptions& options) {
  if (!gpu.on_gpu()) core::throw_bad_input("AttnCache on the GPU needs the model on a GPU");
  const int d = model.dim();
  const size_t q = queries.size();
  if (q == 0) core::throw_bad_input("no queries to evaluate");
  const size_t bs = static_cast<size_t>(options.batch);
  const std::vector<Batch> batches = split_batches(queries, bs);
  auto exact_fn = [&](const Batch& b) { return gpu.embed_with_maps(b, nullptr); };

  // Every path's batch shapes twice, untimed: cuBLASLt autotuning, then CUDA graph capture.
  core::Progress progress("evaluating on the GPU", 4 * q, options.progress);
  {
    GpuAttnCache warm(model, gpu, db, options);
    std::vector<Lookup> ignored;
    for (int pass = 0; pass < 2; ++pass) {
      time_four_paths(
          batches, d, db, exact_fn,
          [&](const Batch& b, std::vector<Lookup>* found) { return warm.embed(b, found); },
          [&](const Batch& b) { return warm.embed(b, &ignored); }, progress);
    }
  }

  // The workload: the four paths timed side by side, the map caches empty at the start.
  GpuAttnCache cache(model, gpu, db, options), combined(model, gpu, db, options);
  std::vector<Lookup> ignored;
  const FourPaths run = time_four_paths(
      batches, d, db, exact_fn,
      [&](const Batch& b, std::vector<Lookup>* found) { return cache.embed(b, found); },
      [&](const Batch& b) { return combined.embed(b, &ignored); }, progress);
  const std::vector<float>& exact = run.exact_out;
  const std::vector<float>& cached = run.attncache_out;
  const std::vector<Lookup>& timed_lookups = run.lookups;
  const PathTimes &t_exact = run.exact, &t_cold = run.attncache, &t_result = run.result_cache,
                  &t_combined = run.combined;
  const nlohmann::json cold_stats = cache.stats();
  const nlohmann::json cold_phases = cache.take_phases();

  // Again, AttnCache with the maps the first pass left in GPU memory.
  PathTimes t_exact2, t_resident;
  for (size_t index = 0; index < batches.size(); ++index) {
    for (int turn = 0; turn < 2; ++turn) {
      const bool exact_turn = (turn + index) % 2 == 0;
      std::vector<Lookup> found;
      core::Stopwatch w;
      if (exact_turn) {
        exact_fn(batches[index]);
      } else {
        cache.embed(batches[index], &found);
      }
      const double s = w.seconds();
      PathTimes& t = exact_turn ? t_exact2 : t_resident;
      t.total += s;
      t.batch_seconds.push_back(s);
    }
    progress.advance(batches[index].size());
  }
  progress.finish();
  const nlohmann::json resident_phases = cache.take_phases();

  size_t hits = 0, candidates = 0;
  std::vector<double> hit_cos;
  Batch forced_queries;
  std::vector<int64_t> forced_entries;
  for (size_t i = 0; i < q; ++i) {
    if (timed_lookups[i].entry >= 0) {
      ++candidates;
      if (forced_queries.size() < static_cast<size_t>(options.per_hit_queries)) {
        forced_queries.push_back(queries[i]);
        forced_entries.push_back(timed_lookups[i].entry);
      }
    }
    if (!timed_lookups[i].hit) continue;
    ++hits;
    hit_cos.push_back(cosine(exact.data() + i * d, cached.data() + i * d, d));
  }
  nlohmann::json per_hit_json = nullptr;
  if (!forced_queries.empty()) {
    try {
      per_hit_json = per_hit(gpu, cache, forced_queries, forced_entries, bs);
    } catch (const core::Error& e) {
      if (e.kind() != core::ErrorKind::kBadInput) throw;
      per_hit_json = {{"error", e.what()}};  // e.g. a batch's maps exceed the cache budget
    }
  }

  double tokens = 0;
  for (const auto& ids : queries) tokens += ids.size();
  return {{"device", gpu.where()},
          {"queries", q},
          {"mean_tokens", tokens / q},
          {"threshold", options.threshold},
          {"batch", options.batch},
          {"rule", "paper (projector distance only; no layer-0 check on the GPU)"},
          {"hit_rate", static_cast<double>(hits) / q},
          {"hits", hits},
          {"same_length_candidates", candidates},
          {"exact_result_cache_hit_rate", static_cast<double>(run.result_cache_hits) / q},
          {"fidelity", {{"cosine_on_hits", stats(hit_cos)}}},
          {"timing",
           {{"exact", t_exact.to_json(q)},
            {"attncache_cold_maps", t_cold.to_json(q)},
            {"exact_result_cache", t_result.to_json(q)},
            {"exact_result_cache_then_attncache", t_combined.to_json(q)},
            {"exact_second_pass", t_exact2.to_json(q)},
            {"attncache_resident_maps", t_resident.to_json(q)},
            {"attncache_cold_maps_phases", cold_phases},
            {"attncache_resident_maps_phases", resident_phases}}},
          {"speedup",
           {{"attncache_cold_maps_vs_exact", t_exact.total / t_cold.total},
            {"attncache_resident_maps_vs_exact", t_exact2.total / t_resident.total},
            {"exact_result_cache_vs_exact", t_exact.total / t_result.total},
            {"combined_vs_exact_result_cache", t_result.total / t_combined.total},
            {"combined_vs_exact", t_exact.total / t_combined.total}}},
          {"map_cache",
           {{"budget_bytes", options.cache_bytes},
            {"after_first_pass", cold_stats},
            {"after_second_pass", cache.stats()}}},
          {"per_hit", per_hit_json},
          {"database",
           {{"entries", db.size()},
            {"bytes_per_entry", static_cast<double>(db.bytes_on_disk()) / db.size()},
            {"map_dtype", std::string(core::dtype_name(db.map_dtype()))}}}};
}

#endif

}  // namespace attncache::memo
