#include "attncache/kernels/cpu/ops.h"

#include <dnnl.h>
#include <omp.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>

#include "core/error.h"

namespace attncache::cpu {
namespace {

// Cody–Waite range reduction x = n·ln2 + r, |r| ≤ ln2/2, then a degree-6 polynomial for e^r
// (the Cephes expf coefficients) and 2^n built in the exponent bits.
inline float exp_approx(float x) {
  x = x < -87.3f ? -87.3f : (x > 88.0f ? 88.0f : x);
  float n = std::nearbyint(x * 1.44269504088896341f);
  float r = std::fma(n, -0.693359375f, x);
  r = std::fma(n, 2.12194440e-4f, r);
  float p = 1.9875691500e-4f;
  p = std::fma(p, r, 1.3981999507e-3f);
  p = std::fma(p, r, 8.3334519073e-3f);
  p = std::fma(p, r, 4.1665795894e-2f);
  p = std::fma(p, r, 1.6666665459e-1f);
  p = std::fma(p, r, 5.0000001201e-1f);
  p = std::fma(p * r, r, r) + 1.0f;
  int32_t bits = (static_cast<int32_t>(n) + 127) << 23;
  float scale;
  std::memcpy(&scale, &bits, sizeof scale);
  return p * scale;
}

// erf by Abramowitz & Stegun 7.1.26 refined: |error| < 1.5e-7, enough for fp32 GELU.
inline float erf_approx(float x) {
  float ax = std::fabs(x);
  float t = 1.0f / std::fma(0.3275911f, ax, 1.0f);
  float poly = 1.061405429f;
  poly = std::fma(poly, t, -1.453152027f);
  poly = std::fma(poly, t, 1.421413741f);
  poly = std::fma(poly, t, -0.284496736f);
  poly = std::fma(poly, t, 0.254829592f);
  float y = 1.0f - poly * t * exp_approx(-ax * ax);
  return std::copysign(y, x);
}

}  // namespace

namespace {

void sgemm(const float* a, const float* w, float* c, int m, int n, int k, int ldc,
           bool accumulate) {
  dnnl_status_t status =
      dnnl_sgemm('N', 'T', m, n, k, 1.0f, a, k, w, k, accumulate ? 1.0f : 0.0f, c, ldc);
  if (status != dnnl_success) core::throw_internal("oneDNN sgemm failed with status ", status);
}

}  // namespace

void linear(const float* a, const float* w, float* c, int m, int n, int k, bool accumulate,
            int ldc) {
  if (m == 0) return;
  if (ldc == 0) ldc = n;
  // oneDNN splits small-m products poorly across threads (measured: m = 32 runs slower on two
  // threads than on one), so below this size each thread takes a slice of the output columns
  // and runs a single-threaded GEMM on it.
  constexpr int kSmallM = 256;
  const int threads = omp_get_max_threads();
  if (m >= kSmallM || threads == 1 || n < 64 * threads) {
    sgemm(a, w, c, m, n, k, ldc, accumulate);
    return;
  }
  const int slice = (n / threads + 15) / 16 * 16;
#pragma omp parallel for num_threads(threads) schedule(static, 1)
  for (int t = 0; t < threads; ++t) {
    const int begin = t * slice;
    const int end = std::min(n, begin + slice);
    if (begin < end) {
      sgemm(a, w + static_cast<size_t>(begin) * k, c + begin, m, end - begin, k, ldc, accumulate);
    }
  }
}

void bias_gelu(float* x, const float* bias, int rows, int cols) {
#pragma omp parallel for schedule(static)
  for (int r = 0; r < rows; ++r) {
    float* row = x + static_cast<size_t>(r) * cols;
#pragma omp simd
    for (int c = 0; c < cols; ++c) {
      float v = row[c] + bias[c];
      row[c] = 0.5f * v * (1.0f + erf_approx(v * 0.70710678118654752f));
    }
  }
}

namespace {

inline void normalize_row(float* row, const float* gamma, const float* beta, float eps, int cols) {
  float sum = 0.0f;
#pragma omp simd reduction(+ : sum)
  for (int c = 0; c < cols; ++c) sum += row[c];
  float mean = sum / cols;
  float var = 0.0f;
#pragma omp simd reduction(+ : var)
  for (int c = 0; c < cols; ++c) {
    float d = row[c] - mean;
    var += d * d;
  }
  float inv = 1.0f / std::sqrt(var / cols + eps);
#pragma omp simd
  for (int c = 0; c < cols; ++c) row[c] = (row[c] - mean) * inv * gamma[c] + beta[c];
}

}  // namespace

void bias_residual_layernorm(const float* x, const float* bias, const float* residual,
                             const float* gamma, const float* beta, float eps, float* out, int rows,
                             int cols) {
#pragma omp parallel for schedule(static)
  for (int r = 0; r < rows; ++r) {
    const size_t offset = static_cast<size_t>(r) * cols;
    float* row = out + offset;
#pragma omp simd
    for (int c = 0; c < cols; ++c) row[c] = x[offset + c] + bias[c] + residual[offset + c];
    normalize_row(row, gamma, beta, eps, cols);
  }
}

void layernorm(float* x, const float* gamma, const float* beta, float eps, int rows, int cols) {
#pragma omp parallel for schedule(static)
  for (int r = 0; r < rows; ++r)
    normalize_row(x + static_cast<size_t>(r) * cols, gamma, beta, eps, cols);
}

void rmsnorm(const float* x, const float* gamma, float eps, float* out, int rows, int cols) {
#pragma omp parallel for schedule(static)
  for (int r = 0; r < rows; ++r) {
    const float* in = x + static_cast<size_t>(r) * cols;
    float* row = out + static_cast<size_t>(r) * cols;
    float sum = 0.0f;
#pragma omp simd reduction(+ : sum)
    for (int c = 0; c < cols; ++c) sum += in[c] * in[c];
    const float inv = 1.0f / std::sqrt(sum / cols + eps);
#pragma omp simd
    for (int c = 0; c < cols; ++c) row[c] = in[c] * inv * gamma[c];
  }
}

void silu_mul(const float* gate_up, float* out, int rows, int ff) {
#pragma omp parallel for schedule(static)
  for (int r = 0; r < rows; ++r) {
    const float* gate = gate_up + static_cast<size_t>(r) * 2 * ff;
    const float* up = gate + ff;
    float* row = out + static_cast<size_t>(r) * ff;
#pragma omp simd
    for (int c = 0; c < ff; ++c) row[c] = gate[c] / (1.0f + exp_approx(-gate[c])) * up[c];
  }
}

void Rope::angles(int first, int count, std::vector<float>* cos, std::vector<float>* sin) const {
  const size_t pairs = inv_freq.size();
  cos->resize(static_cast<size_t>(count) * pairs);
  sin->resize(cos->size());
  // Angles as fp32 products, the way Hugging Face and llama.cpp form them: at long contexts the
  // product's rounding is visible in the logits, so matching it matters more than precision.
#pragma omp parallel for schedule(static)
  for (int r = 0; r < count; ++r) {
    const auto pos = static_cast<float>(first + r);
    for (size_t i = 0; i < pairs; ++i) {
      const float angle = pos * inv_freq[i];
      (*cos)[r * pairs + i] = std::cos(angle);
      (*sin)[r * pairs + i] = std::sin(angle);
    }
  }
}

void apply_rope(float* x, int ld, int rows, int heads, int head_dim, const Rope& rope,
                const float* cos, const float* sin) {
  const int pairs = static_cast<int>(rope.inv_freq.size());
  const int stride = rope.neox ? 1 : 2;
  const int partner = rope.neox ? pairs : 1;
#pragma omp parallel for schedule(static)
  for (int r = 0; r < rows; ++r) {
    float* row = x + static_cast<size_t>(r) * ld;
    const float* c = cos + static_cast<size_t>(r) * pairs;
    const float* s = sin + static_cast<size_t>(r) * pairs;
    for (int h = 0; h < heads; ++h) {
      float* v = row + static_cast<size_t>(h) * head_dim;
      for (int i = 0; i < pairs; ++i) {
        float* a = v + i * stride;
        const float x0 = a[0], x1 = a[partner];
        a[0] = x0 * c[i] - x1 * s[i];
        a[partner] = x0 * s[i] + x1 * c[i];
      }
    }
  }
}

void exp_inplace(float* x, size_t n) {
#pragma omp simd
  for (size_t i = 0; i < n; ++i) x[i] = exp_approx(x[i]);
}

}  // namespace attncache::cpu
