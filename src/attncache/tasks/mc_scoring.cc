#include "attncache/tasks/mc_scoring.h"

#include <algorithm>
#include <cmath>
#include <map>

#include "core/error.h"
#include "core/progress.h"
#include "core/stopwatch.h"

namespace attncache::tasks {
namespace {

int argmax4(const std::array<float, 4>& v) {
  return static_cast<int>(std::max_element(v.begin(), v.end()) - v.begin());
}

// Fills answers [first, first + n) from last-token hidden states.
void read_answers(const Decoder& decoder, const std::vector<float>& hidden, size_t n,
                  const McPrompts& prompts, McAnswer* answers) {
  const std::vector<float> lp = decoder.candidate_log_probs(hidden, n, prompts.letter_ids);
  for (size_t s = 0; s < n; ++s) {
    std::copy_n(lp.data() + 4 * s, 4, answers[s].log_probs.begin());
    answers[s].predicted = argmax4(answers[s].log_probs);
  }
}

size_t common_prefix(const std::vector<int32_t>& a, const std::vector<int32_t>& b) {
  size_t n = 0;
  while (n < a.size() && n < b.size() && a[n] == b[n]) ++n;
  return n;
}

}  // namespace

const char* mc_path_name(McPath path) {
  switch (path) {
    case McPath::kExact:
      return "exact";
    case McPath::kPrefixKv:
      return "prefix_kv";
    case McPath::kAttnCache:
      return "attncache";
  }
  return "?";
}

McPrompts build_mc_prompts(const Decoder& decoder, const std::vector<McQuestion>& questions,
                           const std::vector<McQuestion>& dev, int shots, int max_tokens) {
  const FewShotExamples examples(dev, shots);
  McPrompts p;
  for (int k = 0; k < 4; ++k) {
    const std::vector<int32_t> ids =
        decoder.tokenizer().encode(std::string(" ") + char('A' + k), false, false);
    if (ids.size() != 1) {
      core::throw_bad_input("the option letter ' ", char('A' + k),
                            "' is not one token for this tokenizer; letter scoring needs it");
    }
    p.letter_ids[k] = ids[0];
  }
  std::map<std::string, std::vector<int32_t>> headers;
  for (size_t i = 0; i < questions.size(); ++i) {
    const McQuestion& q = questions[i];
    const auto& shots_of = examples.of(q.subject);
    auto [it, fresh] = headers.try_emplace(q.subject);
    if (fresh) it->second = decoder.tokenize(mmlu_header(q.subject, shots_of), 0).ids;
    Encoding e = decoder.tokenize(mmlu_prompt(q, shots_of), 0);
    if (max_tokens > 0 && e.ids.size() > static_cast<size_t>(max_tokens)) {
      core::throw_bad_input("question ", i + 1, " (", q.subject, ") makes a prompt of ",
                            e.ids.size(), " tokens at ", shots, " shots; the limit is ",
                            max_tokens);
    }
    p.ids.push_back(std::move(e.ids));
    p.header_ids.push_back(it->second);
  }
  return p;
}

namespace {

// The tokens every prompt of [g0, g1) starts with (the header's last token may merge with the
// question's first), leaving each at least one token of its own.
size_t shared_prefix(const McPrompts& prompts, size_t g0, size_t g1) {
  size_t prefix = prompts.header_ids[g0].size();
  for (size_t i = g0; i < g1; ++i) {
    prefix = std::min(
        {prefix, common_prefix(prompts.ids[i], prompts.header_ids[g0]), prompts.ids[i].size() - 1});
  }
  return prefix;
}

// Scores questions [b0, b1) along `run`'s path; `header` holds the first `prefix` tokens' keys
// and values for the prefix path.
void score_batch(Decoder& decoder, const McPrompts& prompts, size_t b0, size_t b1,
                 const KvCache& header, size_t prefix, memo::AttnCache* cache,
                 const McOptions& options, McRun* run) {
  if (run->path != McPath::kPrefixKv) prefix = 0;
  std::vector<std::vector<int32_t>> ids;
  for (size_t i = b0; i < b1; ++i) {
    ids.emplace_back(prompts.ids[i].begin() + prefix, prompts.ids[i].end());
    run->answers[i].computed_tokens = static_cast<int>(ids.back().size());
  }
  std::vector<float> hidden;
  if (run->path == McPath::kAttnCache) {
    std::vector<memo::Lookup> lookups;
    hidden = options.attncache_embed ? options.attncache_embed(ids, &lookups)
                                     : cache->embed(ids, &lookups);
    for (size_t i = b0; i < b1; ++i) {
      run->answers[i].lookup = lookups[i - b0];
      run->answers[i].hit = lookups[i - b0].hit;
    }
  } else if (run->path == McPath::kExact && options.exact_embed) {
    hidden = options.exact_embed(ids);
  } else {
    hidden = decoder.embed_after(ids, prefix > 0 ? &header : nullptr);
  }
  read_answers(decoder, hidden, b1 - b0, prompts, run->answers.data() + b0);
}

}  // namespace

std::vector<McRun> score_mc(Decoder& decoder, const McPrompts& prompts,
                            const std::vector<McPath>& paths, const McOptions& options,
                            memo::AttnCache* cache) {
  const size_t n = prompts.ids.size();
  const size_t batch = static_cast<size_t>(std::max(1, options.batch));
  std::vector<McRun> runs(paths.size());
  for (size_t p = 0; p < paths.size(); ++p) {
    if (paths[p] == McPath::kAttnCache && cache == nullptr && !options.attncache_embed) {
      core::throw_internal("score_mc: AttnCache scoring needs a cache");
    }
    runs[p].path = paths[p];
    runs[p].answers.resize(n);
    for (size_t i = 0; i < n; ++i) {
      runs[p].answers[i].tokens = static_cast<int>(prompts.ids[i].size());
    }
  }
  core::Progress progress("scoring " + std::to_string(paths.size()) + " path(s)", n,
                          options.progress);
  // Batch by batch, every path in turn, the first path rotating: all paths see the same machine
  // state on average (this machine's speed drifts, and other jobs come and go). Questions that
  // share a header (one subject) are consecutive; the prefix path computes the header's keys
  // and values once per subject, timed as its own.
  size_t turn = 0;
  for (size_t g0 = 0; g0 < n;) {
    size_t g1 = g0 + 1;
    while (g1 < n && prompts.header_ids[g1] == prompts.header_ids[g0]) ++g1;
    KvCache header;
    const size_t prefix = shared_prefix(prompts, g0, g1);
    for (McRun& run : runs) {
      if (run.path != McPath::kPrefixKv || prefix == 0) continue;
      core::Stopwatch watch;
      const std::vector<int32_t> head(prompts.header_ids[g0].begin(),
                                      prompts.header_ids[g0].begin() + prefix);
      decoder.model().forward({head}, decoder.workspace(), nullptr, nullptr, &header,
                              LlamaModel::Rows::kLast);  // only its keys and values are kept
      run.seconds += watch.seconds();
      run.kv_cache_bytes = std::max(run.kv_cache_bytes, header.bytes());
    }
    for (size_t b0 = g0; b0 < g1; b0 += batch, ++turn) {
      const size_t b1 = std::min(g1, b0 + batch);
      for (size_t k = 0; k < runs.size(); ++k) {
        McRun& run = runs[(turn + k) % runs.size()];
        core::Stopwatch watch;
        score_batch(decoder, prompts, b0, b1, header, prefix, cache, options, &run);
        run.seconds += watch.seconds();
      }
      progress.advance(b1 - b0);
    }
    g0 = g1;
  }
  progress.finish();
  return runs;
}

nlohmann::json summarize(const McRun& run, const McRun* exact,
                         const std::vector<McQuestion>& questions) {
  size_t labelled = 0, correct = 0, agree = 0, hits = 0, tokens = 0, computed = 0;
  size_t candidates = 0, hit_agree = 0;
  std::vector<double> tv;
  for (size_t i = 0; i < run.answers.size(); ++i) {
    const McAnswer& a = run.answers[i];
    if (questions[i].answer >= 0) {
      ++labelled;
      correct += a.predicted == questions[i].answer;
    }
    if (exact != nullptr) agree += a.predicted == exact->answers[i].predicted;
    hits += a.hit;
    candidates += a.lookup.entry >= 0;
    if (a.hit && exact != nullptr) hit_agree += a.predicted == exact->answers[i].predicted;
    if (!std::isnan(a.lookup.layer0_tv)) tv.push_back(a.lookup.layer0_tv);
    tokens += a.tokens;
    computed += a.computed_tokens;
  }
  const double q = static_cast<double>(std::max<size_t>(1, run.answers.size()));
  nlohmann::json j = {{"path", mc_path_name(run.path)},
                      {"questions", run.answers.size()},
                      {"seconds", run.seconds},
                      {"ms_per_question", 1e3 * run.seconds / q},
                      {"prompt_tokens", tokens},
                      {"computed_tokens", computed},
                      {"prompt_tokens_per_s", tokens / std::max(1e-12, run.seconds)}};
  if (labelled > 0) j["accuracy"] = static_cast<double>(correct) / labelled;
  if (exact != nullptr) {
    j["agreement_with_exact"] = agree / q;
    j["speedup_vs_exact"] = exact->seconds / std::max(1e-12, run.seconds);
  }
  if (run.path == McPath::kAttnCache) {
    j["hit_rate"] = hits / q;
    j["hits"] = hits;
    j["same_length_candidates"] = candidates;
    if (exact != nullptr && hits > 0) j["agreement_on_hits"] = double(hit_agree) / hits;
    if (!tv.empty()) {
      std::sort(tv.begin(), tv.end());
      j["candidate_layer0_tv_median"] = tv[tv.size() / 2];
      j["candidate_layer0_tv_min"] = tv.front();
    }
  }
  if (run.path == McPath::kPrefixKv) j["kv_cache_bytes"] = run.kv_cache_bytes;
  return j;
}

}  // namespace attncache::tasks
