// Element-wise and reduction passes of the GPU encoder around its GEMMs: embeddings + LayerNorm,
// LayerNorm, exact GELU, pooling + L2 normalization. The residual stream is bf16 (bias and
// residual are added in the GEMM epilogues); LayerNorms compute in fp32 and can also write an
// fp32 copy (the last layer's, which pooling reads).
#pragma once

#include <cuda_runtime.h>

namespace attncache::cuda {

// Hidden sizes the LayerNorm kernels are built for (multiples of 128 up to 1024).
bool layernorm_supports(int d);

// out[r] = LayerNorm(word[ids[r]] + pos[positions[r]] + type0) · gamma + beta, as bf16 (and as
// fp32 into out_f32 unless it is null).
void embed_layernorm(const int* ids, const int* positions, const float* word, const float* pos,
                     const float* type0, const float* gamma, const float* beta, float eps,
                     void* out_bf16, float* out_f32, int rows, int d, cudaStream_t stream);

// out[r] = LayerNorm(x[r]) · gamma + beta for bf16 rows, as bf16 (and fp32 unless null). `out`
// may alias `x`.
void layernorm(const void* x, const float* gamma, const float* beta, float eps, void* out_bf16,
               float* out_f32, int rows, int d, cudaStream_t stream);

// x = gelu(x) in place on bf16 [count], GELU with the exact erf form.
void gelu_bf16(void* x, size_t count, cudaStream_t stream);

// out[b] = mean of rows seq_offset[b] .. + seq_len[b] of hidden (or the first row when `cls`),
// L2-normalized when `normalize` (eps 1e-12, as torch's F.normalize). `max_len`: the longest
// seq_len. Overwrites rows of `hidden` with partial sums.
void pool(float* hidden, const int* seq_offset, const int* seq_len, int batch, int max_len, int d,
          bool cls, bool normalize, float* out, cudaStream_t stream);

}  // namespace attncache::cuda
