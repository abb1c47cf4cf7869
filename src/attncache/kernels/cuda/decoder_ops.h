// Element-wise and reduction passes of a GPU Llama-family decoder around its GEMMs: token
// embedding lookup, RMSNorm, rotary embeddings, SwiGLU, next-token log-probabilities. Activations
// are bf16 (the residual stream too, as PyTorch's bf16 models keep it); reductions and rotations
// compute in fp32.
#pragma once

#include <cuda_runtime.h>

namespace attncache::cuda {

// out[r] = table[ids[r]], bf16 rows of d values.
void embed_rows(const int* ids, const void* table_bf16, void* out_bf16, int rows, int d,
                cudaStream_t stream);

// out[i] = x[src] / rms(x[src]) · weight, src = row_index[i] (or i when row_index is null), as
// bf16 and, unless out_f32 is null, as fp32. d even.
void rmsnorm(const void* x_bf16, const int* row_index, const float* weight, float eps,
             void* out_bf16, float* out_f32, int rows, int d, cudaStream_t stream);

// Rotary embedding in place on the query and key heads of `rows` rows of qkv (ld values apart;
// q_heads query heads, then kv_heads key heads, each head_dim wide): pair i of a head rotates
// by positions[r] · inv_freq[i], its angle's cos and sin read from tables of `pairs` values per
// position. Pairs are (i, i + pairs) (neox, Hugging Face's rotate_half) or (2i, 2i + 1) (GGUF).
void rope(void* qkv_bf16, int ld, const int* positions, const float* cos, const float* sin,
          int rows, int q_heads, int kv_heads, int head_dim, int pairs, bool neox,
          cudaStream_t stream);

// out[r][j] = silu(gate_up[r][j]) · gate_up[r][ff + j], bf16.
void silu_mul(const void* gate_up_bf16, void* out_bf16, int rows, int ff, cudaStream_t stream);

// out[r] = logits[r][targets[r]] − log Σ_j exp(logits[r][j]) (fp32, `vocab` logits a row): the
// log-probability of token targets[r]; 0 where targets[r] < 0 (a sequence's last token).
void token_log_probs(const float* logits, int rows, int vocab, const int* targets, float* out,
                     cudaStream_t stream);

}  // namespace attncache::cuda
