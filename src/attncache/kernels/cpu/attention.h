// Fused multi-head self-attention over a batch of variable-length sequences packed without
// padding. For each (sequence, head) a block of query rows goes through QKᵀ, softmax and P·V while
// it sits in cache; P for the whole sequence is never materialized unless asked for.
//
// Per sequence, the caller may ask to *record* the softmax probabilities (written as fp32) or to
// *replace* them with stored ones (per-head mask), in which case QKᵀ and softmax are skipped for
// those heads and only P·V runs. Maps are H×N×N for bidirectional attention and, for causal
// attention, H packed lower triangles of N(N+1)/2 values (row i holds its i+1 visible columns):
// the zero half is neither stored nor multiplied. Stored maps may be in any format of
// attncache/kernels/stored_maps.h (element types, or P4 for causal maps).
//
// Grouped-query attention: H query heads share H_kv key/value heads, query head h reading
// key/value head h / (H / H_kv). Causal sequences may continue a cached prefix (`past_*`): their
// rows are then positions past_length.. and attend to the prefix's keys as well.
#pragma once

#include <cstdint>

#include "core/dtype.h"

namespace attncache::cpu {

struct AttentionSeq {
  int offset = 0;                // first token row in the packed batch
  int length = 0;                // tokens N
  float* record = nullptr;       // H×N×N fp32 destination, or null
  const void* stored = nullptr;  // H×N×N probabilities to reuse, or null
  core::DType stored_dtype = core::DType::kF32;
  uint64_t stored_heads = ~0ull;  // bit h set: head h reuses `stored`
  // Keys and values of a cached prefix, [past_length × H_kv·dh] each (causal only; no record or
  // stored maps with a prefix).
  const float* past_k = nullptr;
  const float* past_v = nullptr;
  int past_length = 0;
};

struct AttentionShape {
  int num_heads = 0;
  int num_kv_heads = 0;  // divides num_heads
  int head_dim = 0;
  bool causal = false;
  int qkv_width() const { return (num_heads + 2 * num_kv_heads) * head_dim; }
};

// Values in one head's map of an n-token sequence, and where row i starts in it.
inline size_t attention_map_size(int n, bool causal) {
  return causal ? static_cast<size_t>(n) * (n + 1) / 2 : static_cast<size_t>(n) * n;
}
inline size_t attention_map_row(int n, int i, bool causal) {
  return causal ? static_cast<size_t>(i) * (i + 1) / 2 : static_cast<size_t>(i) * n;
}

// Head sizes the kernel is specialized for (16, 32, 64, 128).
bool attention_supports_head_dim(int head_dim);

// qkv: [T × (H + 2·H_kv)·dh] rows of (q | k | v), heads contiguous inside each; ctx: [T × H·dh].
void attention(const float* qkv, float* ctx, const AttentionSeq* seqs, int num_seqs,
               const AttentionShape& shape);

// Bidirectional multi-head attention (H_kv = H).
inline void attention(const float* qkv, float* ctx, const AttentionSeq* seqs, int num_seqs,
                      int num_heads, int head_dim) {
  attention(qkv, ctx, seqs, num_seqs, AttentionShape{num_heads, num_heads, head_dim, false});
}

}  // namespace attncache::cpu
