// Multiple-choice scoring with a decoder, three ways on the same prompts: the exact prefill; exact
// prefill that reuses the keys and values of the k-shot header every question of a subject shares
// (lossless, the baseline any serving stack has); and AttnCache, which reuses a similar stored
// prompt's attention maps. Each reads the answer from the log-probabilities of " A" … " D" at
// the prompt's last token, and is timed with its own costs (tokenization, lookups, the header's
// prefill) inside.
#pragma once

#include <array>
#include <cstdint>
#include <functional>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "attncache/decoder.h"
#include "attncache/memo/attn_cache.h"
#include "attncache/tasks/multiple_choice.h"

namespace attncache::tasks {

enum class McPath { kExact, kPrefixKv, kAttnCache };
const char* mc_path_name(McPath path);

struct McOptions {
  int shots = 5;
  int batch = 8;
  bool progress = false;
  // Computes the exact path's vectors (the last tokens' final hidden states), e.g. on a GPU;
  // null: the decoder on the CPU.
  std::function<std::vector<float>(const std::vector<std::vector<int32_t>>&)> exact_embed;
  // Computes AttnCache's vectors and each prompt's lookup, e.g. on a GPU (memo::gpu_attncache);
  // null: the `cache` that score_mc is given.
  std::function<std::vector<float>(const std::vector<std::vector<int32_t>>&,
                                   std::vector<memo::Lookup>*)>
      attncache_embed;
};

struct McAnswer {
  int predicted = -1;
  std::array<float, 4> log_probs{};
  int tokens = 0;           // prompt tokens
  int computed_tokens = 0;  // tokens run through the model (the suffix with a cached header)
  bool hit = false;         // AttnCache: stored maps were used
  memo::Lookup lookup;      // AttnCache: the nearest stored prompt of the same length
};

struct McRun {
  McPath path = McPath::kExact;
  std::vector<McAnswer> answers;
  double seconds = 0;
  size_t kv_cache_bytes = 0;  // prefix path: the largest header cache held
};

// The prompts of `questions` at `shots` shots (examples from `dev`, the first of each subject),
// tokenized. Throws core::Error (bad input) when a subject has fewer dev examples than shots, a
// prompt exceeds `max_tokens`, or the option letters are not single tokens.
struct McPrompts {
  std::vector<std::vector<int32_t>> ids;
  std::vector<std::vector<int32_t>> header_ids;  // per question: its subject's header, tokenized
  std::array<int32_t, 4> letter_ids{};           // " A" … " D"
};
McPrompts build_mc_prompts(const Decoder& decoder, const std::vector<McQuestion>& questions,
                           const std::vector<McQuestion>& dev, int shots, int max_tokens);

// Runs every path over all prompts, batch by batch with the paths taking turns (timings are
// comparable under drift). kAttnCache needs `cache` or options.attncache_embed.
std::vector<McRun> score_mc(Decoder& decoder, const McPrompts& prompts,
                            const std::vector<McPath>& paths, const McOptions& options,
                            memo::AttnCache* cache = nullptr);

// Accuracy (labelled questions), agreement with `exact`, time, hit rate: one JSON object.
nlohmann::json summarize(const McRun& run, const McRun* exact,
                         const std::vector<McQuestion>& questions);

}  // namespace attncache::tasks
