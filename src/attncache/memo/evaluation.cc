#include "attncache/memo/evaluation.h"

#include <algorithm>
#include <cmath>
#include <numeric>
#include <string>

#include "attncache/memo/eval_common.h"
#include "core/error.h"
#include "core/progress.h"
#include "core/stopwatch.h"

namespace attncache::memo {
namespace {

// Ids of the k corpus rows most similar (dot product of normalized embeddings) to `q`.
std::vector<int> top_k(const float* q, const std::vector<float>& corpus, int d, int k) {
  const int n = static_cast<int>(corpus.size() / d);
  std::vector<std::pair<double, int>> scored(n);
  for (int i = 0; i < n; ++i)
    scored[i] = {-cosine(q, corpus.data() + static_cast<size_t>(i) * d, d), i};
  k = std::min(k, n);
  std::partial_sort(scored.begin(), scored.begin() + k, scored.end());
  std::vector<int> ids(k);
  for (int i = 0; i < k; ++i) ids[i] = scored[i].second;
  return ids;
}

// Exact against stored-map forward passes of the same hit inputs, with the encoder's phase
// profile: the per-hit ratios the paper reports (its "attention" is the attention block; ours is
// the Q/K/V projections plus QKᵀ, softmax and P·V, or for hits V plus loading P and P·V).
nlohmann::json per_hit(PrefillModel& model, AttnCache& cache, const Batch& hits,
                       const std::vector<int64_t>& entries, int batch_size, bool verified) {
  // Three rounds, each batch run both ways in alternating order; the ratios reported are the
  // medians over rounds (a round is short, and this machine's speed drifts by ±10%).
  constexpr int kRounds = 3;
  const ForwardProfile& timings = model.timings();
  ForwardProfile exact_profile, hit_profile;
  double exact_seconds = 0, hit_seconds = 0;
  std::vector<double> e2e_ratios, block_ratios;
  for (int round = 0; round < kRounds; ++round) {
    double round_exact = 0, round_hit = 0, block_exact = 0, block_hit = 0;
    for (size_t b0 = 0; b0 < hits.size(); b0 += batch_size) {
      const size_t b1 = std::min(hits.size(), b0 + batch_size);
      const Batch batch(hits.begin() + b0, hits.begin() + b1);
      const std::vector<int64_t> e(entries.begin() + b0, entries.begin() + b1);
      for (int turn = 0; turn < 2; ++turn) {
        const bool exact_turn = (turn + round + b0 / batch_size) % 2 == 0;
        model.set_profiling(true);
        model.timings() = {};
        core::Stopwatch watch;
        if (exact_turn) {
          model.embed(batch);
        } else {
          cache.embed_with(batch, e);
        }
        const double t = watch.seconds();
        ForwardProfile& p = exact_turn ? exact_profile : hit_profile;
        (exact_turn ? round_exact : round_hit) += t;
        (exact_turn ? block_exact : block_hit) += timings.qkv_seconds + timings.attention_seconds;
        p.qkv_seconds += timings.qkv_seconds;
        p.attention_seconds += timings.attention_seconds;
        p.gemm_seconds += timings.gemm_seconds;
        p.other_seconds += timings.other_seconds;
        p.layer_attention_seconds.resize(timings.layer_attention_seconds.size());
        for (size_t l = 0; l < p.layer_attention_seconds.size(); ++l) {
          p.layer_attention_seconds[l] += timings.layer_attention_seconds[l];
        }
      }
    }
    exact_seconds += round_exact;
    hit_seconds += round_hit;
    e2e_ratios.push_back(round_exact / std::max(1e-12, round_hit));
    block_ratios.push_back(block_exact / std::max(1e-12, block_hit));
  }
  model.set_profiling(false);
  auto phases = [](const ForwardProfile& p, double total) {
    return nlohmann::json{{"total_s", total},
                          {"qkv_projection_s", p.qkv_seconds},
                          {"attention_core_s", p.attention_seconds},
                          {"other_gemm_s", p.gemm_seconds},
                          {"other_s", p.other_seconds}};
  };
  // The paper times the attention of one reused layer; with verification layer 0 runs exactly,
  // so "reused layers" means layers 1… (all layers in the paper's mode).
  const size_t first_reused = verified ? 1 : 0;
  double exact_reused = 0, hit_reused = 0;
  for (size_t l = first_reused; l < exact_profile.layer_attention_seconds.size(); ++l) {
    exact_reused += exact_profile.layer_attention_seconds[l];
    hit_reused += hit_profile.layer_attention_seconds[l];
  }
  return {{"queries", hits.size()},
          {"batch", batch_size},
          {"attention_speedup_reused_layers", exact_reused / std::max(1e-12, hit_reused)},
          {"exact", phases(exact_profile, exact_seconds)},
          {"hit", phases(hit_profile, hit_seconds)},
          {"rounds", kRounds},
          {"attention_speedup", percentile(block_ratios, 50)},
          {"attention_core_speedup",
           exact_profile.attention_seconds / std::max(1e-12, hit_profile.attention_seconds)},
          {"end_to_end_speedup", percentile(e2e_ratios, 50)}};
}

}  // namespace

nlohmann::json evaluate(PrefillModel& model, const MapDatabase& db, const Batch& queries,
                        const EvalOptions& options) {
  const int d = model.dim();
  const size_t q = queries.size();
  if (q == 0) core::throw_bad_input("no queries to evaluate");
  AttnCache cache(model, db, options.threshold, options.policy, options.verification);

  // Lookups alone, for the per-query lookup cost (it is also inside the timed AttnCache path).
  core::Stopwatch watch;
  for (const auto& query : queries) cache.lookup(query);
  const double lookup_seconds = watch.seconds();

  // Warm up every path once (page cache, oneDNN kernels), untimed.
  const size_t bs = static_cast<size_t>(options.batch);
  {
    const Batch first(queries.begin(), queries.begin() + std::min(q, bs));
    model.embed(first);
    cache.embed(first);
  }

  // The workload: the four paths timed side by side.
  core::Progress progress("evaluating", q, options.progress);
  const FourPaths run = time_four_paths(
      split_batches(queries, bs), d, db, [&](const Batch& b) { return model.embed(b); },
      [&](const Batch& b, std::vector<Lookup>* found) { return cache.embed(b, found); },
      [&](const Batch& b) { return cache.embed(b); }, progress);
  progress.finish();
  const std::vector<float>& exact = run.exact_out;
  const std::vector<float>& cached = run.attncache_out;
  const std::vector<Lookup>& timed_lookups = run.lookups;
  const PathTimes &t_exact = run.exact, &t_cache = run.attncache, &t_result = run.result_cache,
                  &t_combined = run.combined;

  // Fidelity on hits, and on a retrieval task against the database's inputs.
  size_t hits = 0, candidates = 0;
  std::vector<double> hit_cos;
  Batch hit_queries;
  std::vector<int64_t> hit_entries;
  for (size_t i = 0; i < q; ++i) {
    if (timed_lookups[i].entry >= 0) ++candidates;
    if (!timed_lookups[i].hit) continue;
    ++hits;
    hit_cos.push_back(cosine(exact.data() + i * d, cached.data() + i * d, d));
    hit_queries.push_back(queries[i]);
    hit_entries.push_back(timed_lookups[i].entry);
  }
  std::vector<float> corpus(db.size() * d);
  for (size_t i = 0; i < db.size(); ++i) {
    const MapEntry e = db.entry(i);
    std::copy(e.embedding.begin(), e.embedding.end(), corpus.begin() + i * d);
  }
  const int k = std::min<int>(options.recall_k, static_cast<int>(db.size()));
  double recall_all = 0, recall_hits = 0;
  for (size_t i = 0; i < q; ++i) {
    std::vector<int> a = top_k(exact.data() + i * d, corpus, d, k);
    std::vector<int> b = timed_lookups[i].hit ? top_k(cached.data() + i * d, corpus, d, k) : a;
    std::sort(a.begin(), a.end());
    std::sort(b.begin(), b.end());
    std::vector<int> both;
    std::set_intersection(a.begin(), a.end(), b.begin(), b.end(), std::back_inserter(both));
    const double r = static_cast<double>(both.size()) / k;
    recall_all += r;
    if (timed_lookups[i].hit) recall_hits += r;
  }

  // Per-hit ratios at the workload's batch size and at batch 1 (the paper's setting). Speed
  // does not depend on how alike the maps are, so with too few hits the ratios are measured on
  // forced reuse of each query's same-length candidate (and the report says so).
  constexpr size_t kMinHitsTimed = 8;
  Batch timed_queries = hit_queries;
  std::vector<int64_t> timed_entries = hit_entries;
  std::string timed_on = "hits";
  if (timed_queries.size() < kMinHitsTimed) {
    timed_queries.clear();
    timed_entries.clear();
    for (size_t i = 0; i < q; ++i) {
      if (timed_lookups[i].entry < 0) continue;
      timed_queries.push_back(queries[i]);
      timed_entries.push_back(timed_lookups[i].entry);
    }
    timed_on = "forced reuse of same-length candidates (fewer than 8 hits)";
  }
  const size_t n_hit = std::min<size_t>(timed_queries.size(), options.per_hit_queries);
  nlohmann::json per_hit_json = nullptr, per_hit_1 = nullptr;
  if (n_hit > 0) {
    HitVerification accept_all = options.verification;
    accept_all.max_tv = INFINITY;
    AttnCache forced_cache(model, db, options.threshold, options.policy, accept_all);
    const Batch h(timed_queries.begin(), timed_queries.begin() + n_hit);
    const std::vector<int64_t> e(timed_entries.begin(), timed_entries.begin() + n_hit);
    const bool verified = options.verification.enabled;
    per_hit_json = per_hit(model, forced_cache, h, e, options.batch, verified);
    const size_t n1 = std::min<size_t>(n_hit, 32);
    per_hit_1 = per_hit(model, forced_cache, Batch(h.begin(), h.begin() + n1),
                        std::vector<int64_t>(e.begin(), e.begin() + n1), 1, verified);
    per_hit_json["timed_on"] = timed_on;
    per_hit_1["timed_on"] = timed_on;
  }

  // Sweeps: lookups do not depend on the threshold, so the embedding each candidate would get
  // is computed once per mode: the paper's (all layers reuse, no check) and ours (layer 0 exact
  // and measured, layers 1… reuse). Speedups are modelled from the measured per-query costs.
  std::vector<int64_t> forced(q, -1);
  for (size_t i = 0; i < q; ++i) forced[i] = timed_lookups[i].entry;
  std::vector<double> cos_paper(q, 1.0), cos_checked(q, 1.0);
  std::vector<float> tv(q, NAN);
  {
    AttnCache paper(model, db, options.threshold, options.policy, {false, 0.0f});
    AttnCache checked(model, db, options.threshold, options.policy, {true, INFINITY});
    for (size_t b0 = 0; b0 < q; b0 += bs) {
      const size_t b1 = std::min(q, b0 + bs);
      const Batch batch(queries.begin() + b0, queries.begin() + b1);
      const std::vector<int64_t> e(forced.begin() + b0, forced.begin() + b1);
      std::vector<float> batch_tv;
      const std::vector<float> a = paper.embed_with(batch, e);
      const std::vector<float> b = checked.embed_with(batch, e, &batch_tv);
      for (size_t i = b0; i < b1; ++i) {
        if (forced[i] < 0) continue;
        cos_paper[i] = cosine(exact.data() + i * d, a.data() + (i - b0) * d, d);
        cos_checked[i] = cosine(exact.data() + i * d, b.data() + (i - b0) * d, d);
        tv[i] = batch_tv[i - b0];
      }
    }
  }
  const double per_query_exact = t_exact.total / q;
  const double per_query_lookup = lookup_seconds / q;
  const double hit_ratio =
      per_hit_json.is_null() ? 1.0 : per_hit_json["end_to_end_speedup"].get<double>();
  auto sweep_point = [&](double t, bool verify, float max_tv) {
    std::vector<double> cos;
    for (size_t i = 0; i < q; ++i) {
      if (forced[i] < 0 || 1.0 - timed_lookups[i].distance < t) continue;
      if (verify && !(tv[i] <= max_tv)) continue;
      cos.push_back(verify ? cos_checked[i] : cos_paper[i]);
    }
    const double h = static_cast<double>(cos.size()) / q;
    const double modelled = per_query_exact / (per_query_lookup + (1 - h) * per_query_exact +
                                               h * per_query_exact / hit_ratio);
    return nlohmann::json{
        {"hit_rate", h}, {"cosine_on_hits", stats(cos)}, {"modelled_workload_speedup", modelled}};
  };
  std::vector<double> thresholds = options.sweep;
  if (std::find(thresholds.begin(), thresholds.end(), options.threshold) == thresholds.end()) {
    thresholds.push_back(options.threshold);
  }
  std::sort(thresholds.begin(), thresholds.end());
  nlohmann::json sweep = nlohmann::json::array();
  for (double t : thresholds) {
    sweep.push_back({{"threshold", t},
                     {"paper", sweep_point(t, false, 0)},
                     {"verified", sweep_point(t, true, options.verification.max_tv)}});
  }
  nlohmann::json tv_sweep = nlohmann::json::array();
  for (float m : {0.01f, 0.02f, 0.05f, 0.1f, 0.2f, 0.5f}) {
    nlohmann::json point = sweep_point(options.threshold, true, m);
    point["max_tv"] = m;
    tv_sweep.push_back(point);
  }
  std::vector<double> candidate_tv;
  for (float x : tv) {
    if (!std::isnan(x)) candidate_tv.push_back(x);
  }

  double tokens = 0;
  for (const auto& ids : queries) tokens += ids.size();
  return {{"queries", q},
          {"mean_tokens", tokens / q},
          {"threshold", options.threshold},
          {"batch", options.batch},
          {"hit_rate", static_cast<double>(hits) / q},
          {"hits", hits},
          {"same_length_candidates", candidates},
          {"exact_result_cache_hit_rate", static_cast<double>(run.result_cache_hits) / q},
          {"fidelity",
           {{"cosine_on_hits", stats(hit_cos)},
            {"recall_at_k", k},
            {"recall_all_queries", recall_all / q},
            {"recall_on_hits", hits > 0 ? recall_hits / hits : NAN}}},
          {"timing",
           {{"exact", t_exact.to_json(q)},
            {"attncache", t_cache.to_json(q)},
            {"exact_result_cache", t_result.to_json(q)},
            {"exact_result_cache_then_attncache", t_combined.to_json(q)},
            {"lookup_only_seconds", lookup_seconds},
            {"lookup_ms_per_query", 1e3 * per_query_lookup}}},
          {"speedup",
           {{"attncache_vs_exact", t_exact.total / t_cache.total},
            {"exact_result_cache_vs_exact", t_exact.total / t_result.total},
            {"combined_vs_exact_result_cache", t_result.total / t_combined.total},
            {"combined_vs_exact", t_exact.total / t_combined.total}}},
          {"per_hit", per_hit_json},
          {"per_hit_batch1", per_hit_1},
          {"verification",
           {{"enabled", options.verification.enabled},
            {"max_tv", options.verification.max_tv},
            {"candidate_layer0_tv", stats(candidate_tv)}}},
          {"sweep", sweep},
          {"max_tv_sweep", tv_sweep},
          {"database",
           {{"entries", db.size()},
            {"bytes_on_disk", db.bytes_on_disk()},
            {"bytes_per_entry", static_cast<double>(db.bytes_on_disk()) / db.size()},
            {"map_dtype", std::string(core::dtype_name(db.map_dtype()))},
            {"index", db.manifest()["index"]["spec"]}}}};
}

}  // namespace attncache::memo
