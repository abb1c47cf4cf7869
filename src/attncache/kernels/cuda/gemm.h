// Linear layers through cuBLASLt: Y = X · Wᵀ (+ bias, GELU) with X and W bf16, fp32
// accumulation, Y bf16 or fp32. X is [m × k] row-major (tokens), W a PyTorch Linear weight
// [n × k]. A plan (descriptors, layouts, and the fastest of the heuristic's first 8 algorithms,
// timed once on the first call's operands) is made once per shape, leading dimensions, output
// type, epilogue and pointer alignment, then reused; plans hold no
// pointers, so calls are safe to capture in CUDA graphs. A residual enters as cuBLASLt's C
// matrix with beta = 1.
#pragma once

#include <cublasLt.h>
#include <cuda_runtime.h>

#include <map>
#include <memory>
#include <tuple>

#include "attncache/kernels/cuda/runtime.h"

namespace attncache::cuda {

enum class Epilogue { kNone, kBias, kGeluBias };  // cuBLASLt's GELU is the tanh form
enum class OutType { kBF16, kF32 };

class Gemm {
 public:
  explicit Gemm(size_t workspace_bytes = 32u << 20);
  ~Gemm();
  Gemm(const Gemm&) = delete;
  Gemm& operator=(const Gemm&) = delete;

  // y[m × n] (rows ldy elements apart) = x[m × k] (rows ldx apart) · w[n × k]ᵀ (rows ldw apart)
  // (+ bias[n], of the output's type) (+ residual[m × n], laid out as y and of its type; not
  // aliasing y). Throws core::Error when cuBLASLt has no algorithm.
  void linear(const void* x, int ldx, const void* w, int ldw, void* y, int ldy, OutType out, int m,
              int n, int k, Epilogue epilogue, const void* bias, cudaStream_t stream,
              const void* residual = nullptr);

 private:
  struct Plan;
  using Key = std::tuple<int, int, int, int, int, int, int, int, int>;

  cublasLtHandle_t handle_ = nullptr;
  DeviceBuffer workspace_;
  std::map<Key, std::unique_ptr<Plan>> plans_;  // per exact shape, cleared past kMaxPlans
  // The autotuned algorithm per shape with m rounded up to a power of two: batches of varying
  // token counts (every real workload) would otherwise time 8 candidates for every new m.
  std::map<Key, cublasLtMatmulAlgo_t> tuned_;
};

}  // namespace attncache::cuda
