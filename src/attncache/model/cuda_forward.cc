#include "attncache/model/cuda_forward.h"

#include <algorithm>
#include <cstring>

#include "attncache/kernels/cuda/check.h"
#include "attncache/kernels/cuda/runtime.h"
#include "core/dtype.h"
#include "core/error.h"

namespace attncache::cuda_forward {

constexpr size_t kAlign = 256;
// The CUDA context, cuBLASLt's own allocations and the kernels' code: kept free at creation.
constexpr size_t kHeadroom = 256 * kMiB;

std::string open_device(int device) {
  const int devices = cuda::device_count();
  if (devices == 0) {
    core::throw_bad_input(
        "no CUDA device is available (no GPU, no driver, or CUDA_VISIBLE_DEVICES hides them); "
        "use the CPU engine");
  }
  if (device < 0 || device >= devices) {
    core::throw_bad_input("CUDA device ", device, " does not exist (", devices, " device",
                          devices == 1 ? "" : "s", " visible)");
  }
  cuda::check(cudaSetDevice(device), "cudaSetDevice");
  return cuda::describe_device(device);
}

void check_fits(int device, const std::string& device_name, size_t limit, size_t weights,
                size_t activations, size_t tokens, const std::string& who) {
  size_t free_bytes = 0, total_bytes = 0;
  cuda::memory_info(device, &free_bytes, &total_bytes);
  const bool limited = limit != 0 && limit < free_bytes;
  const size_t available = limited ? limit : (free_bytes > kHeadroom ? free_bytes - kHeadroom : 0);
  const size_t need = weights + activations + kGemmWorkspace;
  if (need > available) {
    core::throw_bad_input(
        "too little GPU memory on ", device_name, ": ", who, " needs ", need / kMiB,
        " MiB (weights ", weights / kMiB, " MiB, activations for ", tokens, " tokens ",
        activations / kMiB, " MiB, GEMM workspace ", kGemmWorkspace / kMiB, " MiB) but ",
        available / kMiB, " MiB are available",
        limited ? " under the memory limit" : " after a reserve for the CUDA context",
        "; lower max_batch_tokens or free the device");
  }
}

void check_batch(const std::vector<std::vector<int32_t>>& batch, int max_tokens, int vocab,
                 const char* limit_words) {
  for (size_t s = 0; s < batch.size(); ++s) {
    const size_t n = batch[s].size();
    if (n == 0) core::throw_bad_input("sequence ", s, " of the batch is empty");
    if (n > static_cast<size_t>(max_tokens)) {
      core::throw_bad_input("sequence ", s, " has ", n, " tokens; ", limit_words, max_tokens);
    }
    for (int32_t id : batch[s]) {
      if (id < 0 || id >= vocab) {
        core::throw_bad_input("token id ", id, " is outside the vocabulary (", vocab, ")");
      }
    }
  }
}

void check_map_plan(const DeviceMapPlan& plan, int layers, int nseq, bool causal) {
  if (plan.slots.size() != static_cast<size_t>(layers) * nseq) {
    core::throw_bad_input("a device map plan for ", nseq, " sequences and ", layers,
                          " layers needs ", layers * nseq, " slots, not ", plan.slots.size());
  }
  for (const auto& slot : plan.slots) {
    if (slot.stored == nullptr) continue;
    if (reinterpret_cast<uintptr_t>(slot.stored) % 16 != 0) {
      core::throw_bad_input("stored attention maps must be 16-byte aligned on the device");
    }
    if (slot.dtype != core::DType::kBF16 && slot.dtype != core::DType::kP8 &&
        slot.dtype != core::DType::kFP8 && !(causal && slot.dtype == core::DType::kP4)) {
      core::throw_bad_input("the GPU ", causal ? "decoder" : "encoder",
                            " reuses BF16, P8 or FP8 maps", causal ? " (or P4)" : "", ", not ",
                            core::dtype_name(slot.dtype));
    }
  }
}

LayerReuse layer_reuse(const std::vector<DeviceMapPlan::Slot>* slots, int layer, int nseq,
                       uint64_t all_heads, std::vector<char>* v_only) {
  LayerReuse r;
  v_only->assign(nseq, 0);
  if (slots == nullptr) return r;
  r.any_exact = false;
  for (int s = 0; s < nseq; ++s) {
    const auto& slot = (*slots)[static_cast<size_t>(layer) * nseq + s];
    (*v_only)[s] = slot.stored != nullptr && (slot.heads & all_heads) == all_heads;
    r.any_exact |= !(*v_only)[s];
    const bool reused = slot.stored != nullptr && (slot.heads & all_heads) != 0;
    if (reused) r.format[static_cast<int>(map_format(slot.dtype))] = true;
    r.any_record |= slot.record != nullptr;
  }
  return r;
}

void attention_reuse(const cuda::AttentionArgs& args, const LayerReuse& reuse,
                     cudaStream_t stream) {
  for (int f = 0; f < cuda::kMapFormats; ++f) {
    if (reuse.format[f]) cuda::attention_reuse(args, static_cast<cuda::MapFormat>(f), stream);
  }
}

// Not zero-initialized: every byte is written once (tensors converted in parallel, gaps zeroed).
WeightImage::WeightImage(size_t size) : data_(new uint8_t[size]), capacity_(size) {}

size_t WeightImage::place(size_t bytes) {
  const size_t off = align_up(size_, kAlign);
  if (data_ != nullptr) {
    if (off + bytes > capacity_) {
      core::throw_internal("weight image: ", off + bytes, " bytes laid out in ", capacity_,
                           " measured (the two passes differ)");
    }
    std::memset(data_.get() + size_, 0, off - size_);
  }
  size_ = off + bytes;
  return off;
}

size_t WeightImage::add_f32(const std::vector<float>& v) {
  const size_t off = place(v.size() * sizeof(float));
  if (data_ != nullptr) {
    core::convert_from_f32(core::DType::kF32, v.data(), v.size(), data_.get() + off);
  }
  return off;
}

size_t WeightImage::add_bf16(const float* v, size_t count) {
  const size_t off = place(count * sizeof(uint16_t));
  if (data_ != nullptr) core::convert_from_f32(core::DType::kBF16, v, count, data_.get() + off);
  return off;
}

bool PinnedBuffer::reserve(size_t bytes, const char* what) {
  if (bytes <= buffer_.size()) return false;
  const size_t size = std::max(bytes, 2 * buffer_.size());
  buffer_ = {};
  buffer_ = cuda::PinnedHostBuffer(size, what);
  return true;
}

void GraphCache::clear() {
  for (auto& [key, graph] : graphs_) cudaGraphExecDestroy(graph.exec);
  graphs_.clear();
  seen_.clear();
}

bool GraphCache::replay(const std::vector<int64_t>& key, cudaStream_t stream,
                        const std::function<void()>& enqueue) {
  auto it = graphs_.find(key);
  if (it == graphs_.end()) {
    if (seen_.size() >= kMaxSeen) seen_.clear();
    if (++seen_[key] < 2) return false;
    if (graphs_.size() >= kMaxGraphs) {
      auto oldest = std::min_element(
          graphs_.begin(), graphs_.end(),
          [](const auto& a, const auto& b) { return a.second.last_used < b.second.last_used; });
      cudaGraphExecDestroy(oldest->second.exec);
      graphs_.erase(oldest);
    }
    cudaGraph_t graph = nullptr;
    cuda::check(cudaStreamBeginCapture(stream, cudaStreamCaptureModeThreadLocal),
                "cudaStreamBeginCapture");
    try {
      enqueue();
    } catch (...) {
      cudaStreamEndCapture(stream, &graph);
      if (graph != nullptr) cudaGraphDestroy(graph);
      throw;
    }
    cuda::check(cudaStreamEndCapture(stream, &graph), "cudaStreamEndCapture");
    cudaGraphExec_t exec = nullptr;
    const cudaError_t status = cudaGraphInstantiate(&exec, graph, 0);
    cudaGraphDestroy(graph);
    cuda::check(status, "cudaGraphInstantiate");
    seen_.erase(key);
    it = graphs_.emplace(key, Graph{exec, 0}).first;
  }
  it->second.last_used = ++clock_;
  cuda::check(cudaGraphLaunch(it->second.exec, stream), "cudaGraphLaunch");
  return true;
}

PhaseTimer::~PhaseTimer() {
  for (cudaEvent_t e : events_) cudaEventDestroy(e);
}

void PhaseTimer::mark(Phase next, cudaStream_t stream) {
  if (!on_) return;
  if (marks_ == events_.size()) {
    cudaEvent_t e = nullptr;
    cuda::check(cudaEventCreate(&e), "cudaEventCreate");
    events_.push_back(e);
    phases_.push_back(kOther);
  }
  cuda::check(cudaEventRecord(events_[marks_], stream), "cudaEventRecord");
  phases_[marks_] = next;
  ++marks_;
}

void PhaseTimer::collect(CudaProfile* totals) {
  for (size_t i = 0; i + 1 < marks_; ++i) {
    float ms = 0;
    cuda::check(cudaEventElapsedTime(&ms, events_[i], events_[i + 1]), "cudaEventElapsedTime");
    switch (phases_[i]) {
      case kQkv:
        totals->qkv_ms += ms;
        break;
      case kAttention:
        totals->attention_ms += ms;
        break;
      case kGemm:
        totals->gemm_ms += ms;
        break;
      case kOther:
        totals->other_ms += ms;
        break;
    }
  }
  ++totals->calls;
}

}  // namespace attncache::cuda_forward
