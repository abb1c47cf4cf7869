// Attention maps recorded by a GPU model, handed to an AttentionHook as the CPU engine records
// them: what lets the map database be built on the GPU. Needs no CUDA headers.
#pragma once

#include <cstdint>
#include <functional>
#include <vector>

#include "attncache/model/attention_hook.h"
#include "attncache/model/cuda_model.h"

namespace attncache::cuda_forward {

// Runs `forward` with a plan that records, in device memory, every (layer, sequence) map that
// `hook` asks for (AttentionHook::record), then fills the hook's fp32 buffers from them in the
// CPU engine's layout: H×N×N, or H packed lower triangles when `causal` (the GPU's bf16 P,
// widened). `hook` must not ask for stored maps (the GPU reads them from device memory, not from
// the hook). Device memory for the maps is taken for this call only; too little of it is bad
// input, as the models' own limits are.
std::vector<float> forward_recording(
    const std::vector<std::vector<int32_t>>& batch, int layers, int heads, bool causal,
    AttentionHook& hook, const std::function<std::vector<float>(const DeviceMapPlan&)>& forward);

}  // namespace attncache::cuda_forward
