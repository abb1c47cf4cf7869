#include "attncache/kernels/cpu/attention.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <vector>

#include "attncache/kernels/cpu/ops.h"

namespace attncache::cpu {
namespace {

constexpr int kRowBlock = 8;   // query rows processed together (P·V reuses each V row 8×)
constexpr int kColBlock = 64;  // key columns accumulated in registers for QKᵀ

struct Scratch {
  std::vector<float> kt;      // dh × N, K of one head transposed
  std::vector<float> v;       // N × dh, V of one head packed
  std::vector<float> scores;  // kRowBlock × N
  void reserve(int n, int dh) {
    size_t need = static_cast<size_t>(n) * dh;
    if (kt.size() < need) {
      kt.resize(need);
      v.resize(need);
    }
    if (scores.size() < static_cast<size_t>(kRowBlock) * n) scores.resize(kRowBlock * n);
  }
};

// s[j] = scale · q·k_j for j in [0, n), with kt laid out dh × n.
void query_scores(const float* q, const float* kt, int n, int dh, float scale, float* s) {
  int j0 = 0;
  for (; j0 + kColBlock <= n; j0 += kColBlock) {
    float acc[kColBlock] = {};
    for (int d = 0; d < dh; ++d) {
      const float qd = q[d] * scale;
      const float* krow = kt + static_cast<size_t>(d) * n + j0;
#pragma omp simd
      for (int j = 0; j < kColBlock; ++j) acc[j] += qd * krow[j];
    }
    std::memcpy(s + j0, acc, sizeof acc);
  }
  if (j0 < n) {
    const int rest = n - j0;
    std::fill(s + j0, s + n, 0.0f);
    for (int d = 0; d < dh; ++d) {
      const float qd = q[d] * scale;
      const float* krow = kt + static_cast<size_t>(d) * n + j0;
#pragma omp simd
      for (int j = 0; j < rest; ++j) s[j0 + j] += qd * krow[j];
    }
  }
}

void softmax_row(float* s, int n) {
  float mx = s[0];
  for (int j = 1; j < n; ++j) mx = std::max(mx, s[j]);
#pragma omp simd
  for (int j = 0; j < n; ++j) s[j] -= mx;
  exp_inplace(s, static_cast<size_t>(n));
  float sum = 0.0f;
#pragma omp simd reduction(+ : sum)
  for (int j = 0; j < n; ++j) sum += s[j];
  const float inv = 1.0f / sum;
#pragma omp simd
  for (int j = 0; j < n; ++j) s[j] *= inv;
}

void attend_head(const float* qkv, float* ctx, const AttentionSeq& seq, int h, int num_heads,
                 int dh, Scratch& scratch) {
  const int n = seq.length;
  const int hidden = num_heads * dh;
  const size_t ld_qkv = static_cast<size_t>(3) * hidden;
  const float* base = qkv + static_cast<size_t>(seq.offset) * ld_qkv;
  const bool reuse = seq.stored != nullptr && ((seq.stored_heads >> h) & 1u);
  scratch.reserve(n, dh);
  float* kt = scratch.kt.data();
  float* v = scratch.v.data();
  for (int j = 0; j < n; ++j) {
    const float* row = base + j * ld_qkv;
    if (!reuse) {
      for (int d = 0; d < dh; ++d) kt[static_cast<size_t>(d) * n + j] = row[hidden + h * dh + d];
    }
    std::memcpy(v + static_cast<size_t>(j) * dh, row + 2 * hidden + h * dh, dh * sizeof(float));
  }
  const float scale = 1.0f / std::sqrt(static_cast<float>(dh));
  const size_t head_probs = static_cast<size_t>(h) * n * n;
  for (int i0 = 0; i0 < n; i0 += kRowBlock) {
    const int rows = std::min(kRowBlock, n - i0);
    for (int r = 0; r < rows; ++r) {
      float* s = scratch.scores.data() + static_cast<size_t>(r) * n;
      const size_t row_offset = head_probs + static_cast<size_t>(i0 + r) * n;
      if (reuse) {
        const auto* stored = static_cast<const unsigned char*>(seq.stored) +
                             row_offset * core::dtype_size(seq.stored_dtype);
        core::convert_to_f32(seq.stored_dtype, stored, n, s);
      } else {
        query_scores(base + (i0 + r) * ld_qkv + h * dh, kt, n, dh, scale, s);
        softmax_row(s, n);
      }
      if (seq.record != nullptr) std::memcpy(seq.record + row_offset, s, n * sizeof(float));
    }
    float acc[kRowBlock][128] = {};
    for (int j = 0; j < n; ++j) {
      const float* vrow = v + static_cast<size_t>(j) * dh;
      for (int r = 0; r < rows; ++r) {
        const float p = scratch.scores[static_cast<size_t>(r) * n + j];
#pragma omp simd
        for (int d = 0; d < dh; ++d) acc[r][d] += p * vrow[d];
      }
    }
    for (int r = 0; r < rows; ++r) {
      std::memcpy(ctx + static_cast<size_t>(seq.offset + i0 + r) * hidden + h * dh, acc[r],
                  dh * sizeof(float));
    }
  }
}

}  // namespace

void attention(const float* qkv, float* ctx, const AttentionSeq* seqs, int num_seqs, int num_heads,
               int head_dim) {
  const int tasks = num_seqs * num_heads;
#pragma omp parallel
  {
    Scratch scratch;
#pragma omp for schedule(dynamic, 1)
    for (int t = 0; t < tasks; ++t) {
      attend_head(qkv, ctx, seqs[t / num_heads], t % num_heads, num_heads, head_dim, scratch);
    }
  }
}

}  // namespace attncache::cpu
