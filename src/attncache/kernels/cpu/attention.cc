#include "attncache/kernels/cpu/attention.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <vector>

#include "attncache/kernels/cpu/ops.h"
#include "attncache/kernels/stored_maps.h"
#include "core/error.h"

namespace attncache::cpu {
namespace {

// 16 floats in one vector register (one zmm with AVX-512, split by the compiler otherwise).
typedef float v16 __attribute__((vector_size(64)));

inline v16 load(const float* p) {
  v16 v;
  std::memcpy(&v, p, sizeof v);
  return v;
}
inline void store(float* p, v16 v) { std::memcpy(p, &v, sizeof v); }
// A load that stays one load: the vector is pinned in a register. Left alone, GCC folds a vector
// used by several FMAs into each of them as a memory operand, so QKᵀ and P·V issued one 64-byte
// load per FMA and ran load-bound at half the FMA rate (perf annotate).
inline v16 load_once(const float* p) {
  v16 v = load(p);
#ifdef __AVX512F__
  asm("" : "+v"(v));
#endif
  return v;
}
inline v16 broadcast(float x) { return v16{x, x, x, x, x, x, x, x, x, x, x, x, x, x, x, x}; }

constexpr int kScoreRows = 4;   // query rows per QKᵀ register tile
constexpr int kScoreCols = 32;  // key columns per QKᵀ register tile (2 vectors)

// Query rows sharing one pass over V in P·V: as many as keep the accumulators in registers.
template <int DH>
constexpr int pv_rows() {
  return std::min(8, 256 / DH);
}

struct Scratch {
  std::vector<float> kt;      // dh × ld: K of one head, transposed, zero-padded columns
  std::vector<float> v;       // n × dh: V of one head, packed
  std::vector<float> scores;  // rows × ld
};

// Row stride of the transposed K and score buffers: the padded length plus one cache line, so
// that rows 2^k floats apart do not all fall into the same L1 sets (with a power-of-two stride,
// 512 tokens ran QKᵀ at a third of the speed).
inline int skewed_stride(int n_pad) { return n_pad + 16; }

// s[r][0, n_pad) = scale · q_r · K for kScoreRows query rows; rows of kt and s are ld apart.
template <int DH>
void score_tile(const float* const* q, const float* kt, int n_pad, int ld, float scale, float* s) {
  float qs[kScoreRows][DH];
  for (int r = 0; r < kScoreRows; ++r) {
    for (int d = 0; d < DH; ++d) qs[r][d] = q[r][d] * scale;
  }
  for (int j0 = 0; j0 < n_pad; j0 += kScoreCols) {
    v16 acc[kScoreRows][2] = {};
    for (int d = 0; d < DH; ++d) {
      const float* krow = kt + static_cast<size_t>(d) * ld + j0;
      const v16 k0 = load_once(krow), k1 = load_once(krow + 16);
      for (int r = 0; r < kScoreRows; ++r) {
        const v16 qd = broadcast(qs[r][d]);
        acc[r][0] += qd * k0;
        acc[r][1] += qd * k1;
      }
    }
    for (int r = 0; r < kScoreRows; ++r) {
      store(s + static_cast<size_t>(r) * ld + j0, acc[r][0]);
      store(s + static_cast<size_t>(r) * ld + j0 + 16, acc[r][1]);
    }
  }
}

// out_r = Σ_j p[r][j] · V[j] for `rows` ≤ pv_rows<DH>() query rows.
template <int DH>
void pv_tile(const float* p, int ld_p, const float* v, int n, int rows, float* const* out) {
  constexpr int R = pv_rows<DH>();
  constexpr int V = DH / 16;
  v16 acc[R][V] = {};
  for (int j = 0; j < n; ++j) {
    v16 vj[V];
    for (int k = 0; k < V; ++k) vj[k] = load_once(v + static_cast<size_t>(j) * DH + 16 * k);
    for (int r = 0; r < R; ++r) {
      const v16 pr = broadcast(p[static_cast<size_t>(r) * ld_p + j]);
      for (int k = 0; k < V; ++k) acc[r][k] += pr * vj[k];
    }
  }
  for (int r = 0; r < rows; ++r) {
    for (int k = 0; k < V; ++k) store(out[r] + 16 * k, acc[r][k]);
  }
}

void softmax_row(float* s, int n) {
  // Vector maximum: a scalar max chain is latency-bound and cost more than the exponentials.
  v16 vmax = broadcast(s[0]);
  int j = 0;
  for (; j + 16 <= n; j += 16) {
    const v16 x = load(s + j);
    vmax = x > vmax ? x : vmax;
  }
  float mx = vmax[0];
  for (int k = 1; k < 16; ++k) mx = std::max(mx, vmax[k]);
  for (; j < n; ++j) mx = std::max(mx, s[j]);
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

template <int DH>
void attend_head(const float* qkv, float* ctx, const AttentionSeq& seq, int h,
                 const AttentionShape& shape, Scratch& scratch) {
  constexpr int R = pv_rows<DH>();
  static_assert(R % kScoreRows == 0 || R < kScoreRows);
  const bool causal = shape.causal;
  const int n = seq.length;
  const int past = seq.past_length;
  const int n_keys = past + n;
  const int n_pad = (n_keys + kScoreCols - 1) / kScoreCols * kScoreCols;
  const int ld = skewed_stride(n_pad);
  const int hidden = shape.num_heads * DH;
  const int kv_hidden = shape.num_kv_heads * DH;
  const int kv_head = h / (shape.num_heads / shape.num_kv_heads);
  const size_t ld_qkv = static_cast<size_t>(hidden) + 2 * kv_hidden;
  const float* base = qkv + static_cast<size_t>(seq.offset) * ld_qkv;
  const bool reuse = seq.stored != nullptr && ((seq.stored_heads >> h) & 1u);
  // Score rows are computed in tiles of kScoreRows, so keep at least that many (zero) rows.
  const int score_rows = std::max(R, kScoreRows);
  // Hit heads never read K: skip zeroing (the padding columns must be zero) and packing it.
  if (!reuse) scratch.kt.assign(static_cast<size_t>(DH) * ld, 0.0f);
  if (scratch.v.size() < static_cast<size_t>(n_keys) * DH) {
    scratch.v.resize(static_cast<size_t>(n_keys) * DH);
  }
  if (scratch.scores.size() < static_cast<size_t>(score_rows) * ld) {
    scratch.scores.resize(static_cast<size_t>(score_rows) * ld);
  }
  float* kt = scratch.kt.data();
  float* v = scratch.v.data();
  float* scores = scratch.scores.data();
  for (int j = 0; j < n_keys; ++j) {
    const float* k_row;
    const float* v_row;
    if (j < past) {
      k_row = seq.past_k + static_cast<size_t>(j) * kv_hidden + kv_head * DH;
      v_row = seq.past_v + static_cast<size_t>(j) * kv_hidden + kv_head * DH;
    } else {
      const float* row = base + (j - past) * ld_qkv;
      k_row = row + hidden + kv_head * DH;
      v_row = row + hidden + kv_hidden + kv_head * DH;
    }
    if (!reuse) {
      for (int d = 0; d < DH; ++d) kt[static_cast<size_t>(d) * ld + j] = k_row[d];
    }
    std::memcpy(v + static_cast<size_t>(j) * DH, v_row, DH * sizeof(float));
  }
  const float scale = 1.0f / std::sqrt(static_cast<float>(DH));
  const size_t head_probs = static_cast<size_t>(h) * attention_map_size(n, causal);
  // Where row i of this head's map starts, and how many keys row i sees.
  auto map_row = [&](int i) { return head_probs + attention_map_row(n, i, causal); };
  auto visible = [&](int i) { return causal ? past + i + 1 : n_keys; };
  for (int i0 = 0; i0 < n; i0 += R) {
    const int rows = std::min(R, n - i0);
    // Keys the block's rows see between them; the causal rows' later columns are zeroed.
    const int cols = visible(i0 + rows - 1);
    if (reuse) {
      for (int r = 0; r < rows; ++r) {
        const int len = visible(i0 + r);
        float* s = scores + static_cast<size_t>(r) * ld;
        stored_map_row(seq.stored, seq.stored_dtype, n, causal, h, i0 + r, len, s);
        std::fill(s + len, s + cols, 0.0f);
      }
    } else {
      const int cols_pad = (cols + kScoreCols - 1) / kScoreCols * kScoreCols;
      for (int r0 = 0; r0 < rows; r0 += kScoreRows) {
        const float* q[kScoreRows];
        for (int r = 0; r < kScoreRows; ++r) {
          // Rows past the end reuse the last row's query; their scores are never read.
          q[r] = base + std::min(i0 + r0 + r, n - 1) * ld_qkv + h * DH;
        }
        score_tile<DH>(q, kt, cols_pad, ld, scale, scores + static_cast<size_t>(r0) * ld);
      }
      for (int r = 0; r < rows; ++r) {
        const int len = visible(i0 + r);
        float* s = scores + static_cast<size_t>(r) * ld;
        softmax_row(s, len);
        std::fill(s + len, s + cols, 0.0f);
      }
    }
    if (seq.record != nullptr) {
      for (int r = 0; r < rows; ++r) {
        std::memcpy(seq.record + map_row(i0 + r), scores + static_cast<size_t>(r) * ld,
                    visible(i0 + r) * sizeof(float));
      }
    }
    // Rows past `rows` hold stale scores; their outputs are discarded by pv_tile.
    float* out[R];
    for (int r = 0; r < R; ++r) {
      out[r] = ctx + static_cast<size_t>(seq.offset + i0 + std::min(r, rows - 1)) * hidden + h * DH;
    }
    pv_tile<DH>(scores, ld, v, cols, rows, out);
  }
}

template <int DH>
void attention_impl(const float* qkv, float* ctx, const AttentionSeq* seqs, int num_seqs,
                    const AttentionShape& shape) {
  const int heads = shape.num_heads;
  const int tasks = num_seqs * heads;
#pragma omp parallel
  {
    Scratch scratch;
#pragma omp for schedule(dynamic, 1)
    for (int t = 0; t < tasks; ++t) {
      attend_head<DH>(qkv, ctx, seqs[t / heads], t % heads, shape, scratch);
    }
  }
}

}  // namespace

bool attention_supports_head_dim(int head_dim) {
  return head_dim == 16 || head_dim == 32 || head_dim == 64 || head_dim == 128;
}

void attention(const float* qkv, float* ctx, const AttentionSeq* seqs, int num_seqs,
               const AttentionShape& shape) {
  if (shape.num_kv_heads <= 0 || shape.num_heads % shape.num_kv_heads != 0) {
    core::throw_internal("attention: ", shape.num_heads, " query heads cannot share ",
                         shape.num_kv_heads, " key/value heads");
  }
  for (int s = 0; s < num_seqs; ++s) {
    if (seqs[s].past_length > 0 &&
        (!shape.causal || seqs[s].record != nullptr || seqs[s].stored != nullptr)) {
      core::throw_internal("attention: a cached prefix needs causal attention without maps");
    }
    if (seqs[s].stored != nullptr && seqs[s].stored_dtype == core::DType::kP4 && !shape.causal) {
      core::throw_bad_input("P4 maps are for causal decoders only");
    }
  }
  switch (shape.head_dim) {
    case 16:
      return attention_impl<16>(qkv, ctx, seqs, num_seqs, shape);
    case 32:
      return attention_impl<32>(qkv, ctx, seqs, num_seqs, shape);
    case 64:
      return attention_impl<64>(qkv, ctx, seqs, num_seqs, shape);
    case 128:
      return attention_impl<128>(qkv, ctx, seqs, num_seqs, shape);
    default:
      core::throw_internal("attention: unsupported head size ", shape.head_dim);
  }
}

}  // namespace attncache::cpu
