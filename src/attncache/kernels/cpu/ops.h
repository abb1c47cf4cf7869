// Dense CPU building blocks of the encoder: GEMM through oneDNN, and the fused element-wise
// passes that follow each GEMM (bias + GELU; bias + residual + LayerNorm). Row-major fp32.
#pragma once

#include <cstddef>

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

// exp(x) for a vector, accurate to about 2 ulp, written so the compiler vectorizes it.
void exp_inplace(float* x, size_t n);

}  // namespace attncache::cpu
