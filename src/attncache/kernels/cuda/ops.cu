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

// A lane's columns: VPT/4 groups of 4 adjacent values, group i at column 4·lane + 128·i, so every
// load and store is 8 (bf16) or 16 (fp32) bytes. Hidden sizes are multiples of 128.
__device__ __forceinline__ int column(int lane, int group) { return 4 * lane + 128 * group; }

__device__ __forceinline__ void load4(const __nv_bfloat16* p, float* v) {
  const uint2 raw = *reinterpret_cast<const uint2*>(p);
  const float2 a = __bfloat1622float2(*reinterpret_cast<const __nv_bfloat162*>(&raw.x));
  const float2 b = __bfloat1622float2(*reinterpret_cast<const __nv_bfloat162*>(&raw.y));
  v[0] = a.x, v[1] = a.y, v[2] = b.x, v[3] = b.y;
}

__device__ __forceinline__ float4 load4(const float* p) {
  return *reinterpret_cast<const float4*>(p);
}

// LayerNorm of the VPT·32 values a warp holds (see column()), written as bf16 and, unless `out`
// is null, fp32. Two passes over registers: mean, then the centred variance.
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
  for (int g = 0; g < VPT / 4; ++g) {
    const int c = column(lane, g);
    const float4 ga = load4(gamma + c), be = load4(beta + c);
    const float4 y = {v[4 * g] * rstd * ga.x + be.x, v[4 * g + 1] * rstd * ga.y + be.y,
                      v[4 * g + 2] * rstd * ga.z + be.z, v[4 * g + 3] * rstd * ga.w + be.w};
    if (out != nullptr) *reinterpret_cast<float4*>(out + c) = y;
    const __nv_bfloat162 lo = __floats2bfloat162_rn(y.x, y.y), hi = __floats2bfloat162_rn(y.z, y.w);
    uint2 raw;
    raw.x = *reinterpret_cast<const uint32_t*>(&lo);
    raw.y = *reinterpret_cast<const uint32_t*>(&hi);
    *reinterpret_cast<uint2*>(out_bf16 + c) = raw;
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
  for (int g = 0; g < VPT / 4; ++g) {
    const int c = column(lane, g);
    const float4 a = load4(w + c), b = load4(p + c), t = load4(type0 + c);
    v[4 * g] = a.x + b.x + t.x, v[4 * g + 1] = a.y + b.y + t.y;
    v[4 * g + 2] = a.z + b.z + t.z, v[4 * g + 3] = a.w + b.w + t.w;
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
  for (int g = 0; g < VPT / 4; ++g) load4(x + base + column(lane, g), v + 4 * g);
  layernorm_store<VPT>(v, gamma, beta, eps, out != nullptr ? out + base : out, out_bf16 + base,
                       lane);
}

__global__ void gelu_kernel(__nv_bfloat16* x, size_t count) {
  const size_t i = blockIdx.x * static_cast<size_t>(blockDim.x) + threadIdx.x;
  if (i >= count) return;
  const float v = __bfloat162float(x[i]);
  x[i] = __float2bfloat16_rn(0.5f * v * (1.0f + erff(v * 0.70710678118654752f)));
}

// Mean pooling in two passes, deterministic (a fixed order of additions, no atomics). Pass 1:
// one CTA per (sequence, chunk of kPoolChunk rows) sums its rows and writes the sum over the
// chunk's first row, in place: pooling reads the last layer's fp32 output and nothing reads it
// after. Pass 2: one CTA per sequence adds the chunk sums, divides, L2-normalizes. A CTA per
// sequence summing all rows serially took 87 µs at 512 tokens (one CTA of the whole GPU, one
// load in flight per thread); these take a few µs.
constexpr int kPoolChunk = 16;

__global__ void pool_chunks_kernel(float* hidden, const int* seq_offset, const int* seq_len, int d,
                                   bool cls) {
  const int b = blockIdx.x, r0 = blockIdx.y * kPoolChunk;
  const int n = cls ? 1 : seq_len[b];
  if (r0 >= n) return;
  const int rows = min(kPoolChunk, n - r0);
  float* first = hidden + static_cast<size_t>(seq_offset[b] + r0) * d;
  for (int c = threadIdx.x; c < d; c += blockDim.x) {
    float v[kPoolChunk];
#pragma unroll
    for (int r = 0; r < kPoolChunk; ++r)
      v[r] = r < rows ? first[static_cast<size_t>(r) * d + c] : 0.0f;
    float s = 0.0f;
#pragma unroll
    for (int r = 0; r < kPoolChunk; ++r) s += v[r];
    first[c] = s;
  }
}

__global__ void pool_kernel(const float* hidden, const int* seq_offset, const int* seq_len, int d,
                            bool cls, bool normalize, float* out) {
  extern __shared__ float pooled[];  // d values
  __shared__ float partial[32];
  const int b = blockIdx.x;
  const int n = cls ? 1 : seq_len[b];
  const float* first = hidden + static_cast<size_t>(seq_offset[b]) * d;
  const size_t chunk_stride = static_cast<size_t>(kPoolChunk) * d;
  float sq = 0.0f;
  for (int c = threadIdx.x; c < d; c += blockDim.x) {
    float s = 0.0f;
#pragma unroll 8
    for (int r0 = 0; r0 < n; r0 += kPoolChunk) s += first[r0 / kPoolChunk * chunk_stride + c];
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

void pool(float* hidden, const int* seq_offset, const int* seq_len, int batch, int max_len, int d,
          bool cls, bool normalize, float* out, cudaStream_t stream) {
  if (batch == 0) return;
  const int chunks = cls ? 1 : (max_len + kPoolChunk - 1) / kPoolChunk;
  pool_chunks_kernel<<<dim3(batch, chunks), 128, 0, stream>>>(hidden, seq_offset, seq_len, d, cls);
  check_launch("pool (chunks)");
  pool_kernel<<<batch, 128, d * sizeof(float), stream>>>(hidden, seq_offset, seq_len, d, cls,
                                                         normalize, out);
  check_launch("pool");
}

}  // namespace attncache::cuda
