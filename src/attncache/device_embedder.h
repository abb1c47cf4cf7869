// Where a PrefillModel's vectors (PrefillModel::embed: an encoder's sentence embeddings, a
// decoder's last final hidden states) and a decoder's token log-probabilities are computed: on
// the CPU engine, or on the GPU (CudaBertEncoder, CudaLlamaModel) with the CPU engine as the
// fall-back. `--device cpu|cuda|auto` in the CLI.
//
// A GPU that fails in the middle of a run (a CUDA error: core::Error of kind internal) is not
// trusted again: that batch and every later one run on the CPU, after one warning on stderr, so
// a run finishes with correct results or not at all, never with a silently wrong answer. A
// batch the GPU refuses as bad input (most often: too large for its free memory or its memory
// limit) is not a GPU failure: that batch runs on the CPU, after a note on stderr, and the GPU
// keeps the later ones; if the CPU refuses it too, its error is passed on.
#pragma once

#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "attncache/model/cuda_model.h"
#include "attncache/prefill_model.h"
#include "core/error.h"

namespace attncache {

enum class Device { kCpu, kCuda, kAuto };

// "cpu", "cuda" or "auto"; throws core::Error (bad input) otherwise.
Device parse_device(const std::string& name);

// Where work that runs on the CPU only goes when `requested`: the CPU, after a note on stderr
// for kAuto; kCuda is refused as bad input. `why` names the work that keeps the run on the CPU,
// `remedy` what would let it run on the GPU; both messages carry them.
Device device_for_cpu_only_work(Device requested, const std::string& why,
                                const std::string& remedy);

// Usable CUDA devices; 0 in a build without the CUDA backend.
int cuda_device_count();

// The CPU takes over a batch of `inputs` on which the GPU threw `e`: says so on stderr (`what`
// names the work, e.g. "AttnCache"; empty: none) and returns whether the GPU failed (kind
// internal: one warning, and the rest of the run belongs on the CPU) rather than refused it
// (bad input: a note, this batch only).
bool cpu_takes_over(const core::Error& e, size_t inputs, const std::string& what = "");

class DeviceEmbedder {
 public:
  using BatchFn = std::function<std::vector<float>(const std::vector<std::vector<int32_t>>&)>;
  using MapsBatchFn = std::function<std::vector<float>(const std::vector<std::vector<int32_t>>&,
                                                       const DeviceMapPlan*)>;

  // kCuda: throws core::Error (bad input) when this build has no CUDA backend or no GPU is
  // usable (or the model does not fit it). kAuto: the GPU when that works, else the CPU, with a
  // note on stderr saying why.
  // `cpu` is an Embedder or a Decoder (another model runs on the CPU, or is refused for kCuda).
  DeviceEmbedder(PrefillModel& cpu, Device device);
  // With `gpu` standing in for the GPU model's embed (tests), `gpu_log_probs` (if given) for
  // its token log-probabilities ([Σ N] floats, as CudaLlamaModel::Output::kTokenLogProbs),
  // `gpu_maps` (if given) for its embed with stored maps and `gpu_record` (if given) for its
  // embed recording maps.
  DeviceEmbedder(PrefillModel& cpu, BatchFn gpu, std::string gpu_name,
                 BatchFn gpu_log_probs = nullptr, MapsBatchFn gpu_maps = nullptr,
                 RecordingForward gpu_record = nullptr);
  ~DeviceEmbedder();
  DeviceEmbedder(const DeviceEmbedder&) = delete;  // the GPU path refers to this object
  DeviceEmbedder& operator=(const DeviceEmbedder&) = delete;

  // [batch.size() × dim], as the model's embed().
  std::vector<float> embed(const std::vector<std::vector<int32_t>>& batch);
  // As embed(), with the maps `hook` asks for (AttentionHook::record) recorded, as the CPU
  // engine records them (fp32; on the GPU, its bf16 P widened). The hook's stored maps are read
  // on the CPU only: a batch whose hook has some runs there. Falls back as embed() does.
  std::vector<float> embed_recording(const std::vector<std::vector<int32_t>>& batch,
                                     AttentionHook& hook);
  // The same on the GPU with stored maps in device memory (AttnCache on the GPU; `plan` as the
  // GPU model's forward takes it, null: none). Bad input when the model is not on a GPU. A GPU
  // failure is passed on (the maps live on the device: the caller falls back, and warns), and
  // the later batches of embed() and token_log_probs() run on the CPU without a second warning.
  std::vector<float> embed_with_maps(const std::vector<std::vector<int32_t>>& batch,
                                     const DeviceMapPlan* plan);
  // A decoder's Decoder::token_log_probs for each sequence of the batch (ids.size() − 1 values:
  // log p(ids[i] | ids[0..i−1]) for i ≥ 1), the whole batch in one forward pass on the GPU. Bad
  // input when the model is not a decoder.
  std::vector<std::vector<double>> token_log_probs(const std::vector<std::vector<int32_t>>& batch);
  // Whether the next batch runs on the GPU (or the stand-in for it).
  bool on_gpu() const { return gpu_ || gpu_log_probs_; }
  // Whether the last batch of embed() or token_log_probs() ran on the GPU.
  bool last_on_gpu() const { return last_on_gpu_; }
  // Where the next batch runs: the GPU's description, or "cpu".
  const std::string& where() const { return where_; }
  // Sends every later batch to the CPU without a warning: for a GPU failure that other work on
  // this GPU met and reported (AttnCache's device map cache).
  void drop_gpu();

 private:
  PrefillModel& cpu_;
  std::shared_ptr<void> gpu_model_;  // keeps the GPU model alive behind gpu_
  BatchFn gpu_;
  MapsBatchFn gpu_maps_;
  RecordingForward gpu_record_;
  BatchFn gpu_log_probs_;
  std::string where_ = "cpu";
  bool last_on_gpu_ = false;

  // The GPU threw `e` on a batch of `inputs`, which the CPU now runs. A failure (kind internal):
  // one warning, and the CPU from now on; a refusal (bad input): a note, this batch only.
  void leave_gpu(const core::Error& e, size_t inputs);
};

}  // namespace attncache
