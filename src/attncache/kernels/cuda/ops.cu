#include <cuda_bf16.h>

#include "attncache/kernels/cuda/check.h"
#include "attncache/kernels/cuda/ops.h"

namespace attncache::cuda {
namespace {

constexpr int kRowsPerBlock = 4;  // one warp per row

__device__ __forceinline__ float warp_sum(float v) {
#pragma unroll
  for (int m = 16; m > 0; m /= 2) v += __shfl_xor_sync(0xffffffffu, v, m);
  return v;
}

// LayerNorm of the VPT·32 values a warp holds (lane holds columns lane + 32·i), written as bf16
// and, unless `out` is null, fp32. Two passes over registers: mean, then the centred variance.
template <int VPT>
__device__ __forceinline__ void layernorm_store(float (&v)[VPT], const float* gamma,
                                                const float* beta, float eps, float* out,
                                                __nv_bfloat16* out_bf16, int lane) {
  constexpr int d = VPT * 32;
  float sum = 0.0f;
#pragma unroll
  for (int i = 0; i < VPT; ++i) sum += v[i];
  const float mean = warp_sum(sum) / d;
  float sq = 0.0f;
#pragma unroll
  for (int i = 0; i < VPT; ++i) {
    v[i] -= mean;
    sq += v[i] * v[i];
  }
  const float rstd = rsqrtf(warp_sum(sq) / d + eps);
#pragma unroll
  for (int i = 0; i < VPT; ++i) {
    const int c = lane + 32 * i;
    const float y = v[i] * rstd * gamma[c] + beta[c];
    if (out != nullptr) out[c] = y;
    out_bf16[c] = __float2bfloat16_rn(y);
  }
}

template <int VPT>
__global__ void __launch_bounds__(32 * kRowsPerBlock)
    embed_layernorm_kernel(const int* ids, const int* positions, const float* word,
                           const float* pos, const float* type0, const float* gamma,
                           const float* beta, float eps, float* out, __nv_bfloat16* out_bf16,
                           int rows) {
  constexpr int d = VPT * 32;
  const int row = blockIdx.x * kRowsPerBlock + threadIdx.x / 32;
  if (row >= rows) return;
  const int lane = threadIdx.x % 32;
  const float* w = word + static_cast<size_t>(ids[row]) * d;
  const float* p = pos + static_cast<size_t>(positions[row]) * d;
  float v[VPT];
#pragma unroll
  for (int i = 0; i < VPT; ++i) {
    const int c = lane + 32 * i;
    v[i] = w[c] + p[c] + type0[c];
  }
  layernorm_store<VPT>(v, gamma, beta, eps,
                       out != nullptr ? out + static_cast<size_t>(row) * d : out,
                       out_bf16 + static_cast<size_t>(row) * d, lane);
}

template <int VPT>
__global__ void __launch_bounds__(32 * kRowsPerBlock)
    layernorm_kernel(const __nv_bfloat16* x, const float* gamma, const float* beta, float eps,
                     float* out, __nv_bfloat16* out_bf16, int rows) {
  constexpr int d = VPT * 32;
  const int row = blockIdx.x * kRowsPerBlock + threadIdx.x / 32;
  if (row >= rows) return;
  const int lane = threadIdx.x % 32;
  const size_t base = static_cast<size_t>(row) * d;
  float v[VPT];
#pragma unroll
  for (int i = 0; i < VPT; ++i) v[i] = __bfloat162float(x[base + lane + 32 * i]);
  layernorm_store<VPT>(v, gamma, beta, eps, out != nullptr ? out + base : out, out_bf16 + base,
                       lane);
}

__global__ void gelu_kernel(__nv_bfloat16* x, size_t count) {
  const size_t i = blockIdx.x * static_cast<size_t>(blockDim.x) + threadIdx.x;
  if (i >= count) return;
  const float v = __bfloat162float(x[i]);
  x[i] = __float2bfloat16_rn(0.5f * v * (1.0f + erff(v * 0.70710678118654752f)));
}

__global__ void pool_kernel(const float* hidden, const int* seq_offset, const int* seq_len, int d,
                            bool cls, bool normalize, float* out) {
  extern __shared__ float pooled[];  // d values
  __shared__ float partial[32];
  const int b = blockIdx.x;
  const int off = seq_offset[b], n = cls ? 1 : seq_len[b];
  float sq = 0.0f;
  for (int c = threadIdx.x; c < d; c += blockDim.x) {
    float s = 0.0f;
    for (int r = 0; r < n; ++r) s += hidden[static_cast<size_t>(off + r) * d + c];
    s /= static_cast<float>(n);
    pooled[c] = s;
    sq += s * s;
  }
  float scale = 1.0f;
  if (normalize) {
    sq = warp_sum(sq);
    if (threadIdx.x % 32 == 0) partial[threadIdx.x / 32] = sq;
    __syncthreads();
    if (threadIdx.x < 32) {
      float v = threadIdx.x < blockDim.x / 32 ? partial[threadIdx.x] : 0.0f;
      v = warp_sum(v);
      if (threadIdx.x == 0) partial[0] = v;
    }
    __syncthreads();
    scale = 1.0f / fmaxf(sqrtf(partial[0]), 1e-12f);
  }
  for (int c = threadIdx.x; c < d; c += blockDim.x) {
    out[static_cast<size_t>(b) * d + c] = pooled[c] * scale;
  }
}

template <template <int> class Launch, typename... Args>
void dispatch_vpt(int d, Args&&... args) {
  switch (d / 32) {
    case 4:
      return Launch<4>::run(args...);
    case 8:
      return Launch<8>::run(args...);
    case 12:
      return Launch<12>::run(args...);
    case 16:
      return Launch<16>::run(args...);
    case 24:
      return Launch<24>::run(args...);
    case 32:
      return Launch<32>::run(args...);
    default:
      core::throw_internal("LayerNorm kernels do not support hidden size ", d);
  }
}

template <int VPT>
struct EmbedLaunch {
  static void run(const int* ids, const int* positions, const float* word, const float* pos,
                  const float* type0, const float* gamma, const float* beta, float eps,
                  void* out_bf16, float* out, int rows, cudaStream_t stream) {
    const int blocks = (rows + kRowsPerBlock - 1) / kRowsPerBlock;
    embed_layernorm_kernel<VPT><<<blocks, 32 * kRowsPerBlock, 0, stream>>>(
        ids, positions, word, pos, type0, gamma, beta, eps, out,
        static_cast<__nv_bfloat16*>(out_bf16), rows);
    check_launch("embed_layernorm");
  }
};

template <int VPT>
struct LayerNormLaunch {
  static void run(const void* x, const float* gamma, const float* beta, float eps, void* out_bf16,
                  float* out, int rows, cudaStream_t stream) {
    const int blocks = (rows + kRowsPerBlock - 1) / kRowsPerBlock;
    layernorm_kernel<VPT><<<blocks, 32 * kRowsPerBlock, 0, stream>>>(
        static_cast<const __nv_bfloat16*>(x), gamma, beta, eps, out,
        static_cast<__nv_bfloat16*>(out_bf16), rows);
    check_launch("layernorm");
  }
};

}  // namespace

bool layernorm_supports(int d) {
  switch (d) {
    case 128:
    case 256:
    case 384:
    case 512:
    case 768:
    case 1024:
      return true;
    default:
      return false;
  }
}

void embed_layernorm(const int* ids, const int* positions, const float* word, const float* pos,
                     const float* type0, const float* gamma, const float* beta, float eps,
                     void* out_bf16, float* out_f32, int rows, int d, cudaStream_t stream) {
  if (rows == 0) return;
  dispatch_vpt<EmbedLaunch>(d, ids, positions, word, pos, type0, gamma, beta, eps, out_bf16,
                            out_f32, rows, stream);
}

void layernorm(const void* x, const float* gamma, const float* beta, float eps, void* out_bf16,
               float* out_f32, int rows, int d, cudaStream_t stream) {
  if (rows == 0) return;
  dispatch_vpt<LayerNormLaunch>(d, x, gamma, beta, eps, out_bf16, out_f32, rows, stream);
}

void gelu_bf16(void* x, size_t count, cudaStream_t stream) {
  if (count == 0) return;
  const int threads = 256;
  gelu_kernel<<<static_cast<unsigned>((count + threads - 1) / threads), threads, 0, stream>>>(
      static_cast<__nv_bfloat16*>(x), count);
  check_launch("gelu_bf16");
}

void pool(const float* hidden, const int* seq_offset, const int* seq_len, int batch, int d,
          bool cls, bool normalize, float* out, cudaStream_t stream) {
  if (batch == 0) return;
  pool_kernel<<<batch, 128, d * sizeof(float), stream>>>(hidden, seq_offset, seq_len, d, cls,
                                                         normalize, out);
  check_launch("pool");
}

}  // namespace attncache::cuda
