// What the batcher's worker runs: one group of jobs as one forward batch on the model. Embedding
// jobs of a namespace with a map database go through AttnCache (lookup, layer-0 check, stored
// maps on hits); others run the exact path. Scoring jobs (decoders) compute every prompt
// token's log-probability exactly, one forward pass per prompt.
#pragma once

#include <vector>

#include "attncache/memo/attn_cache.h"
#include "attncache/prefill_model.h"
#include "attncache/serve/batcher.h"
#include "attncache/serve/metrics.h"

namespace attncache::serve {

struct ReuseSettings {
  double threshold = 0.995;
  memo::HitVerification verification;
};

class ModelRunner {
 public:
  // `model` is used from the batcher's worker thread only.
  ModelRunner(PrefillModel& model, ReuseSettings reuse, size_t max_batch, Metrics& metrics)
      : model_(model), reuse_(reuse), max_batch_(max_batch), metrics_(metrics) {}

  void run(const std::vector<Job*>& jobs);

 private:
  void embed(const std::vector<Job*>& jobs);
  void score(const std::vector<Job*>& jobs);

  PrefillModel& model_;
  ReuseSettings reuse_;
  size_t max_batch_;
  Metrics& metrics_;
};

}  // namespace attncache::serve
