// What the batcher's worker runs: one group of jobs as one forward batch on the model. Embedding
// jobs of a namespace with a map database go through AttnCache (lookup, layer-0 check, stored
// maps on hits, on the CPU); others run the exact path, on the GPU when the server was given a
// DeviceEmbedder that has one. Scoring jobs (decoders) compute every prompt token's
// log-probability exactly, one forward pass per slice of prompts: on the GPU with that
// DeviceEmbedder, else on the CPU.
#pragma once

#include <functional>
#include <vector>

#include "attncache/device_embedder.h"
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
  // `model` (and `device`, which runs exact embeddings and scoring when not null) is used from the
  // batcher's worker thread only.
  // A forward pass takes at most `max_batch` inputs and `max_batch_tokens` tokens (an input
  // longer than that runs alone), so the GPU's activations stay bounded whatever the requests.
  ModelRunner(PrefillModel& model, DeviceEmbedder* device, ReuseSettings reuse, size_t max_batch,
              size_t max_batch_tokens, Metrics& metrics)
      : model_(model),
        device_(device),
        reuse_(reuse),
        max_batch_(max_batch),
        max_batch_tokens_(max_batch_tokens),
        metrics_(metrics) {}

  void run(const std::vector<Job*>& jobs);

 private:
  void embed(const std::vector<Job*>& jobs);
  void score(const std::vector<Job*>& jobs);
  // Runs `forward(batch, begin)` on each slice of `inputs` (inputs [begin, begin + batch.size())),
  // timing it into the metrics under the device it returns ("cpu" or "gpu").
  using SliceForward =
      std::function<const char*(const std::vector<std::vector<int32_t>>& batch, size_t begin)>;
  void for_each_slice(const std::vector<const std::vector<int32_t>*>& inputs,
                      const SliceForward& forward);

  PrefillModel& model_;
  DeviceEmbedder* device_;
  ReuseSettings reuse_;
  size_t max_batch_;
  size_t max_batch_tokens_;
  Metrics& metrics_;
};

}  // namespace attncache::serve
