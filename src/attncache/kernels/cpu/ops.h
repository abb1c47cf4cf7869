// Dense CPU building blocks of the models: GEMM through oneDNN, and the fused element-wise
// passes around each GEMM (bias + GELU; bias + residual + LayerNorm for the encoder; RMSNorm,
// rotary embeddings and SwiGLU for decoders). Row-major fp32.
#pragma once

#include <cstddef>
#include <vector>

namespace attncache::cpu {

// C[m×n] = A[m×k] · W[n×k]ᵀ (+ C if accumulate). W is a PyTorch Linear weight (out × in). Rows
// of C are `ldc` floats apart (0: n).
void linear(const float* a, const float* w, float* c, int m, int n, int k, bool accumulate = false,
            int ldc = 0);

// x[rows×cols] = gelu(x + bias), GELU with the exact erf form (PyTorch's default).
void bias_gelu(float* x, const float* bias, int rows, int cols);

// out[rows×cols] = LayerNorm(x + bias + residual) · gamma + beta. `out` may alias `residual`.
void bias_residual_layernorm(const float* x, const float* bias, const float* residual,
                             const float* gamma, const float* beta, float eps, float* out, int rows,
                             int cols);

// In-place LayerNorm of each row.
void layernorm(float* x, const float* gamma, const float* beta, float eps, int rows, int cols);

// out[r] = x[r] / sqrt(mean(x[r]²) + eps) · gamma, per row (`out` may alias `x`).
void rmsnorm(const float* x, const float* gamma, float eps, float* out, int rows, int cols);

// out[r][c] = silu(gate_up[r][c]) · gate_up[r][ff + c]: the gate and up projections side by side
// in one [rows × 2·ff] GEMM output; out is [rows × ff].
void silu_mul(const float* gate_up, float* out, int rows, int ff);

// Rotary position embedding. Row r of `x` (rows `ld` floats apart) holds `heads` heads of
// `head_dim` values; the first 2·pairs dimensions of each head rotate by angle position ·
// inv_freq[i] per pair i. Pairs are adjacent dimensions (2i, 2i+1) as in llama.cpp's normal mode
// (GGUF Llama weights are permuted for it), or dimensions (i, i + pairs) in NeoX mode (Hugging
// Face's rotate_half). The angles' cosines and sines come from a table made once per forward
// pass and shared by Q, K and every layer.
struct Rope {
  std::vector<float> inv_freq;  // one frequency per pair
  bool neox = false;
  // cos/sin of position · inv_freq for positions [first, first + count): [count × pairs] each.
  void angles(int first, int count, std::vector<float>* cos, std::vector<float>* sin) const;
};
// `cos` and `sin` are the table's rows for x's rows.
void apply_rope(float* x, int ld, int rows, int heads, int head_dim, const Rope& rope,
                const float* cos, const float* sin);

// exp(x) for a vector, accurate to about 2 ulp, written so the compiler vectorizes it.
void exp_inplace(float* x, size_t n);

}  // namespace attncache::cpu
