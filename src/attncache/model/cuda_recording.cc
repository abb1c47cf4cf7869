#include "attncache/model/cuda_recording.h"

#include <memory>

#include "attncache/kernels/cuda/attention.h"
#include "attncache/kernels/cuda/runtime.h"
#include "core/dtype.h"
#include "core/error.h"

namespace attncache::cuda_forward {

std::vector<float> forward_recording(
    const std::vector<std::vector<int32_t>>& batch, int layers, int heads, bool causal,
    AttentionHook& hook, const std::function<std::vector<float>(const DeviceMapPlan&)>& forward) {
  const size_t nseq = batch.size();
  // Where each slot's bf16 maps go in one device buffer (16-byte aligned, as the kernels write),
  // and where the hook wants them.
  struct Recorded {
    size_t offset = 0, values = 0;  // values per head on the device
    float* to = nullptr;
  };
  std::vector<Recorded> recorded(static_cast<size_t>(layers) * nseq);
  size_t bytes = 0;
  for (int l = 0; l < layers; ++l) {
    for (size_t s = 0; s < nseq; ++s) {
      const int n = static_cast<int>(batch[s].size()), seq = static_cast<int>(s);
      if (hook.stored(l, seq, n).data != nullptr) {
        core::throw_bad_input("recording on the GPU reads no stored maps from the hook");
      }
      Recorded& r = recorded[l * nseq + s];
      r.to = hook.record(l, seq, n);
      if (r.to == nullptr) continue;
      r.values = causal ? cuda::causal_map_elements(n) : static_cast<size_t>(n) * n;
      r.offset = bytes;
      bytes += (r.values * heads * 2 + 15) / 16 * 16;
    }
  }
  if (bytes == 0) return forward(DeviceMapPlan{});
  cuda::DeviceBuffer maps(bytes, "recorded attention maps");
  DeviceMapPlan plan;
  plan.slots.resize(recorded.size());
  for (size_t i = 0; i < recorded.size(); ++i) {
    if (recorded[i].to != nullptr) plan.slots[i].record = maps.as<char>() + recorded[i].offset;
  }
  std::vector<float> out = forward(plan);

  const auto host = std::make_unique_for_overwrite<uint16_t[]>(bytes / 2);
  maps.download(host.get(), bytes);
  // Unpacked and widened slot by slot on the OpenMP threads.
#pragma omp parallel for schedule(dynamic)
  for (size_t i = 0; i < recorded.size(); ++i) {
    const Recorded& r = recorded[i];
    if (r.to == nullptr) continue;
    const int n = static_cast<int>(batch[i % nseq].size());
    const size_t per_head = cpu::attention_map_size(n, causal);
    std::vector<uint16_t> packed(causal ? per_head : 0);
    for (int h = 0; h < heads; ++h) {
      const uint16_t* from = host.get() + r.offset / 2 + h * r.values;
      if (causal) {
        cuda::causal_map_from_tiles(from, n, 2, packed.data());
        from = packed.data();
      }
      float* to = r.to + h * per_head;
      for (size_t k = 0; k < per_head; ++k) to[k] = core::bf16_to_f32(from[k]);
    }
  }
  return out;
}

}  // namespace attncache::cuda_forward
