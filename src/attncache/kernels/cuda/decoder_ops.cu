#include <cuda_bf16.h>

#include "attncache/kernels/cuda/check.h"
#include "attncache/kernels/cuda/decoder_ops.h"

namespace attncache::cuda {
namespace {

constexpr int kThreadsPerRow = 256;

__device__ __forceinline__ float block_sum(float v) {
  __shared__ float partial[kThreadsPerRow / 32];
#pragma unroll
  for (int m = 16; m > 0; m /= 2) v += __shfl_xor_sync(0xffffffffu, v, m);
  if (threadIdx.x % 32 == 0) partial[threadIdx.x / 32] = v;
  __syncthreads();
  float total = 0.0f;
#pragma unroll
  for (int w = 0; w < kThreadsPerRow / 32; ++w) total += partial[w];
  return total;
}

// Running (maximum, Σ exp(x − maximum)) pairs merged; −∞ maxima hold no values yet.
__device__ __forceinline__ void merge_exp_sums(float& m, float& s, float m2, float s2) {
  if (m2 == -INFINITY) return;
  if (m == -INFINITY) {
    m = m2;
    s = s2;
    return;
  }
  const float top = fmaxf(m, m2);
  s = s * expf(m - top) + s2 * expf(m2 - top);
  m = top;
}

__global__ void __launch_bounds__(kThreadsPerRow)
    token_log_probs_kernel(const float* logits, int vocab, const int* targets, float* out) {
  const int r = blockIdx.x;
  const int target = targets[r];
  if (target < 0) {
    if (threadIdx.x == 0) out[r] = 0.0f;
    return;
  }
  const float* row = logits + static_cast<size_t>(r) * vocab;
  float m = -INFINITY, s = 0.0f;
  for (int j = threadIdx.x; j < vocab; j += kThreadsPerRow) merge_exp_sums(m, s, row[j], 1.0f);
#pragma unroll
  for (int k = 16; k > 0; k /= 2) {
    const float m2 = __shfl_xor_sync(0xffffffffu, m, k), s2 = __shfl_xor_sync(0xffffffffu, s, k);
    merge_exp_sums(m, s, m2, s2);
  }
  __shared__ float warp_m[kThreadsPerRow / 32], warp_s[kThreadsPerRow / 32];
  if (threadIdx.x % 32 == 0) {
    warp_m[threadIdx.x / 32] = m;
    warp_s[threadIdx.x / 32] = s;
  }
  __syncthreads();
  if (threadIdx.x != 0) return;
  for (int w = 1; w < kThreadsPerRow / 32; ++w) merge_exp_sums(m, s, warp_m[w], warp_s[w]);
  out[r] = row[target] - (m + logf(s));
}

__global__ void embed_rows_kernel(const int* ids, const __nv_bfloat162* table, __nv_bfloat162* out,
                                  int half_d) {
  const int r = blockIdx.x;
  const __nv_bfloat162* src = table + static_cast<size_t>(ids[r]) * half_d;
  __nv_bfloat162* dst = out + static_cast<size_t>(r) * half_d;
  for (int c = threadIdx.x; c < half_d; c += blockDim.x) dst[c] = src[c];
}

__global__ void __launch_bounds__(kThreadsPerRow)
    rmsnorm_kernel(const __nv_bfloat162* x, const int* row_index, const float2* weight, float eps,
                   __nv_bfloat162* out, float2* out_f32, int half_d) {
  const int r = blockIdx.x;
  const int src = row_index != nullptr ? row_index[r] : r;
  const __nv_bfloat162* xr = x + static_cast<size_t>(src) * half_d;
  float sq = 0.0f;
  for (int c = threadIdx.x; c < half_d; c += kThreadsPerRow) {
    const float2 v = __bfloat1622float2(xr[c]);
    sq += v.x * v.x + v.y * v.y;
  }
  const float scale = rsqrtf(block_sum(sq) / (2 * half_d) + eps);
  for (int c = threadIdx.x; c < half_d; c += kThreadsPerRow) {
    const float2 v = __bfloat1622float2(xr[c]);
    const float2 w = weight[c];
    const float2 y{v.x * scale * w.x, v.y * scale * w.y};
    out[static_cast<size_t>(r) * half_d + c] = __floats2bfloat162_rn(y.x, y.y);
    if (out_f32 != nullptr) out_f32[static_cast<size_t>(r) * half_d + c] = y;
  }
}

// One block per row; threads over (head, pair).
__global__ void rope_kernel(__nv_bfloat16* qkv, int ld, const int* positions, const float* cos,
                            const float* sin, int heads, int head_dim, int pairs, bool neox) {
  const int r = blockIdx.x;
  __nv_bfloat16* row = qkv + static_cast<size_t>(r) * ld;
  const float* c = cos + static_cast<size_t>(positions[r]) * pairs;
  const float* s = sin + static_cast<size_t>(positions[r]) * pairs;
  const int stride = neox ? 1 : 2, partner = neox ? pairs : 1;
  for (int i = threadIdx.x; i < heads * pairs; i += blockDim.x) {
    const int h = i / pairs, p = i % pairs;
    __nv_bfloat16* a = row + h * head_dim + p * stride;
    const float x0 = __bfloat162float(a[0]), x1 = __bfloat162float(a[partner]);
    a[0] = __float2bfloat16_rn(x0 * c[p] - x1 * s[p]);
    a[partner] = __float2bfloat16_rn(x0 * s[p] + x1 * c[p]);
  }
}

__global__ void silu_mul_kernel(const __nv_bfloat162* gate_up, __nv_bfloat162* out, int half_ff,
                                size_t count) {
  const size_t i = blockIdx.x * static_cast<size_t>(blockDim.x) + threadIdx.x;
  if (i >= count) return;
  const size_t r = i / half_ff, j = i % half_ff;
  const float2 g = __bfloat1622float2(gate_up[r * 2 * half_ff + j]);
  const float2 u = __bfloat1622float2(gate_up[r * 2 * half_ff + half_ff + j]);
  out[i] =
      __floats2bfloat162_rn(g.x / (1.0f + __expf(-g.x)) * u.x, g.y / (1.0f + __expf(-g.y)) * u.y);
}

}  // namespace

void embed_rows(const int* ids, const void* table_bf16, void* out_bf16, int rows, int d,
                cudaStream_t stream) {
  if (rows == 0) return;
  embed_rows_kernel<<<rows, 128, 0, stream>>>(ids, static_cast<const __nv_bfloat162*>(table_bf16),
                                              static_cast<__nv_bfloat162*>(out_bf16), d / 2);
  check_launch("embed_rows");
}

void rmsnorm(const void* x_bf16, const int* row_index, const float* weight, float eps,
             void* out_bf16, float* out_f32, int rows, int d, cudaStream_t stream) {
  if (rows == 0) return;
  rmsnorm_kernel<<<rows, kThreadsPerRow, 0, stream>>>(
      static_cast<const __nv_bfloat162*>(x_bf16), row_index,
      reinterpret_cast<const float2*>(weight), eps, static_cast<__nv_bfloat162*>(out_bf16),
      reinterpret_cast<float2*>(out_f32), d / 2);
  check_launch("rmsnorm");
}

void rope(void* qkv_bf16, int ld, const int* positions, const float* cos, const float* sin,
          int rows, int q_heads, int kv_heads, int head_dim, int pairs, bool neox,
          cudaStream_t stream) {
  if (rows == 0) return;
  // Query and key heads are contiguous in a row: one pass rotates both.
  rope_kernel<<<rows, 256, 0, stream>>>(static_cast<__nv_bfloat16*>(qkv_bf16), ld, positions, cos,
                                        sin, q_heads + kv_heads, head_dim, pairs, neox);
  check_launch("rope");
}

void silu_mul(const void* gate_up_bf16, void* out_bf16, int rows, int ff, cudaStream_t stream) {
  const size_t count = static_cast<size_t>(rows) * ff / 2;
  if (count == 0) return;
  const int threads = 256;
  silu_mul_kernel<<<static_cast<unsigned>((count + threads - 1) / threads), threads, 0, stream>>>(
      static_cast<const __nv_bfloat162*>(gate_up_bf16), static_cast<__nv_bfloat162*>(out_bf16),
      ff / 2, count);
  check_launch("silu_mul");
}

void token_log_probs(const float* logits, int rows, int vocab, const int* targets, float* out,
                     cudaStream_t stream) {
  if (rows == 0) return;
  token_log_probs_kernel<<<rows, kThreadsPerRow, 0, stream>>>(logits, vocab, targets, out);
  check_launch("token_log_probs");
}

}  // namespace attncache::cuda
