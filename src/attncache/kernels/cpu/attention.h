// Fused multi-head self-attention over a batch of variable-length sequences packed without
// padding. For each (sequence, head) a block of query rows goes through QKᵀ, softmax and P·V while
// it sits in cache; P for the whole sequence is never materialized unless asked for.
//
// Per sequence, the caller may ask to *record* the softmax probabilities (written as fp32
// H×N×N) or to *replace* them with stored ones (fp32, fp16 or bf16 H×N×N, per-head mask), in which
// case QKᵀ and softmax are skipped for those heads and only P·V runs.
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
};

// Head sizes the kernel is specialized for (16, 32, 64, 128).
bool attention_supports_head_dim(int head_dim);

// qkv: [T × 3·H·dh] rows of (q | k | v), heads contiguous inside each; ctx: [T × H·dh].
void attention(const float* qkv, float* ctx, const AttentionSeq* seqs, int num_seqs, int num_heads,
               int head_dim);

}  // namespace attncache::cpu
