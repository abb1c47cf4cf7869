#include "attncache/device_embedder.h"

#include <cstdio>

#include "attncache/decoder.h"
#include "attncache/embedder.h"
#include "core/error.h"
#ifdef ATTNCACHE_WITH_CUDA
#include "attncache/kernels/cuda/runtime.h"
#include "attncache/model/bert_cuda.h"
#include "attncache/model/cuda_recording.h"
#include "attncache/model/llama_cuda.h"
#endif

namespace attncache {

Device parse_device(const std::string& name) {
  if (name == "cpu") return Device::kCpu;
  if (name == "cuda") return Device::kCuda;
  if (name == "auto") return Device::kAuto;
  core::throw_bad_input("unknown device '", name, "' (cpu, cuda or auto)");
}

Device device_for_cpu_only_work(Device requested, const std::string& why,
                                const std::string& remedy) {
  if (requested == Device::kCuda) core::throw_bad_input("--device cuda: ", why, " (", remedy, ")");
  if (requested == Device::kAuto) {
    std::fprintf(stderr, "--device auto: running on the CPU (%s; %s)\n", why.c_str(),
                 remedy.c_str());
  }
  return Device::kCpu;
}

int cuda_device_count() {
#ifdef ATTNCACHE_WITH_CUDA
  return cuda::device_count();
#else
  return 0;
#endif
}

DeviceEmbedder::DeviceEmbedder(PrefillModel& cpu, Device device) : cpu_(cpu) {
  if (device == Device::kCpu) return;
  try {
#ifdef ATTNCACHE_WITH_CUDA
    if (auto* encoder = dynamic_cast<Embedder*>(&cpu)) {
      auto gpu = std::shared_ptr<CudaBertEncoder>(CudaBertEncoder::create(encoder->config()));
      where_ = gpu->device_description();
      gpu_maps_ = [g = gpu.get()](const std::vector<std::vector<int32_t>>& batch,
                                  const DeviceMapPlan* plan) { return g->embed(batch, plan); };
      gpu_model_ = std::move(gpu);
    } else if (auto* decoder = dynamic_cast<Decoder*>(&cpu)) {
      auto gpu = std::shared_ptr<CudaLlamaModel>(CudaLlamaModel::create(decoder->model()));
      where_ = gpu->device_description();
      gpu_maps_ = [g = gpu.get()](const std::vector<std::vector<int32_t>>& batch,
                                  const DeviceMapPlan* plan) {
        return g->forward(batch, CudaLlamaModel::Output::kLastHidden, plan);
      };
      gpu_log_probs_ = [g = gpu.get()](const std::vector<std::vector<int32_t>>& batch) {
        return g->forward(batch, CudaLlamaModel::Output::kTokenLogProbs);
      };
      gpu_model_ = std::move(gpu);
    } else {
      core::throw_bad_input("this model has no GPU implementation");
    }
    gpu_ = [this](const std::vector<std::vector<int32_t>>& batch) {
      return gpu_maps_(batch, nullptr);
    };
    gpu_record_ = [this](const std::vector<std::vector<int32_t>>& batch, AttentionHook& hook) {
      return cuda_forward::forward_recording(
          batch, cpu_.num_layers(), cpu_.num_heads(), cpu_.causal(), hook,
          [&](const DeviceMapPlan& plan) { return gpu_maps_(batch, &plan); });
    };
#else
    core::throw_bad_input(
        "this build has no CUDA backend (configure with -DATTNCACHE_CUDA=ON "
        "and the CUDA toolkit installed)");
#endif
  } catch (const core::Error& e) {
    if (device == Device::kCuda) throw;
    std::fprintf(stderr, "note: running on the CPU: %s\n", e.what());
  }
}

DeviceEmbedder::DeviceEmbedder(PrefillModel& cpu, BatchFn gpu, std::string gpu_name,
                               BatchFn gpu_log_probs, MapsBatchFn gpu_maps,
                               RecordingForward gpu_record)
    : cpu_(cpu),
      gpu_(std::move(gpu)),
      gpu_maps_(std::move(gpu_maps)),
      gpu_record_(std::move(gpu_record)),
      gpu_log_probs_(std::move(gpu_log_probs)),
      where_(std::move(gpu_name)) {}

DeviceEmbedder::~DeviceEmbedder() = default;

std::vector<float> DeviceEmbedder::embed(const std::vector<std::vector<int32_t>>& batch) {
  last_on_gpu_ = false;
  if (gpu_) {
    try {
      std::vector<float> out = gpu_(batch);
      last_on_gpu_ = true;
      return out;
    } catch (const core::Error& e) {
      leave_gpu(e, batch.size());
    }
  }
  return cpu_.embed(batch);
}

std::vector<float> DeviceEmbedder::embed_recording(const std::vector<std::vector<int32_t>>& batch,
                                                   AttentionHook& hook) {
  last_on_gpu_ = false;
  if (gpu_record_) {
    try {
      std::vector<float> out = gpu_record_(batch, hook);
      last_on_gpu_ = true;
      return out;
    } catch (const core::Error& e) {
      leave_gpu(e, batch.size());
    }
  }
  return cpu_.embed(batch, &hook);
}

std::vector<std::vector<double>> DeviceEmbedder::token_log_probs(
    const std::vector<std::vector<int32_t>>& batch) {
  auto* decoder = dynamic_cast<Decoder*>(&cpu_);
  if (decoder == nullptr) core::throw_bad_input("token log-probabilities need a decoder");
  last_on_gpu_ = false;
  if (gpu_log_probs_) {
    try {
      const std::vector<float> flat = gpu_log_probs_(batch);
      size_t total = 0;
      for (const auto& ids : batch) total += ids.size();
      if (flat.size() != total) {
        core::throw_internal("the GPU returned ", flat.size(), " log-probabilities for ", total,
                             " tokens");
      }
      // Row i of a sequence holds log p(ids[i + 1] | …); its last row (0) is not a prediction.
      std::vector<std::vector<double>> out;
      out.reserve(batch.size());
      size_t row = 0;
      for (const auto& ids : batch) {
        out.emplace_back(flat.begin() + row,
                         flat.begin() + row + (ids.empty() ? 0 : ids.size() - 1));
        row += ids.size();
      }
      last_on_gpu_ = true;
      return out;
    } catch (const core::Error& e) {
      leave_gpu(e, batch.size());
    }
  }
  return decoder->token_log_probs(batch);
}

bool cpu_takes_over(const core::Error& e, size_t inputs, const std::string& what) {
  const std::string in = what.empty() ? "" : " in " + what;
  if (e.kind() != core::ErrorKind::kInternal) {  // refused as bad input: this batch only
    std::fprintf(stderr,
                 "note: the GPU refused a batch of %zu input%s%s (%s); it runs on the CPU\n",
                 inputs, inputs == 1 ? "" : "s", in.c_str(), e.what());
    return false;
  }
  std::fprintf(stderr, "warning: the GPU failed%s (%s); this batch and the rest run on the CPU\n",
               in.c_str(), e.what());
  return true;
}

void DeviceEmbedder::leave_gpu(const core::Error& e, size_t inputs) {
  if (cpu_takes_over(e, inputs)) drop_gpu();
}

void DeviceEmbedder::drop_gpu() {
  gpu_ = nullptr;
  gpu_maps_ = nullptr;
  gpu_record_ = nullptr;
  gpu_log_probs_ = nullptr;
  gpu_model_.reset();
  where_ = "cpu";
}

std::vector<float> DeviceEmbedder::embed_with_maps(const std::vector<std::vector<int32_t>>& batch,
                                                   const DeviceMapPlan* plan) {
  if (!gpu_maps_) core::throw_bad_input("stored maps in GPU memory need the model on a GPU");
  try {
    return gpu_maps_(batch, plan);
  } catch (const core::Error& e) {
    if (e.kind() == core::ErrorKind::kInternal) drop_gpu();
    throw;
  }
}

}  // namespace attncache
