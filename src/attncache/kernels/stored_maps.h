// How stored attention maps lie in host memory (the map database, the CPU engine's reuse path)
// and how they are read back row by row.
//
// One layer of one input holds H maps: N×N each (bidirectional), or packed lower triangles of
// N(N+1)/2 values (causal: row i holds keys 0..i), in an element type of core/dtype.h (fp32,
// fp16, bf16, P8, FP8), or, causal maps only, in P4:
//
// P4 stores each probability p of a row as a 4-bit code q = round(15·√(p / m)), m the row's
// largest probability, and decodes it as q² / Σq² (the row's codes' squares), so that each
// decoded row sums to 1 (on SmolLM2's MMLU answers renormalizing takes a quarter off the
// divergence of scaling by m / 225 and halves the answers changed; bench/results/map_formats).
// The row's scale 1 / Σq² follows from its codes, so the host layout stores codes only: every
// head's rows back to back, row i in ⌈(i + 1) / 2⌉ bytes (key k in nibble k % 2 of byte k / 2,
// low nibble first). Half of P8's bytes. The GPU holds the same codes in its block-triangle
// layout with the scales beside them (attncache/kernels/cuda/attention.h, p4_map_bytes), so its
// kernels apply one multiply a row.
#pragma once

#include <math.h>

#include <cstddef>
#include <cstdint>

#include "core/dtype.h"

#if !defined(ATTNCACHE_HOST_DEVICE)
#if defined(__CUDACC__)
#define ATTNCACHE_HOST_DEVICE __host__ __device__
#else
#define ATTNCACHE_HOST_DEVICE
#endif
#endif

namespace attncache {

// The P4 code of probability p in a row whose largest probability is m.
ATTNCACHE_HOST_DEVICE inline unsigned p4_code(float p, float m) {
  return m > 0.0f ? static_cast<unsigned>(rintf(15.0f * sqrtf(fminf(fmaxf(p, 0.0f) / m, 1.0f))))
                  : 0u;
}
// The scale of a P4 row whose codes' squares sum to `squares`. The sum is an exact integer, so
// every encoder (host, device, from any source) gives the same scale for the same codes.
ATTNCACHE_HOST_DEVICE inline float p4_scale(unsigned squares) {
  return squares > 0 ? 1.0f / static_cast<float>(squares) : 0.0f;
}
// Byte offset of row i's codes within a head's P4 rows: Σ_{j<i} ⌈(j + 1) / 2⌉.
ATTNCACHE_HOST_DEVICE inline size_t p4_row_offset(int i) {
  return (static_cast<size_t>(i) + 1) * (static_cast<size_t>(i) + 1) / 4;
}
// Bytes of a P4 layer of `heads` n-token maps.
ATTNCACHE_HOST_DEVICE inline size_t p4_layer_bytes(int n, int heads) {
  return static_cast<size_t>(heads) * p4_row_offset(n);
}

// The code of key k in a row's codes.
ATTNCACHE_HOST_DEVICE inline unsigned p4_row_code(const unsigned char* codes, int k) {
  return (codes[k / 2] >> (4 * (k & 1))) & 15u;
}

// Encodes one row of `len` probabilities into ⌈len / 2⌉ bytes of codes; returns Σq².
unsigned p4_encode_row(const float* row, int len, unsigned char* codes);
// The inverse: a row's `len` codes decoded to q² / Σq² each.
void p4_decode_row(const unsigned char* codes, int len, float* out);
// One layer of P4 maps from `heads` packed lower triangles of fp32 probabilities.
void p4_encode_layer(const float* packed, int n, int heads, void* out);

// Bytes of one layer of maps stored as `dtype` (P4: causal only).
size_t stored_layer_bytes(int n, int heads, bool causal, core::DType dtype);
// Row i of head h of one layer of stored maps, its first `len` values as fp32 (len ≤ the row's
// stored values: N, or i + 1 when causal).
void stored_map_row(const void* layer, core::DType dtype, int n, bool causal, int h, int i, int len,
                    float* out);
// `row` as it reads back after storing it as `dtype`: the row alone, as if it were row len − 1
// of a causal map for P4 (its codes and scale depend on the row only).
void stored_round_trip(core::DType dtype, const float* row, int len, float* out);
// One layer of fp32 maps (laid out as above) stored as `dtype`.
void store_layer(core::DType dtype, const float* maps, int n, int heads, bool causal, void* out);

}  // namespace attncache
