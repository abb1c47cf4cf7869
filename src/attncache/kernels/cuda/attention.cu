#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_fp8.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <type_traits>
#include <vector>

#include "attncache/kernels/cuda/attention.h"
#include "attncache/kernels/cuda/check.h"
#include "attncache/kernels/cuda/runtime.h"
#include "attncache/kernels/cuda/tile_addressing.h"
#include "attncache/kernels/stored_maps.h"

namespace attncache::cuda {
namespace {

constexpr int kRows = kAttentionRows;
static_assert(kRows == kTileRows, "map tiles are the kernels' key blocks");
// Four warps per CTA; a warp owns BM / 64 tiles of 16 query rows (BM: query rows per CTA).
constexpr int kThreads = 128;
constexpr float kNegInf = -INFINITY;

// D += A·B for one m16n8k16 tile: A 16×16 bf16 (row-major fragment), B 16×8 bf16 (column-major
// fragment), D 16×8 fp32. Fragment layouts (PTX ISA, "mma.m16n8k16"), with g = lane / 4 and
// t = lane % 4: a0 = A[g][2t..2t+1], a1 = A[g+8][2t..], a2 = A[g][2t+8..], a3 = A[g+8][2t+8..];
// b0 = B[2t..2t+1][g], b1 = B[2t+8..2t+9][g]; d0,d1 = D[g][2t..2t+1], d2,d3 = D[g+8][2t..].
__device__ __forceinline__ void mma_bf16(float (&d)[4], const uint32_t (&a)[4], uint32_t b0,
                                         uint32_t b1) {
  asm volatile(
      "mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, "
      "{%8,%9}, {%0,%1,%2,%3};\n"
      : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
}

// Two floats as a bf16 pair, `lo` in the low half (the element with the smaller index).
__device__ __forceinline__ uint32_t pack_bf16(float lo, float hi) {
  const __nv_bfloat162 v = __floats2bfloat162_rn(lo, hi);
  return *reinterpret_cast<const uint32_t*>(&v);
}
__device__ __forceinline__ uint16_t bf16_bits(float x) {
  const __nv_bfloat16 v = __float2bfloat16_rn(x);
  return *reinterpret_cast<const uint16_t*>(&v);
}
__device__ __forceinline__ uint32_t smem_addr(const void* p) {
  return static_cast<uint32_t>(__cvta_generic_to_shared(p));
}

// Four 8×8 bf16 matrices from shared memory; lanes 8i..8i+7 give the row addresses of matrix i,
// and register i gets lane (g, t)'s elements [g][2t..2t+1] of matrix i (with .trans: [2t..2t+1][g]
// of the matrix as stored, i.e. the fragment of its transpose).
__device__ __forceinline__ void ldsm_x4(uint32_t (&r)[4], const uint16_t* p) {
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0,%1,%2,%3}, [%4];\n"
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
               : "r"(smem_addr(p)));
}
__device__ __forceinline__ void ldsm_x4_trans(uint32_t (&r)[4], uint32_t shared_address) {
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0,%1,%2,%3}, [%4];\n"
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
               : "r"(shared_address));
}
__device__ __forceinline__ void ldsm_x4_trans(uint32_t (&r)[4], const uint16_t* p) {
  ldsm_x4_trans(r, smem_addr(p));
}

// 16 bytes global → shared without passing through registers; `valid` false writes zeros.
__device__ __forceinline__ void cp_async16_at(uint32_t smem, const void* gmem, bool valid) {
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(smem), "l"(gmem),
               "r"(valid ? 16 : 0));
}
__device__ __forceinline__ void cp_async16(void* smem, const void* gmem, bool valid) {
  cp_async16_at(smem_addr(smem), gmem, valid);
}
__device__ __forceinline__ void cp_async_commit() { asm volatile("cp.async.commit_group;\n"); }
template <int kPending>
__device__ __forceinline__ void cp_async_wait() {
  asm volatile("cp.async.wait_group %0;\n" ::"n"(kPending));
}

// Shared-memory tiles pad each row by 8 bf16 (16 bytes): the 8 row addresses of an ldmatrix
// then fall in 8 different 16-byte bank groups.
template <int D, int R = kRows>
using Tile = uint16_t[R][D + 8];

// Starts copying rows [row0, row0 + R) of one head's slice (D bf16 at `base`, rows `stride`
// elements apart) into `tile`, 16 bytes per copy, with the CTA's threads; rows at or past n become
// zero. Each thread's source advances by a fixed number of rows per copy (tile_addressing.h).
// kSwizzled: row r's chunk c goes to chunk c ^ v_swizzle(r) (V tiles for byte maps).
template <int D, int R = kRows, bool kSwizzled = false>
__device__ __forceinline__ void load_tile(Tile<D, R>& tile, const uint16_t* base, int stride,
                                          int row0, int n) {
  constexpr int kChunks = D / 8;
  constexpr int kRowsPerPass = kThreads / kChunks;
  static_assert(kThreads % kChunks == 0 && R % kRowsPerPass == 0, "whole passes of rows");
  const ChunkLane lane = chunk_lane(threadIdx.x, kThreads, kChunks, 8);
  const uint16_t* src = base + static_cast<size_t>(row0 + lane.row) * stride + lane.col;
  const size_t step = static_cast<size_t>(kRowsPerPass) * stride;
#pragma unroll
  for (int j = 0; j < R / kRowsPerPass; ++j) {
    const int r = lane.row + j * kRowsPerPass;
    const bool valid = row0 + r < n;
    const int col = kSwizzled ? 8 * (lane.col / 8 ^ v_swizzle(r, kChunks)) : lane.col;
    cp_async16(&tile[r][col], valid ? src + j * step : base, valid);
  }
}

// The A fragments of the 16-row slice of a tile that starts at `row`, for k-step kk.
template <int W, int R>
__device__ __forceinline__ void a_fragments(uint32_t (&a)[4], const Tile<W, R>& tile, int row,
                                            int kk, int lane) {
  const int mi = lane / 8, ri = lane % 8;
  ldsm_x4(a, &tile[row + 8 * (mi % 2) + ri][16 * kk + 8 * (mi / 2)]);
}

// A warp's scores S = Q·Kᵀ (unscaled) for one key block, over its kMT tiles of 16 query rows
// (rows `row`, `row` + 16, …). B = Kᵀ: the fragments of key tiles j and j+1 come from one
// ldmatrix over K's rows (not transposed) and serve every row tile, which is why a warp owns
// more than 16 rows: shared-memory traffic per tensor-core product falls by up to half. Q's
// fragments are kept in registers (qf) when they fit beside the accumulators, else read from qs.
// Each score tile sums its k-steps in the same order whatever kMT is, so results do not change.
template <int D, int kMT, bool kQInRegs, int BM>
__device__ __forceinline__ void scores(float (&s)[kMT][8][4],
                                       const uint32_t (&qf)[kQInRegs ? kMT : 1][D / 16][4],
                                       const Tile<D, BM>& qs, int row, const Tile<D>& ks,
                                       int lane) {
#pragma unroll
  for (int m = 0; m < kMT; ++m) {
#pragma unroll
    for (int j = 0; j < 8; ++j) s[m][j][0] = s[m][j][1] = s[m][j][2] = s[m][j][3] = 0.0f;
  }
  const int mi = lane / 8, ri = lane % 8;
#pragma unroll
  for (int kk = 0; kk < D / 16; ++kk) {
    uint32_t qa[kMT][4];
#pragma unroll
    for (int m = 0; m < kMT; ++m) {
      if constexpr (kQInRegs) {
#pragma unroll
        for (int i = 0; i < 4; ++i) qa[m][i] = qf[m][kk][i];
      } else {
        a_fragments<D, BM>(qa[m], qs, row + 16 * m, kk, lane);
      }
    }
#pragma unroll
    for (int j = 0; j < 8; j += 2) {
      uint32_t b[4];
      ldsm_x4(b, &ks[8 * (j + mi / 2) + ri][16 * kk + 8 * (mi % 2)]);
#pragma unroll
      for (int m = 0; m < kMT; ++m) {
        mma_bf16(s[m][j], qa[m], b[0], b[1]);
        mma_bf16(s[m][j + 1], qa[m], b[2], b[3]);
      }
    }
  }
}

// o[16×D] += P[16×16] · V[16×D] for each of a warp's kMT row tiles, keys 16kk..16kk+15 of the
// block, P given as A fragments. B = V[key][dim]: one transposed ldmatrix gives the fragments of
// dimension tiles jd and jd+1 for every row tile.
template <int D, int kMT>
__device__ __forceinline__ void accumulate_pv(float (&o)[kMT][D / 8][4],
                                              const uint32_t (&pa)[kMT][4], int kk,
                                              const Tile<D>& vs, int lane) {
  const int mi = lane / 8, ri = lane % 8;
#pragma unroll
  for (int jd = 0; jd < D / 8; jd += 2) {
    uint32_t b[4];
    ldsm_x4_trans(b, &vs[16 * kk + 8 * (mi % 2) + ri][8 * (jd + mi / 2)]);
#pragma unroll
    for (int m = 0; m < kMT; ++m) {
      mma_bf16(o[m][jd], pa[m], b[0], b[1]);
      mma_bf16(o[m][jd + 1], pa[m], b[2], b[3]);
    }
  }
}

// accumulate_pv for byte maps: the k-step's keys in permuted_key order, from a swizzled V tile
// (tile_addressing.h). `rows` holds the shared-memory address of this lane's ldmatrix row at
// k-step 0 for dimension pairs jd = 0, 2, 4, 6 (v_row_addresses): k-step kk is 4kk rows further,
// and pair jd + 8 eight chunks further (the swizzle only touches a chunk index's low three bits).
template <int D>
constexpr int kVRowAddresses = D / 16 < 4 ? D / 16 : 4;
template <int D>
__device__ __forceinline__ void v_row_addresses(uint32_t (&rows)[kVRowAddresses<D>],
                                                const Tile<D>& vs, int lane) {
  const int mi = lane / 8, ri = lane % 8;
  const int key = permuted_key(0, 8 * (mi % 2) + ri);
  const int flip = v_swizzle(key, D / 8) ^ (mi / 2);
#pragma unroll
  for (int i = 0; i < kVRowAddresses<D>; ++i) rows[i] = smem_addr(&vs[key][8 * ((2 * i) ^ flip)]);
}
template <int D, int kMT>
__device__ __forceinline__ void accumulate_pv_permuted(float (&o)[kMT][D / 8][4],
                                                       const uint32_t (&pa)[kMT][4], int kk,
                                                       const uint32_t (&rows)[kVRowAddresses<D>],
                                                       uint32_t buffer_offset) {
#pragma unroll
  for (int jd = 0; jd < D / 8; jd += 2) {
    uint32_t b[4];
    const uint32_t at =
        rows[(jd / 2) % 4] + buffer_offset + 4 * kk * sizeof(uint16_t[D + 8]) + (jd / 8) * 8 * 16;
    ldsm_x4_trans(b, at);
#pragma unroll
    for (int m = 0; m < kMT; ++m) {
      mma_bf16(o[m][jd], pa[m], b[0], b[1]);
      mma_bf16(o[m][jd + 1], pa[m], b[2], b[3]);
    }
  }
}

// Two P8 values (bytes 2·half and 2·half + 1 of w, q = round(255·√p)) as the bf16 pair q², q²
// (p · 255²; the caller scales the output back). q becomes a float exactly through the bits
// of 2²³ + q, and a float with at most 8 significant bits is exactly its upper half as bf16, so
// the only rounding is the square's, as in bf16(p); no conversion instructions.
__device__ __forceinline__ uint32_t p8_pair_squares(uint32_t w, int half) {
  constexpr uint32_t kTwo23 = 0x4B000000u;  // 2²³ as float bits
  const float lo = __uint_as_float(__byte_perm(w, kTwo23, 0x7540 + 2 * half)) - 8388608.0f;
  const float hi = __uint_as_float(__byte_perm(w, kTwo23, 0x7541 + 2 * half)) - 8388608.0f;
  const uint32_t q = __byte_perm(__float_as_uint(lo), __float_as_uint(hi), 0x7632);
  __nv_bfloat162 v = *reinterpret_cast<const __nv_bfloat162*>(&q);
  v = __hmul2(v, v);
  return *reinterpret_cast<const uint32_t*>(&v);
}
// Two FP8 (e4m3) values as a bf16 pair (p · 256; the caller scales the output back). An e4m3
// value has at most 4 significant bits, so its float's upper half is it exactly.
__device__ __forceinline__ uint32_t fp8_pair(uint32_t w, int half) {
  const float2 v = __half22float2(__half2(
      __nv_cvt_fp8x2_to_halfraw2(static_cast<__nv_fp8x2_storage_t>(w >> (16 * half)), __NV_E4M3)));
  return __byte_perm(__float_as_uint(v.x), __float_as_uint(v.y), 0x7632);
}

// Two values of a one-byte map format as a scaled bf16 pair, and the scale to undo: the byte
// formats' pairs hold p · 255² (P8) or p · 256 (FP8).
template <MapFormat kFormat>
__device__ __forceinline__ uint32_t byte_pair(uint32_t w, int half) {
  return kFormat == MapFormat::kP8 ? p8_pair_squares(w, half) : fp8_pair(w, half);
}
// The scale to undo after P·V: P8's pairs hold p · 255², FP8's p · 256; P4's scale is per row.
template <MapFormat kFormat>
constexpr float kMapScale = kFormat == MapFormat::kP8    ? 1.0f / (255.0f * 255.0f)
                            : kFormat == MapFormat::kFP8 ? 1.0f / 256.0f
                                                         : 1.0f;

// Four P4 codes (bytes 2·step and 2·step + 1 of w, keys 4g … 4g + 3 stored as the nibbles
// (4g | 4g+2, 4g+1 | 4g+3), see p4_map_bytes) as the bf16 pairs q², q² of keys 4g, 4g + 1
// (`first`) and 4g + 2, 4g + 3 (`second`). A code's bits under 0x4300 are the bf16 128 + q;
// subtracting 128 is exact, and so is the square (at most 225: 8 significant bits). Four
// values cost one byte permute, two masks, a shift and four bf16 pair operations.
__device__ __forceinline__ void p4_pairs(uint32_t w, int step, uint32_t& first, uint32_t& second) {
  constexpr uint32_t kBias = 0x43004300u;  // the bf16 pair 128, 128
  const uint32_t x = __byte_perm(w, 0, step == 0 ? 0x4140 : 0x4342);
  const uint32_t lo_bits = (x & 0x000F000Fu) | kBias, hi_bits = ((x >> 4) & 0x000F000Fu) | kBias;
  const __nv_bfloat162 bias = *reinterpret_cast<const __nv_bfloat162*>(&kBias);
  __nv_bfloat162 lo = __hsub2(*reinterpret_cast<const __nv_bfloat162*>(&lo_bits), bias);
  __nv_bfloat162 hi = __hsub2(*reinterpret_cast<const __nv_bfloat162*>(&hi_bits), bias);
  lo = __hmul2(lo, lo);
  hi = __hmul2(hi, hi);
  first = *reinterpret_cast<const uint32_t*>(&lo);
  second = *reinterpret_cast<const uint32_t*>(&hi);
}

// Hopper's warpgroup MMA (wgmma) for the exact and reuse kernels of head sizes 64 and 128: only
// in the sm_90a image of this file (CMakeLists.txt adds it beside sm_90); the other images run
// the mma.sync kernels, so whichever image the driver loads computes the same thing (up to the
// order of its sums).
#if defined(__CUDA_ARCH__) && defined(__CUDA_ARCH_FEAT_SM90_ALL)
#define ATTNCACHE_WGMMA 1
#else
#define ATTNCACHE_WGMMA 0
#endif

// The operands of a wgmma: 8 accumulator column groups d[j0] … d[j0 + 7] (32 registers), and the
// operand numbers of 32 or 64 of them.
#define ATTNCACHE_WGMMA_D8(d, j0)                                                     \
  "+f"(d[j0][0]), "+f"(d[j0][1]), "+f"(d[j0][2]), "+f"(d[j0][3]), "+f"(d[j0 + 1][0]), \
      "+f"(d[j0 + 1][1]), "+f"(d[j0 + 1][2]), "+f"(d[j0 + 1][3]), "+f"(d[j0 + 2][0]), \
      "+f"(d[j0 + 2][1]), "+f"(d[j0 + 2][2]), "+f"(d[j0 + 2][3]), "+f"(d[j0 + 3][0]), \
      "+f"(d[j0 + 3][1]), "+f"(d[j0 + 3][2]), "+f"(d[j0 + 3][3]), "+f"(d[j0 + 4][0]), \
      "+f"(d[j0 + 4][1]), "+f"(d[j0 + 4][2]), "+f"(d[j0 + 4][3]), "+f"(d[j0 + 5][0]), \
      "+f"(d[j0 + 5][1]), "+f"(d[j0 + 5][2]), "+f"(d[j0 + 5][3]), "+f"(d[j0 + 6][0]), \
      "+f"(d[j0 + 6][1]), "+f"(d[j0 + 6][2]), "+f"(d[j0 + 6][3]), "+f"(d[j0 + 7][0]), \
      "+f"(d[j0 + 7][1]), "+f"(d[j0 + 7][2]), "+f"(d[j0 + 7][3])
#define ATTNCACHE_WGMMA_REGS32                                                                 \
  "%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15, %16, %17, %18, %19, " \
  "%20, %21, %22, %23, %24, %25, %26, %27, %28, %29, %30, %31"
#define ATTNCACHE_WGMMA_REGS64                                                                   \
  ATTNCACHE_WGMMA_REGS32                                                                         \
  ", %32, %33, %34, %35, %36, %37, %38, %39, %40, %41, %42, %43, %44, %45, %46, %47, %48, %49, " \
  "%50, %51, %52, %53, %54, %55, %56, %57, %58, %59, %60, %61, %62, %63"

// The warpgroup's D[64 × N] += A[64 × 16] · B[16 × N]: A from registers (warp w holds rows
// 16w … 16w + 15 in the mma.sync m16n8k16 A layout), B = V from shared memory through `desc`
// (dims contiguous: transposed), D in the m16n8 accumulator layout per warp (d[j] = columns
// 8j … 8j + 7). Asynchronous: wgmma_wait before D or A's registers are touched again.
template <int N>
__device__ __forceinline__ void wgmma_pv(float (&d)[N / 8][4], const uint32_t (&a)[4],
                                         uint64_t desc);
template <>
[[maybe_unused]] __device__ __forceinline__ void wgmma_pv<64>(float (&d)[8][4],
                                                              const uint32_t (&a)[4],
                                                              uint64_t desc) {
#if ATTNCACHE_WGMMA
  asm volatile(
      "{\n.reg .pred p;\nsetp.ne.b32 p, 1, 0;\n"
      "wgmma.mma_async.sync.aligned.m64n64k16.f32.bf16.bf16 {" ATTNCACHE_WGMMA_REGS32
      "}, {%32, %33, %34, %35}, %36, p, 1, 1, 1;\n}\n"
      : ATTNCACHE_WGMMA_D8(d, 0)
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "l"(desc));
#else
  (void)d, (void)a, (void)desc;
  __trap();
#endif
}

template <>
[[maybe_unused]] __device__ __forceinline__ void wgmma_pv<128>(float (&d)[16][4],
                                                               const uint32_t (&a)[4],
                                                               uint64_t desc) {
#if ATTNCACHE_WGMMA
  asm volatile(
      "{\n.reg .pred p;\nsetp.ne.b32 p, 1, 0;\n"
      "wgmma.mma_async.sync.aligned.m64n128k16.f32.bf16.bf16 {" ATTNCACHE_WGMMA_REGS64
      "}, {%64, %65, %66, %67}, %68, p, 1, 1, 1;\n}\n"
      : ATTNCACHE_WGMMA_D8(d, 0), ATTNCACHE_WGMMA_D8(d, 8)
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "l"(desc));
#else
  (void)d, (void)a, (void)desc;
  __trap();
#endif
}

// The warpgroup's scores S[64 × 64] += Q[64 × 16] · K[64 keys × 16]ᵀ, both operands from shared
// memory in the K-major wgmma_tile_offset layout (wgmma_kmajor_desc); S in the same per-warp
// accumulator layout as wgmma_pv's D (s[j] = keys 8j … 8j + 7).
[[maybe_unused]] __device__ __forceinline__ void wgmma_qk(float (&s)[8][4], uint64_t q_desc,
                                                          uint64_t k_desc) {
#if ATTNCACHE_WGMMA
  asm volatile(
      "{\n.reg .pred p;\nsetp.ne.b32 p, 1, 0;\n"
      "wgmma.mma_async.sync.aligned.m64n64k16.f32.bf16.bf16 {" ATTNCACHE_WGMMA_REGS32
      "}, %32, %33, p, 1, 1, 0, 0;\n}\n"
      : ATTNCACHE_WGMMA_D8(s, 0)
      : "l"(q_desc), "l"(k_desc));
#else
  (void)s, (void)q_desc, (void)k_desc;
  __trap();
#endif
}

__device__ __forceinline__ void wgmma_fence() {
#if ATTNCACHE_WGMMA
  asm volatile("wgmma.fence.sync.aligned;\n" ::: "memory");
#endif
}
[[maybe_unused]] __device__ __forceinline__ void wgmma_commit() {
#if ATTNCACHE_WGMMA
  asm volatile("wgmma.commit_group.sync.aligned;\n" ::: "memory");
#endif
}
// Orders the shared-memory writes of cp.async before the async proxy's (wgmma's) reads.
__device__ __forceinline__ void fence_proxy_async_shared() {
#if ATTNCACHE_WGMMA
  asm volatile("fence.proxy.async.shared::cta;\n" ::: "memory");
#endif
}
// Keeps a register's value where it is until here (the compiler must not reuse or move it
// across the asynchronous wgmma that reads or writes it).
[[maybe_unused]] __device__ __forceinline__ void pin(float& x) {
  asm volatile("" : "+f"(x)::"memory");
}
[[maybe_unused]] __device__ __forceinline__ void pin(uint32_t& x) {
  asm volatile("" : "+r"(x)::"memory");
}
template <typename T, int N>
__device__ __forceinline__ void pin(T (&x)[N]) {
#pragma unroll
  for (int i = 0; i < N; ++i) pin(x[i]);
}

// Commits the wgmma products issued since the last commit and waits for all of them, then pins
// `registers` (their accumulators and register A operands), so the compiler neither reuses nor
// reads them before the wait.
template <typename... Registers>
__device__ __forceinline__ void wgmma_commit_and_wait(Registers&... registers) {
  wgmma_commit();
#if ATTNCACHE_WGMMA
  asm volatile("wgmma.wait_group.sync.aligned 0;\n" ::: "memory");
#endif
  (pin(registers), ...);
}

// Shared-memory descriptor of a 1 KB-aligned V tile in the wgmma_tile_offset layout (128-byte
// swizzle), starting at k-step kk's 16 rows: address, leading offset (between 64-dim atoms),
// stride offset (between 8-row groups), all in 16-byte units.
__device__ __forceinline__ uint64_t wgmma_v_desc(uint32_t tile, int kk) {
  const uint32_t start = tile + kk * 2 * kWgmmaAtomBytes;
  return static_cast<uint64_t>((start & 0x3FFFF) >> 4) |
         static_cast<uint64_t>(kWgmmaDimAtomBytes >> 4) << 16 |
         static_cast<uint64_t>(kWgmmaAtomBytes >> 4) << 32 | 1ull << 62;
}

// The same for a Q or K tile read K-major: k-step kk's 16 dims are 32 bytes into the rows of
// dim atom kk / 4 (the hardware applies the swizzle to the address, hence the 1 KB alignment);
// the leading offset is unused with this swizzle.
__device__ __forceinline__ uint64_t wgmma_kmajor_desc(uint32_t tile, int kk) {
  const uint32_t start = tile + kk / 4 * kWgmmaDimAtomBytes + kk % 4 * 32;
  return static_cast<uint64_t>((start & 0x3FFFF) >> 4) | 1ull << 16 |
         static_cast<uint64_t>(kWgmmaAtomBytes >> 4) << 32 | 1ull << 62;
}

// Starts copying rows [row0, row0 + 64) of one head's slice (D bf16 at `base`, rows `stride`
// elements apart) into the wgmma tile at shared address `tile`, rows at or past n as zeros;
// `permuted`: row r goes to row permuted_row(r) (V for byte maps, whose k-steps take keys in
// permuted_key order).
// `thread`: the copying thread's index among the kThreads that copy (default: the CTA's).
template <int D>
__device__ __forceinline__ void load_wgmma_tile(uint32_t tile, const uint16_t* base, int stride,
                                                int row0, int n, bool permuted, int thread = -1) {
  constexpr int kChunks = D / 8, kRowsPerPass = kThreads / kChunks;
  const ChunkLane lane = chunk_lane(thread < 0 ? threadIdx.x : thread, kThreads, kChunks, 8);
  const uint16_t* src = base + static_cast<size_t>(row0 + lane.row) * stride + lane.col;
#pragma unroll
  for (int j = 0; j < kRows / kRowsPerPass; ++j) {
    const int r = lane.row + j * kRowsPerPass;
    const bool valid = row0 + r < n;
    cp_async16_at(tile + wgmma_tile_offset(permuted ? permuted_row(r) : r, lane.col / 8),
                  valid ? src + static_cast<size_t>(j * kRowsPerPass) * stride : base, valid);
  }
}

// Whether the kernels for head size D multiply with wgmma (in this image); the exact kernel's
// recording variant does not.
template <int D>
constexpr bool kWgmmaHead = ATTNCACHE_WGMMA && (D == 64 || D == 128);

template <int D>
__device__ __forceinline__ void store_rows(const AttentionArgs& a, const float (&o)[D / 8][4],
                                           int off, int n, int row, int h, float inv0, float inv1,
                                           int t) {
  const int width = a.num_heads * D;
  uint16_t* ctx = static_cast<uint16_t*>(a.ctx);
#pragma unroll
  for (int half = 0; half < 2; ++half) {
    const int r = row + 8 * half;
    if (r >= n) continue;
    const float inv = half == 0 ? inv0 : inv1;
    uint16_t* out = ctx + static_cast<size_t>(off + r) * width + h * D + 2 * t;
#pragma unroll
    for (int jd = 0; jd < D / 8; ++jd) {
      *reinterpret_cast<uint32_t*>(out + 8 * jd) =
          pack_bf16(o[jd][2 * half] * inv, o[jd][2 * half + 1] * inv);
    }
  }
}

// Where head h's query, key and value columns start in a row of qkv, and the row stride.
struct HeadColumns {
  int stride, q, k, v;
};
template <int D>
__device__ __forceinline__ HeadColumns head_columns(const AttentionArgs& a, int h) {
  const int kv_heads = a.num_kv_heads;
  const int kv = h / (a.num_heads / kv_heads);
  return {(a.num_heads + 2 * kv_heads) * D, h * D, (a.num_heads + kv) * D,
          (a.num_heads + kv_heads + kv) * D};
}

__host__ __device__ __forceinline__ size_t causal_tiles(int n) {
  const size_t r = (n + kRows - 1) / kRows;
  return r * (r + 1) / 2;
}
// Shared memory: one Q tile of BM rows and double-buffered K and V tiles (exact); double-
// buffered P tiles of BM rows and V tiles (reuse). Dynamic: head size 128 needs more than the
// 48 KB of static shared memory.
template <int D, int BM>
constexpr size_t exact_smem() {
  return sizeof(Tile<D, BM>) + 4 * sizeof(Tile<D>);
}
// bf16 rows are padded for ldmatrix; byte rows are read 16 bytes per lane (two rows per 8
// lanes, 128 bytes) and P4 rows 8 (four rows per 16 lanes), which is conflict-free unpadded.
// kRowBytes: the bytes of a tile row of 64 values (128 bf16, 64 P8/FP8, 32 P4).
template <int kRowBytes, int BM>
using PTile = unsigned char[BM][kRowBytes + (kRowBytes == 2 * kRows ? 16 : 0)];
template <int D, int kRowBytes, int BM>
constexpr size_t reuse_smem() {
  return 2 * sizeof(PTile<kRowBytes, BM>) + 2 * sizeof(Tile<D>);
}
template <MapFormat kFormat>
constexpr int kMapRowBytes = kFormat == MapFormat::kBF16 ? 2 * kRows
                             : kFormat == MapFormat::kP4 ? kRows / 2
                                                         : kRows;
// Bytes of `values` map values (whole pairs for P4).
template <MapFormat kFormat>
__host__ __device__ __forceinline__ size_t map_value_bytes(size_t values) {
  return values * kMapRowBytes<kFormat> / kRows;
}
// The compact formats' keys run in permuted_key order (V's rows are gathered to match).
template <MapFormat kFormat>
constexpr bool kPermutedKeys = kFormat != MapFormat::kBF16;

// P4 maps: where a sequence's row scales start (after every head's tiles of 32-byte rows), and
// head h's scale of `row` (0 past n).
__host__ __device__ __forceinline__ size_t p4_scales_offset(int n, int heads) {
  return static_cast<size_t>(heads) * causal_tiles(n) * kRows * kMapRowBytes<MapFormat::kP4>;
}
__device__ __forceinline__ float p4_row_scale(const void* stored, int n, int heads, int h,
                                              int row) {
  if (row >= n) return 0.0f;
  const int padded_rows = (n + kRows - 1) / kRows * kRows;
  return reinterpret_cast<const float*>(static_cast<const unsigned char*>(stored) +
                                        p4_scales_offset(n, heads))[h * padded_rows + row];
}

// The 16-row slice of a map tile that starts at `row`, as a lane's P·V operands. Compact maps:
// the lane reads keys 16t … 16t + 15 (t = lane % 4) of rows r0 = row + lane / 4 and r0 + 8 once
// per key block, four keys per k-step: 16 bytes (P8, FP8; word kk for k-step kk) or 8 (P4; the
// half kk % 2 of word kk / 2).
template <int kRowBytes, int BM>
__device__ __forceinline__ void map_words(uint32_t (&words)[2][4], const PTile<kRowBytes, BM>& tile,
                                          int row, int lane) {
  constexpr int kLaneBytes = kRowBytes / 4;
#pragma unroll
  for (int half = 0; half < 2; ++half) {
    const unsigned char* at = &tile[row + lane / 4 + 8 * half][kLaneBytes * (lane % 4)];
    if constexpr (kLaneBytes == 8) {
      const uint2 v = *reinterpret_cast<const uint2*>(at);
      words[half][0] = v.x;
      words[half][1] = v.y;
      words[half][2] = words[half][3] = 0;
    } else {
      const uint4 v = *reinterpret_cast<const uint4*>(at);
      words[half][0] = v.x;
      words[half][1] = v.y;
      words[half][2] = v.z;
      words[half][3] = v.w;
    }
  }
}
// The slice's A fragment of k-step kk (the m16n8k16 A layout, which wgmma's register A shares):
// decoded from the byte words (a0, a1: columns 2t, 2t + 1 of rows r0, r0 + 8; a2, a3: columns
// 2t + 8, 2t + 9, in permuted_key order), or bf16 straight from the tile by ldmatrix.
template <MapFormat kFormat, int BM>
__device__ __forceinline__ void map_fragment(uint32_t (&pa)[4], const uint32_t (&words)[2][4],
                                             const PTile<kMapRowBytes<kFormat>, BM>& tile, int row,
                                             int kk, int lane) {
  if constexpr (kFormat == MapFormat::kP4) {
#pragma unroll
    for (int half = 0; half < 2; ++half)
      p4_pairs(words[half][kk / 2], kk % 2, pa[half], pa[half + 2]);
  } else if constexpr (kFormat != MapFormat::kBF16) {
#pragma unroll
    for (int i = 0; i < 4; ++i) pa[i] = byte_pair<kFormat>(words[i % 2][kk], i / 2);
  } else {
    const int mi = lane / 8, ri = lane % 8;
    const unsigned char* r = tile[row + 8 * (mi % 2) + ri];
    ldsm_x4(pa, reinterpret_cast<const uint16_t*>(r + 2 * (16 * kk + 8 * (mi / 2))));
  }
}

// One row tile's step of the online softmax over a key block: s (unscaled scores, masked) becomes
// exp2(s · scale_log2 − m) with m the rows' new running maximum (scaled, log2 units); this
// thread's partial row sums l and the output o are rescaled to that maximum first. A row's 64
// scores lie in the four threads of a quad (the m16n8 accumulator layout of mma.sync and wgmma).
// Block 0 holds a valid key (key 0) for every row, so the maxima are finite from then on; a later
// block may hold none for some rows (causal): its terms then are exp2(−∞) = 0.
template <int D>
__device__ __forceinline__ void online_softmax(float (&s)[8][4], float (&mrow)[2], float (&lrow)[2],
                                               float (&o)[D / 8][4], float scale_log2) {
  float mx0 = kNegInf, mx1 = kNegInf;
#pragma unroll
  for (int j = 0; j < 8; ++j) {
    mx0 = fmaxf(mx0, fmaxf(s[j][0], s[j][1]));
    mx1 = fmaxf(mx1, fmaxf(s[j][2], s[j][3]));
  }
  mx0 = fmaxf(mx0, __shfl_xor_sync(0xffffffffu, mx0, 1));
  mx0 = fmaxf(mx0, __shfl_xor_sync(0xffffffffu, mx0, 2));
  mx1 = fmaxf(mx1, __shfl_xor_sync(0xffffffffu, mx1, 1));
  mx1 = fmaxf(mx1, __shfl_xor_sync(0xffffffffu, mx1, 2));
  // The scale is positive, so it commutes with max.
  const float new0 = fmaxf(mrow[0], mx0 * scale_log2);
  const float new1 = fmaxf(mrow[1], mx1 * scale_log2);
  const float alpha0 = exp2f(mrow[0] - new0), alpha1 = exp2f(mrow[1] - new1);
  mrow[0] = new0;
  mrow[1] = new1;
  float sum0 = 0.0f, sum1 = 0.0f;
#pragma unroll
  for (int j = 0; j < 8; ++j) {
    s[j][0] = exp2f(fmaf(s[j][0], scale_log2, -new0));
    s[j][1] = exp2f(fmaf(s[j][1], scale_log2, -new0));
    s[j][2] = exp2f(fmaf(s[j][2], scale_log2, -new1));
    s[j][3] = exp2f(fmaf(s[j][3], scale_log2, -new1));
    sum0 += s[j][0] + s[j][1];
    sum1 += s[j][2] + s[j][3];
  }
  lrow[0] = lrow[0] * alpha0 + sum0;
  lrow[1] = lrow[1] * alpha1 + sum1;
#pragma unroll
  for (int jd = 0; jd < D / 8; ++jd) {
    o[jd][0] *= alpha0;
    o[jd][1] *= alpha0;
    o[jd][2] *= alpha1;
    o[jd][3] *= alpha1;
  }
}

// Keys 16kk … 16kk + 15 of a row tile's probabilities (score tiles 2kk and 2kk + 1) as the A
// fragment of the P·V product: the scores' accumulator layout is the A-fragment layout.
__device__ __forceinline__ void p_fragment(uint32_t (&pa)[4], const float (&s)[8][4], int kk) {
  pa[0] = pack_bf16(s[2 * kk][0], s[2 * kk][1]);
  pa[1] = pack_bf16(s[2 * kk][2], s[2 * kk][3]);
  pa[2] = pack_bf16(s[2 * kk + 1][0], s[2 * kk + 1][1]);
  pa[3] = pack_bf16(s[2 * kk + 1][2], s[2 * kk + 1][3]);
}

// Key/value blocks are double-buffered: the copies of block kb+1 run while block kb is used.
// BM query rows per CTA, 16·kMT per warp: 64 rows, one row tile per warp (the map tiles' rows;
// recording needs it), or 128 rows in two tiles per warp (each key/value tile then serves twice
// the rows, and each fragment read from shared memory twice the products). Causal: a query
// block stops at the key block that holds its last row; key blocks past its first row need the
// causal mask, and with mma.sync a warp whose rows all precede a key block skips it (with wgmma
// every row tile's products run, a tile past its diagonal adding masked zeros).
template <int D, int BM, bool kRecord, bool kCausal>
__global__ void __launch_bounds__(kThreads) flash_forward(AttentionArgs a, float scale_log2) {
  static_assert(BM == kRows || !kRecord, "maps are recorded in 64-row tiles");
  constexpr int kMT = BM / kRows;  // row tiles per warp
  constexpr bool kQInRegs = kMT * D <= 128;
  const int* items = BM == kRows ? a.items : a.wide_items;
  const int seq = items[2 * blockIdx.x], qb = items[2 * blockIdx.x + 1];
  const int h = blockIdx.y;
  DeviceMapSlot slot;
  if (a.maps != nullptr) slot = a.maps[seq];
  if (slot.stored != nullptr && ((slot.heads >> h) & 1)) return;  // the reuse kernel's head
  const int n = a.seq_len[seq], off = a.seq_offset[seq];
  const HeadColumns col = head_columns<D>(a, h);
  const int stride = col.stride;
  const uint16_t* qkv = static_cast<const uint16_t*>(a.qkv) + static_cast<size_t>(off) * stride;
  const uint16_t* kbase = qkv + col.k;
  const uint16_t* vbase = qkv + col.v;
  const int q0 = qb * BM;

  extern __shared__ __align__(16) unsigned char smem[];
  Tile<D, BM>& qs = *reinterpret_cast<Tile<D, BM>*>(smem);
  Tile<D>* ks = reinterpret_cast<Tile<D>*>(smem + sizeof(Tile<D, BM>));
  Tile<D>* vs = ks + 2;
  // wgmma: the Q tiles (one per 64 rows), then two K and two V tiles, in the wgmma_tile_offset
  // layout from the first 1 KB boundary, where the padded tiles lie.
  constexpr bool kWgmma = kWgmmaHead<D> && !kRecord;
  constexpr uint32_t kTileBytes = kRows * D * 2;
  static_assert(!kWgmma || exact_smem<D, BM>() + 16 >= (kMT + 4) * kTileBytes + kWgmmaAtomBytes,
                "room");
  const uint32_t q_tiles = (smem_addr(smem) + kWgmmaAtomBytes - 1) & ~(kWgmmaAtomBytes - 1u);
  const uint32_t k_tiles = q_tiles + kMT * kTileBytes, v_tiles = k_tiles + 2 * kTileBytes;
  // Starts loading key block kb's keys and values into buffer `buf`.
  auto stage = [&](int kb, int buf) {
    if constexpr (kWgmma) {
      load_wgmma_tile<D>(k_tiles + buf * kTileBytes, kbase, stride, kb * kRows, n, false);
      load_wgmma_tile<D>(v_tiles + buf * kTileBytes, vbase, stride, kb * kRows, n, false);
    } else {
      load_tile<D>(ks[buf], kbase, stride, kb * kRows, n);
      load_tile<D>(vs[buf], vbase, stride, kb * kRows, n);
    }
    cp_async_commit();
  };
  if constexpr (kWgmma) {
#pragma unroll
    for (int m = 0; m < kMT; ++m) {
      load_wgmma_tile<D>(q_tiles + m * kTileBytes, qkv + col.q, stride, q0 + kRows * m, n, false);
    }
  } else {
    load_tile<D, BM>(qs, qkv + col.q, stride, q0, n);
  }
  stage(0, 0);
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32, t = lane % 4;
  const int wrow = warp * 16 * kMT;  // this warp's first row in the block (mma.sync)
  // The first row of row tile m this warp holds: a warpgroup MMA covers 64 rows, 16 per warp.
  auto tile_row = [&](int m) { return kWgmma ? kRows * m + 16 * warp : wrow + 16 * m; };
  // This thread's rows in row tile m: q0 + tile_row(m) + lane/4 and the row 8 below.
  auto row_of = [&](int m, int half) { return q0 + tile_row(m) + lane / 4 + 8 * half; };
  uint32_t qf[kQInRegs ? kMT : 1][D / 16][4];

  float o[kMT][D / 8][4];
#pragma unroll
  for (int m = 0; m < kMT; ++m) {
#pragma unroll
    for (int jd = 0; jd < D / 8; ++jd) o[m][jd][0] = o[m][jd][1] = o[m][jd][2] = o[m][jd][3] = 0.0f;
  }
  // Per row: the running maximum (scaled, log2 units) and this thread's partial sum.
  float mrow[kMT][2], lrow[kMT][2];
#pragma unroll
  for (int m = 0; m < kMT; ++m) {
    mrow[m][0] = mrow[m][1] = kNegInf;
    lrow[m][0] = lrow[m][1] = 0.0f;
  }
  const int key_blocks = ((kCausal ? min(n, q0 + BM) : n) + kRows - 1) / kRows;
  // Masks keys past the sequence and, causal, keys after the query (in place, on scores).
  auto mask = [&](float(&s)[kMT][8][4], int kb) {
    if ((kb + 1) * kRows <= n && !(kCausal && (kb + 1) * kRows - 1 > q0)) return;
#pragma unroll
    for (int m = 0; m < kMT; ++m) {
      const int row0 = row_of(m, 0), row1 = row_of(m, 1);
#pragma unroll
      for (int j = 0; j < 8; ++j) {
#pragma unroll
        for (int e = 0; e < 2; ++e) {
          const int c = kb * kRows + 8 * j + 2 * t + e;
          if (c >= n || (kCausal && c > row0)) s[m][j][e] = kNegInf;
          if (c >= n || (kCausal && c > row1)) s[m][j][2 + e] = kNegInf;
        }
      }
    }
  };
  for (int kb = 0; kb < key_blocks; ++kb) {
    const int buf = kb & 1;
    if (kb + 1 < key_blocks) {
      stage(kb + 1, buf ^ 1);
      cp_async_wait<1>();
    } else {
      cp_async_wait<0>();
    }
    if constexpr (kWgmma) fence_proxy_async_shared();
    __syncthreads();
    if constexpr (kQInRegs && !kWgmma) {
      if (kb == 0) {
#pragma unroll
        for (int m = 0; m < kMT; ++m) {
#pragma unroll
          for (int kk = 0; kk < D / 16; ++kk)
            a_fragments<D, BM>(qf[m][kk], qs, wrow + 16 * m, kk, lane);
        }
      }
    }
    if constexpr (kWgmma) {
      // Every row tile's products run, even those of a causal 128-row block's first tile past its
      // diagonal (masked to zero there): ptxas fenced the conditional wgmma (C7519), and without
      // the test the exact kernels ran 1.01-1.21x faster
      // (bench/results/attention_variants_h100_unconditional).
      float s[kMT][8][4];
#pragma unroll
      for (int m = 0; m < kMT; ++m) {
#pragma unroll
        for (int j = 0; j < 8; ++j) s[m][j][0] = s[m][j][1] = s[m][j][2] = s[m][j][3] = 0.0f;
      }
      wgmma_fence();
#pragma unroll
      for (int kk = 0; kk < D / 16; ++kk) {
#pragma unroll
        for (int m = 0; m < kMT; ++m) {
          wgmma_qk(s[m], wgmma_kmajor_desc(q_tiles + m * kTileBytes, kk),
                   wgmma_kmajor_desc(k_tiles + buf * kTileBytes, kk));
        }
      }
      wgmma_commit_and_wait(s);
      mask(s, kb);
#pragma unroll
      for (int m = 0; m < kMT; ++m) {
        online_softmax<D>(s[m], mrow[m], lrow[m], o[m], scale_log2);
      }
      uint32_t pa[4][kMT][4];
#pragma unroll
      for (int kk = 0; kk < 4; ++kk) {
#pragma unroll
        for (int m = 0; m < kMT; ++m) p_fragment(pa[kk][m], s[m], kk);
      }
      wgmma_fence();
#pragma unroll
      for (int kk = 0; kk < 4; ++kk) {
#pragma unroll
        for (int m = 0; m < kMT; ++m) {
          wgmma_pv<D>(o[m], pa[kk][m], wgmma_v_desc(v_tiles + buf * kTileBytes, kk));
        }
      }
      wgmma_commit_and_wait(o, pa);
    } else if (!(kCausal && kb * kRows > q0 + wrow + 16 * kMT - 1)) {
      // (Skipped where every key of the block lies after every row of this warp.)
      float s[kMT][8][4];
      scores<D, kMT, kQInRegs, BM>(s, qf, qs, wrow, ks[buf], lane);
      mask(s, kb);
#pragma unroll
      for (int m = 0; m < kMT; ++m) online_softmax<D>(s[m], mrow[m], lrow[m], o[m], scale_log2);
#pragma unroll
      for (int kk = 0; kk < 4; ++kk) {
        uint32_t pa[kMT][4];
#pragma unroll
        for (int m = 0; m < kMT; ++m) p_fragment(pa[m], s[m], kk);
        accumulate_pv<D, kMT>(o, pa, kk, vs[buf], lane);
      }
    }
    __syncthreads();  // buffer `buf` is refilled in the next iteration
  }
  float inv[kMT][2];
#pragma unroll
  for (int m = 0; m < kMT; ++m) {
#pragma unroll
    for (int half = 0; half < 2; ++half) {
      float l = lrow[m][half];
      l += __shfl_xor_sync(0xffffffffu, l, 1);
      l += __shfl_xor_sync(0xffffffffu, l, 2);
      inv[m][half] = 1.0f / l;
    }
    store_rows<D>(a, o[m], off, n, row_of(m, 0), h, inv[m][0], inv[m][1], t);
  }

  if constexpr (kRecord) {
    // Second pass: P = exp2(s − m) / l with the final m and l, written as bf16 (kMT = 1).
    if (slot.record == nullptr) return;
    const int r0 = wrow + lane / 4, row0 = row_of(0, 0), row1 = row_of(0, 1);
    const float m0 = mrow[0][0], m1 = mrow[0][1], inv0 = inv[0][0], inv1 = inv[0][1];
    uint16_t* rec =
        static_cast<uint16_t*>(slot.record) +
        (kCausal ? h * causal_tiles(n) * kRows * kRows : static_cast<size_t>(h) * n * n);
    for (int kb = 0; kb < key_blocks; ++kb) {
      load_tile<D>(ks[0], kbase, stride, kb * kRows, n);
      cp_async_commit();
      cp_async_wait<0>();
      __syncthreads();
      float sm[1][8][4];
      scores<D, 1, kQInRegs, BM>(sm, qf, qs, wrow, ks[0], lane);
      __syncthreads();
      mask(sm, kb);
      float(&s)[8][4] = sm[0];
      if constexpr (kCausal) {
        // The whole tile is written, zeros included (rows past n too): a stored tile is read
        // as it is.
        uint16_t* tile = rec + tile_offset(qb, kb);
#pragma unroll
        for (int j = 0; j < 8; ++j) {
          const int c = 8 * j + 2 * t;
          const bool in0 = row0 < n, in1 = row1 < n;
          *reinterpret_cast<uint32_t*>(tile + r0 * kRows + c) =
              in0 ? pack_bf16(exp2f(fmaf(s[j][0], scale_log2, -m0)) * inv0,
                              exp2f(fmaf(s[j][1], scale_log2, -m0)) * inv0)
                  : 0u;
          *reinterpret_cast<uint32_t*>(tile + (r0 + 8) * kRows + c) =
              in1 ? pack_bf16(exp2f(fmaf(s[j][2], scale_log2, -m1)) * inv1,
                              exp2f(fmaf(s[j][3], scale_log2, -m1)) * inv1)
                  : 0u;
        }
      } else {
#pragma unroll
        for (int j = 0; j < 8; ++j) {
#pragma unroll
          for (int e = 0; e < 2; ++e) {
            const int c = kb * kRows + 8 * j + 2 * t + e;
            if (c >= n) continue;
            if (row0 < n) {
              rec[static_cast<size_t>(row0) * n + c] =
                  bf16_bits(exp2f(fmaf(s[j][e], scale_log2, -m0)) * inv0);
            }
            if (row1 < n) {
              rec[static_cast<size_t>(row1) * n + c] =
                  bf16_bits(exp2f(fmaf(s[j][2 + e], scale_log2, -m1)) * inv1);
            }
          }
        }
      }
    }
  }
}

// ctx = P·V for the reused heads. P streams through shared memory in tiles of BM rows × 64 keys,
// double-buffered like the exact kernel's keys: each stored value is read once. P8 and FP8
// values are read 16 bytes per row and key block and decoded to scaled bf16 pairs while the A
// fragments are built, their keys in permuted_key order (p8_pair_squares, fp8_pair). Causal
// maps are block triangles: a query block reads its key blocks up to the diagonal, each 64-row
// slice one contiguous tile; with 128 rows, the first 64 rows' tile past their diagonal is not
// stored and loads as zeros, and the warps that own those rows skip it.
template <int D, MapFormat kFormat, bool kCausal, int BM>
__global__ void __launch_bounds__(kThreads) reuse_pv(AttentionArgs a) {
  static_assert(kCausal || kFormat != MapFormat::kP4, "P4 maps are causal block triangles");
  constexpr int kMT = BM / kRows;  // row tiles per warp
  constexpr int kRowBytes = kMapRowBytes<kFormat>;
  constexpr bool kPermuted = kPermutedKeys<kFormat>;
  const auto bytes = [](size_t values) { return map_value_bytes<kFormat>(values); };
  const int* items = BM == kRows ? a.items : a.wide_items;
  const int seq = items[2 * blockIdx.x], qb = items[2 * blockIdx.x + 1];
  const int h = blockIdx.y;
  const DeviceMapSlot slot = a.maps[seq];
  if (slot.stored == nullptr || slot.format != kFormat || ((slot.heads >> h) & 1) == 0) return;
  const int n = a.seq_len[seq], off = a.seq_offset[seq];
  const HeadColumns col = head_columns<D>(a, h);
  const int stride = col.stride;
  const uint16_t* vbase =
      static_cast<const uint16_t*>(a.qkv) + static_cast<size_t>(off) * stride + col.v;
  const unsigned char* p =
      static_cast<const unsigned char*>(slot.stored) +
      bytes(kCausal ? h * causal_tiles(n) * kRows * kRows : static_cast<size_t>(h) * n * n);
  const int q0 = qb * BM;
  const int row_blocks = (n + kRows - 1) / kRows;

  extern __shared__ __align__(16) unsigned char smem[];
  auto* ps = reinterpret_cast<PTile<kRowBytes, BM>*>(smem);
  Tile<D>* vs = reinterpret_cast<Tile<D>*>(smem + 2 * sizeof(PTile<kRowBytes, BM>));
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32, t = lane % 4;
  const int wrow = warp * 16 * kMT;  // this warp's first row in the block (mma.sync)
  // wgmma: the two V tiles in the wgmma_tile_offset layout, 1 KB-aligned, where the padded ones
  // lie; row tile m of a warp is rows 64m + 16 warp … (a warpgroup MMA covers 64 rows).
  constexpr bool kWgmma = kWgmmaHead<D>;
  constexpr uint32_t kVBytes = kRows * D * 2;
  static_assert(!kWgmma || 2 * sizeof(Tile<D>) + 16 >= 2 * kVBytes + kWgmmaAtomBytes, "room");
  const uint32_t v_tiles = (smem_addr(vs) + kWgmmaAtomBytes - 1) & ~(kWgmmaAtomBytes - 1u);
  auto tile_row = [&](int m) { return kWgmma ? kRows * m + 16 * warp : wrow + 16 * m; };
  constexpr int kPerChunk = 16 * kRows / kRowBytes;  // values per 16-byte copy
  constexpr int kChunksPerRow = kRows / kPerChunk;
  // Rows of P start 16-byte aligned (always, in a block triangle's tiles).
  const bool vector_rows = kCausal || n % kPerChunk == 0;
  // This thread's 16-byte chunks of P: rows plane.row + j · kPRowsPerPass, column plane.col,
  // with their sources at key block 0 computed once (tile_addressing.h).
  constexpr int kPRowsPerPass = kThreads / kChunksPerRow;
  static_assert(kRows % kPRowsPerPass == 0, "a thread's chunks stay in their 64-row slice");
  const ChunkLane plane = chunk_lane(threadIdx.x, kThreads, kChunksPerRow, kPerChunk);
  size_t p_start[kMT];  // causal: per 64-row slice; else row plane.row's offset
  if constexpr (kCausal) {
#pragma unroll
    for (int m = 0; m < kMT; ++m) p_start[m] = causal_slice_start(q0, m, plane);
  } else {
    p_start[0] = static_cast<size_t>(q0 + plane.row) * n + plane.col;
  }
  // Starts loading key block kb (its P columns and V rows) into buffer `buf`.
  auto stage = [&](int kb, int buf) {
    const int k0 = kb * kRows;
    if constexpr (kCausal) {
#pragma unroll
      for (int j = 0; j < BM / kPRowsPerPass; ++j) {
        const int past = j * kPRowsPerPass;  // rows past plane.row
        const int m = past / kRows, rb = q0 / kRows + m;
        const bool valid = kb <= rb && rb < row_blocks;
        cp_async16(&ps[buf][plane.row + past][bytes(plane.col)],
                   p + (valid ? bytes(causal_chunk_offset(p_start[m], past % kRows, kb)) : 0),
                   valid);
      }
    } else if (vector_rows) {
#pragma unroll
      for (int j = 0; j < BM / kPRowsPerPass; ++j) {
        const int r = plane.row + j * kPRowsPerPass;
        const bool valid = q0 + r < n && k0 + plane.col < n;
        const size_t at = p_start[0] + static_cast<size_t>(j * kPRowsPerPass) * n + k0;
        cp_async16(&ps[buf][r][bytes(plane.col)], p + (valid ? bytes(at) : 0), valid);
      }
    } else {
      for (int i = threadIdx.x; i < BM * kRows; i += kThreads) {
        const int r = i / kRows, c = i % kRows;
        const bool valid = q0 + r < n && k0 + c < n;
        const size_t at = bytes(static_cast<size_t>(q0 + r) * n + k0 + c);
        if constexpr (kRowBytes == kRows) {
          ps[buf][r][c] = valid ? p[at] : 0;
        } else {
          *reinterpret_cast<uint16_t*>(&ps[buf][r][2 * c]) =
              valid ? *reinterpret_cast<const uint16_t*>(p + at) : 0;
        }
      }
    }
    if constexpr (kWgmma) {
      load_wgmma_tile<D>(v_tiles + buf * kVBytes, vbase, stride, k0, n, kPermuted);
    } else {
      load_tile<D, kRows, kPermuted>(vs[buf], vbase, stride, k0, n);
    }
    cp_async_commit();
  };
  float o[kMT][D / 8][4];
#pragma unroll
  for (int m = 0; m < kMT; ++m) {
#pragma unroll
    for (int jd = 0; jd < D / 8; ++jd) o[m][jd][0] = o[m][jd][1] = o[m][jd][2] = o[m][jd][3] = 0.0f;
  }
  uint32_t v_rows[kVRowAddresses<D>];
  if constexpr (kPermuted) v_row_addresses<D>(v_rows, vs[0], lane);
  const int key_blocks = kCausal ? min((qb + 1) * (BM / kRows), row_blocks) : row_blocks;
  // Causal: the key blocks this warp's rows reach (its rows lie in one 64-row block; with wgmma
  // each row tile is skipped past its diagonal instead).
  const int warp_blocks = kCausal && !kWgmma ? (q0 + wrow) / kRows + 1 : key_blocks;
  // Byte maps: each row tile's words for the key block (map_words).
  auto load_words = [&](uint32_t(&words)[kMT][2][4], int buf) {
#pragma unroll
    for (int m = 0; m < kMT; ++m) map_words<kRowBytes, BM>(words[m], ps[buf], tile_row(m), lane);
  };
  // Row tile m's A fragment of k-step kk.
  auto a_fragment = [&](uint32_t(&pa)[4], const uint32_t(&words)[2][4], int buf, int m, int kk) {
    map_fragment<kFormat, BM>(pa, words, ps[buf], tile_row(m), kk, lane);
  };
  stage(0, 0);
  for (int kb = 0; kb < key_blocks; ++kb) {
    const int buf = kb & 1;
    if (kb + 1 < key_blocks) {
      stage(kb + 1, buf ^ 1);
      cp_async_wait<1>();
    } else {
      cp_async_wait<0>();
    }
    if constexpr (kWgmma) fence_proxy_async_shared();
    __syncthreads();
    if constexpr (kWgmma) {
      // A causal 128-row block's first row tile ends one key block before its second. Skipping
      // its products there beats adding its zero-filled map tile, although ptxas fences the
      // conditional wgmma (C7519): without the test, 128-row reuse ran at 0.88-1.05x. A 64-row
      // block always reaches its last key block; dropping the test there gained up to 1.11x
      // (bench/results/attention_variants_h100_unconditional).
      auto reaches = [&](int m) { return !kCausal || kMT == 1 || kb <= q0 / kRows + m; };
      uint32_t words[kMT][2][4];
      if constexpr (kPermuted) load_words(words, buf);
      // Each k-step's fragments are decoded while the previous steps' products run.
      uint32_t pa[4][kMT][4];
#pragma unroll
      for (int kk = 0; kk < 4; ++kk) {
#pragma unroll
        for (int m = 0; m < kMT; ++m) a_fragment(pa[kk][m], words[m], buf, m, kk);
        wgmma_fence();
#pragma unroll
        for (int m = 0; m < kMT; ++m) {
          if (reaches(m)) wgmma_pv<D>(o[m], pa[kk][m], wgmma_v_desc(v_tiles + buf * kVBytes, kk));
        }
      }
      wgmma_commit_and_wait(o, pa);
    } else if (kb < warp_blocks) {
      uint32_t words[kMT][2][4];
      if constexpr (kPermuted) load_words(words, buf);
#pragma unroll
      for (int kk = 0; kk < 4; ++kk) {
        uint32_t pa[kMT][4];
#pragma unroll
        for (int m = 0; m < kMT; ++m) a_fragment(pa[m], words[m], buf, m, kk);
        if constexpr (kPermuted) {
          accumulate_pv_permuted<D, kMT>(o, pa, kk, v_rows, buf * sizeof(Tile<D>));
        } else {
          accumulate_pv<D, kMT>(o, pa, kk, vs[buf], lane);
        }
      }
    }
    __syncthreads();
  }
#pragma unroll
  for (int m = 0; m < kMT; ++m) {
    const int row = q0 + tile_row(m) + lane / 4;
    if constexpr (kFormat == MapFormat::kP4) {
      store_rows<D>(a, o[m], off, n, row, h, p4_row_scale(slot.stored, n, a.num_heads, h, row),
                    p4_row_scale(slot.stored, n, a.num_heads, h, row + 8), t);
    } else {
      store_rows<D>(a, o[m], off, n, row, h, kMapScale<kFormat>, kMapScale<kFormat>, t);
    }
  }
}

// Shared-memory barriers (mbarrier) for the grouped reuse kernel: a phase completes when its
// expected number of arrivals has come; waiters name the parity of the phase they wait for.
[[maybe_unused]] __device__ __forceinline__ void mbarrier_init(uint32_t bar, int count) {
#if ATTNCACHE_WGMMA
  asm volatile("mbarrier.init.shared::cta.b64 [%0], %1;\n" ::"r"(bar), "r"(count) : "memory");
#endif
}
[[maybe_unused]] __device__ __forceinline__ void mbarrier_wait(uint32_t bar, uint32_t parity) {
#if ATTNCACHE_WGMMA
  uint32_t done = 0;
  while (!done) {
    asm volatile(
        "{\n.reg .pred p;\nmbarrier.try_wait.parity.shared::cta.b64 p, [%1], %2;\n"
        "selp.u32 %0, 1, 0, p;\n}\n"
        : "=r"(done)
        : "r"(bar), "r"(parity)
        : "memory");
  }
#endif
}
[[maybe_unused]] __device__ __forceinline__ void mbarrier_arrive(uint32_t bar) {
#if ATTNCACHE_WGMMA
  asm volatile("mbarrier.arrive.shared::cta.b64 _, [%0];\n" ::"r"(bar) : "memory");
#endif
}
// One arrival on `bar` once this thread's cp.async copies issued so far have landed.
[[maybe_unused]] __device__ __forceinline__ void cp_async_arrive(uint32_t bar) {
#if ATTNCACHE_WGMMA
  asm volatile("cp.async.mbarrier.arrive.noinc.shared::cta.b64 [%0];\n" ::"r"(bar) : "memory");
#endif
}

// The grouped reuse kernel's ring of key-block buffers, each a value tile (wgmma layout, 1 KB
// aligned) and the G query heads' 64×64 map tiles.
constexpr int kGroupStages = 4;
template <int D, int kRowBytes, int G>
constexpr size_t grouped_smem() {
  return kGroupStages * (kRows * D * 2 + G * sizeof(PTile<kRowBytes, kRows>)) + kWgmmaAtomBytes +
         2 * kGroupStages * sizeof(uint64_t);
}

// The unit CTA b of `grid` takes in its round r: round r covers units r·grid … r·grid + grid − 1,
// in CTA order in even rounds and reversed in odd ones, so that over the longest-first items no
// CTA takes the longest unit of every round.
[[maybe_unused]] __device__ __forceinline__ int grouped_unit(int r, int b, int grid) {
  return r * grid + ((r & 1) ? grid - 1 - b : b);
}

// reuse_pv for causal grouped-query attention with wgmma, 64-row query blocks: the work is
// (query block, G query heads that share a KV head: all of them, or a divisor, see
// reuse_heads_per_cta) units, ordered as AttentionArgs::grouped_band_items says, each CTA
// taking them in grouped_unit order.
// Warpgroup 0 copies each key block's value tile once, with the G heads' map tiles, into a ring
// of kGroupStages buffers; warpgroup 1 + g multiplies head h0 + g's tile by it. A buffer passes
// between them through two mbarriers (full: the producer's copies landed; empty: every consumer
// warp is done with it), so no warp waits for the whole CTA, the G heads read each value tile
// from L2 once instead of G times (reuse_pv rereads V for every query head: 2 bytes per byte of
// P8 map with head 128). A CTA fills an SM. On the H100, P8, against the faster row count at
// 3B's shapes from 835 tokens: persistent in four bands 0.98-1.42x; item by item 0.77-1.38x
// (from batch 8 the CTAs at work at once read every KV head's value tiles of several
// sequences, past L2); head group by head group 0.87-1.24x with one CTA per unit, 0.82-1.17x
// persistent (few rounds load the CTAs unevenly) (bench/results/attention_grouped_h100/
// unit_orders).
template <int D, MapFormat kFormat, int G>
__global__ void __launch_bounds__((G + 1) * kThreads, 1) reuse_pv_grouped(AttentionArgs a) {
#if ATTNCACHE_WGMMA
  constexpr int kRowBytes = kMapRowBytes<kFormat>;
  constexpr bool kPermuted = kPermutedKeys<kFormat>;
  constexpr uint32_t kVBytes = kRows * D * 2;
  using PT = PTile<kRowBytes, kRows>;
  const int groups = a.num_heads / G, units = a.num_items * groups;
  const int stride = (a.num_heads + 2 * a.num_kv_heads) * D;

  extern __shared__ __align__(16) unsigned char smem[];
  const uint32_t base = smem_addr(smem);
  const uint32_t v_tiles = (base + kWgmmaAtomBytes - 1) & ~(kWgmmaAtomBytes - 1u);
  auto* p_tiles = reinterpret_cast<PT*>(smem + (v_tiles - base) + kGroupStages * kVBytes);
  const uint32_t bars = smem_addr(p_tiles + kGroupStages * G);
  auto full = [&](int s) { return bars + 8 * s; };
  auto empty = [&](int s) { return bars + 8 * (kGroupStages + s); };
  const int wg = threadIdx.x / kThreads, tid = threadIdx.x % kThreads;
  if (threadIdx.x == 0) {
    for (int s = 0; s < kGroupStages; ++s) {
      mbarrier_init(full(s), kThreads);  // one arrival per producer thread's copies
      mbarrier_init(empty(s), 4 * G);    // one per consumer warp
    }
  }
  __syncthreads();

  // A unit's sequence, query block, first head and the heads of its G that reuse maps (none:
  // nothing to do); every warp derives the same, so producer and consumers agree on the buffers.
  struct Unit {
    int seq, qb, h0;
    uint32_t heads;
  };
  const int band = a.grouped_band_items > 0 ? min(a.grouped_band_items, a.num_items) : a.num_items;
  auto unit_at = [&](int u) {
    const int first = u / (band * groups) * band, in_band = min(band, a.num_items - first);
    const int rest = u - first * groups;
    const int item = first + rest % in_band, h0 = rest / in_band * G;
    Unit w{a.items[2 * item], a.items[2 * item + 1], h0, 0};
    const DeviceMapSlot slot = a.maps[w.seq];
    if (slot.stored != nullptr && slot.format == kFormat) {
      w.heads = static_cast<uint32_t>(slot.heads >> h0) & ((1u << G) - 1);
    }
    return w;
  };
  // Key blocks through the ring so far, over all units: block i uses buffer i % kGroupStages,
  // in phase i / kGroupStages of its barriers.
  uint32_t ring = 0;

  if (wg == 0) {
    // P tiles are stored whole (zeros above the diagonal and past n), 64 × 64 values each.
    constexpr int kPerChunk = 16 * kRows / kRowBytes, kChunksPerRow = kRows / kPerChunk;
    constexpr int kPRowsPerPass = kThreads / kChunksPerRow;
    const ChunkLane plane = chunk_lane(tid, kThreads, kChunksPerRow, kPerChunk);
    for (int r = 0, u; (u = grouped_unit(r, blockIdx.x, gridDim.x)) < units; ++r) {
      const Unit w = unit_at(u);
      if (w.heads == 0) continue;
      const int n = a.seq_len[w.seq], off = a.seq_offset[w.seq];
      const int kv = w.h0 / (a.num_heads / a.num_kv_heads);
      const uint16_t* vbase = static_cast<const uint16_t*>(a.qkv) +
                              static_cast<size_t>(off) * stride +
                              (a.num_heads + a.num_kv_heads + kv) * D;
      const size_t head_values = causal_tiles(n) * kRows * kRows;
      const unsigned char* p = static_cast<const unsigned char*>(a.maps[w.seq].stored);
      for (int kb = 0; kb <= w.qb; ++kb, ++ring) {
        const int s = ring % kGroupStages;
        mbarrier_wait(empty(s), ((ring / kGroupStages) & 1) ^ 1);
        load_wgmma_tile<D>(v_tiles + s * kVBytes, vbase, stride, kb * kRows, n, kPermuted, tid);
#pragma unroll
        for (int g = 0; g < G; ++g) {
          if (((w.heads >> g) & 1) == 0) continue;
          const unsigned char* tile =
              p + map_value_bytes<kFormat>((w.h0 + g) * head_values + tile_offset(w.qb, kb) +
                                           plane.row * kRows + plane.col);
#pragma unroll
          for (int j = 0; j < kRows / kPRowsPerPass; ++j) {
            cp_async16(&p_tiles[s * G + g][plane.row + j * kPRowsPerPass]
                               [map_value_bytes<kFormat>(plane.col)],
                       tile + j * kPRowsPerPass * kRowBytes, true);
          }
        }
        cp_async_arrive(full(s));
      }
    }
    cp_async_wait<0>();
    return;
  }

  const int g = wg - 1;
  const int warp = tid / 32, lane = tid % 32, t = lane % 4;
  const int row = 16 * warp + lane / 4;  // rows row and row + 8 of the block
  for (int r = 0, u; (u = grouped_unit(r, blockIdx.x, gridDim.x)) < units; ++r) {
    const Unit w = unit_at(u);
    if (w.heads == 0) continue;
    const bool active = (w.heads >> g) & 1;
    float o[D / 8][4];
#pragma unroll
    for (int jd = 0; jd < D / 8; ++jd) o[jd][0] = o[jd][1] = o[jd][2] = o[jd][3] = 0.0f;
    for (int kb = 0; kb <= w.qb; ++kb, ++ring) {
      const int s = ring % kGroupStages;
      mbarrier_wait(full(s), (ring / kGroupStages) & 1);
      if (active) {
        fence_proxy_async_shared();  // the producer's cp.async writes, before wgmma reads V
        const PT& ps = p_tiles[s * G + g];
        uint32_t words[2][4];
        if constexpr (kPermuted) map_words<kRowBytes, kRows>(words, ps, 16 * warp, lane);
        uint32_t pa[4][4];
#pragma unroll
        for (int kk = 0; kk < 4; ++kk) {
          map_fragment<kFormat, kRows>(pa[kk], words, ps, 16 * warp, kk, lane);
          wgmma_fence();
          wgmma_pv<D>(o, pa[kk], wgmma_v_desc(v_tiles + s * kVBytes, kk));
        }
        wgmma_commit_and_wait(o, pa);
      }
      __syncwarp();
      if (lane == 0) mbarrier_arrive(empty(s));
    }
    if (active) {
      const int n = a.seq_len[w.seq], first = w.qb * kRows + row;
      float scale0 = kMapScale<kFormat>, scale1 = kMapScale<kFormat>;
      if constexpr (kFormat == MapFormat::kP4) {
        const void* stored = a.maps[w.seq].stored;
        scale0 = p4_row_scale(stored, n, a.num_heads, w.h0 + g, first);
        scale1 = p4_row_scale(stored, n, a.num_heads, w.h0 + g, first + 8);
      }
      store_rows<D>(a, o, a.seq_offset[w.seq], n, first, w.h0 + g, scale0, scale1, t);
    }
  }
#else
  (void)a;
  __trap();
#endif
}

__global__ void report_wgmma(int* out) { *out = ATTNCACHE_WGMMA; }

__global__ void to_p8_kernel(const __nv_bfloat16* in, unsigned char* out, size_t count) {
  const size_t i = blockIdx.x * static_cast<size_t>(blockDim.x) + threadIdx.x;
  if (i >= count) return;
  const float p = fminf(fmaxf(__bfloat162float(in[i]), 0.0f), 1.0f);
  out[i] = static_cast<unsigned char>(rintf(sqrtf(p) * 255.0f));
}

__global__ void to_fp8_kernel(const __nv_bfloat16* in, unsigned char* out, size_t count) {
  const size_t i = blockIdx.x * static_cast<size_t>(blockDim.x) + threadIdx.x;
  if (i >= count) return;
  out[i] = __nv_cvt_float_to_fp8(__bfloat162float(in[i]) * 256.0f, __NV_SATFINITE, __NV_E4M3);
}

// Where key k of a tile row sits in P4: nibble (k >> 1) & 1 of byte 2·(k / 4) + (k & 1)
// (p4_map_bytes).
__host__ __device__ __forceinline__ int p4_byte(int k) { return 2 * (k / 4) + (k & 1); }
__host__ __device__ __forceinline__ int p4_shift(int k) { return 4 * ((k >> 1) & 1); }

// A tile row's 64 codes as the 8 words of its 32 bytes.
struct P4TileRow {
  uint32_t words[8] = {};
  __host__ __device__ void put(int k, unsigned q) {
    words[p4_byte(k) / 4] |= q << (8 * (p4_byte(k) % 4) + p4_shift(k));
  }
};
__device__ __forceinline__ void store_p4_row(const P4TileRow& row, unsigned char* at) {
  auto* to = reinterpret_cast<uint4*>(at);
  to[0] = make_uint4(row.words[0], row.words[1], row.words[2], row.words[3]);
  to[1] = make_uint4(row.words[4], row.words[5], row.words[6], row.words[7]);
}

// Row r's 64 values of a map tile in format kFrom (bf16, P8 or FP8) at `tile`, decoded to fp32
// exactly as core::convert_to_f32 decodes them on the host.
template <MapFormat kFrom>
__device__ __forceinline__ void load_tile_row(const unsigned char* tile, int r, float (&v)[kRows]) {
  const auto* at =
      reinterpret_cast<const uint4*>(tile + static_cast<size_t>(r) * kMapRowBytes<kFrom>);
  if constexpr (kFrom == MapFormat::kBF16) {
#pragma unroll
    for (int c = 0; c < kRows / 8; ++c) {
      const uint4 chunk = at[c];
      const auto* pairs = reinterpret_cast<const __nv_bfloat162*>(&chunk);
#pragma unroll
      for (int j = 0; j < 4; ++j) {
        const float2 f = __bfloat1622float2(pairs[j]);
        v[8 * c + 2 * j] = f.x;
        v[8 * c + 2 * j + 1] = f.y;
      }
    }
  } else {
#pragma unroll
    for (int c = 0; c < kRows / 16; ++c) {
      const uint4 chunk = at[c];
      const auto* bytes = reinterpret_cast<const unsigned char*>(&chunk);
#pragma unroll
      for (int j = 0; j < 16; ++j) {
        if constexpr (kFrom == MapFormat::kP8) {
          const float q = static_cast<float>(bytes[j]) * (1.0f / 255.0f);
          v[16 * c + j] = __fmul_rn(q, q);
        } else {
          const __half h = __nv_cvt_fp8_to_halfraw(bytes[j], __NV_E4M3);
          v[16 * c + j] = __half2float(h) * (1.0f / core::kFP8Scale);
        }
      }
    }
  }
}

// One CTA per (row block, head) of one sequence's block triangles in format kFrom, a thread per
// row: the row's largest probability over its key blocks, then its codes, 32 bytes per tile row,
// and its scale.
template <MapFormat kFrom>
__global__ void to_p4_kernel(const unsigned char* in, int n, int heads, unsigned char* out) {
  const int rb = blockIdx.x, h = blockIdx.y, r = threadIdx.x;
  const size_t head_values = causal_tiles(n) * kRows * kRows;
  auto tile = [&](int kb) {
    return in + map_value_bytes<kFrom>(h * head_values + tile_offset(rb, kb));
  };
  float v[kRows];
  float m = 0.0f;
  for (int kb = 0; kb <= rb; ++kb) {
    load_tile_row<kFrom>(tile(kb), r, v);
#pragma unroll
    for (int k = 0; k < kRows; ++k) m = fmaxf(m, v[k]);
  }
  unsigned squares = 0;
  for (int kb = 0; kb <= rb; ++kb) {
    load_tile_row<kFrom>(tile(kb), r, v);
    P4TileRow row;
#pragma unroll
    for (int k = 0; k < kRows; ++k) {
      const unsigned q = p4_code(v[k], m);
      squares += q * q;
      row.put(k, q);
    }
    store_p4_row(row, out + map_value_bytes<MapFormat::kP4>(h * head_values + tile_offset(rb, kb)) +
                          static_cast<size_t>(r) * kMapRowBytes<MapFormat::kP4>);
  }
  const int padded_rows = gridDim.x * kRows;
  reinterpret_cast<float*>(out + p4_scales_offset(n, heads))[h * padded_rows + rb * kRows + r] =
      p4_scale(squares);
}

// One CTA per (row block, head): a layer of P4 rows (the map database's layout) → P4 block
// triangles, a thread per row: the same codes, and the scale they imply.
__global__ void p4_rows_to_tiles_kernel(const unsigned char* in, int n, int heads,
                                        unsigned char* out) {
  const int rb = blockIdx.x, h = blockIdx.y, i = rb * kRows + threadIdx.x;
  const size_t head_values = causal_tiles(n) * kRows * kRows;
  const unsigned char* codes = in + h * p4_row_offset(n) + p4_row_offset(i);
  unsigned squares = 0;
  for (int kb = 0; kb <= rb; ++kb) {
    P4TileRow row;
    for (int k = 0; k < kRows; ++k) {
      const int key = kb * kRows + k;
      if (i < n && key <= i) {
        const unsigned q = p4_row_code(codes, key);
        squares += q * q;
        row.put(k, q);
      }
    }
    store_p4_row(row, out + map_value_bytes<MapFormat::kP4>(h * head_values + tile_offset(rb, kb)) +
                          static_cast<size_t>(threadIdx.x) * kMapRowBytes<MapFormat::kP4>);
  }
  reinterpret_cast<float*>(out + p4_scales_offset(n, heads))[h * gridDim.x * kRows + i] =
      p4_scale(squares);
}

// fp16 bits → bf16 bits, rounded to nearest even as core::convert_from_f32 rounds.
__device__ __forceinline__ uint16_t f16_to_bf16_bits(uint16_t h) {
  return __bfloat16_as_ushort(__float2bfloat16_rn(__half2float(__ushort_as_half(h))));
}

// One CTA per (row of the padded block triangle, head) of a layer of stored maps (packed lower
// triangles of kBytes-byte values, the map database's layout) → the row's tile rows of the block
// triangle: its keys, zeros past the diagonal and in rows past n; fp16 values become bf16.
template <int kBytes, bool kF16>
__global__ void packed_rows_to_tiles_kernel(const unsigned char* in, int n, unsigned char* out) {
  using Value = std::conditional_t<kBytes == 1, unsigned char, uint16_t>;
  const int i = blockIdx.x, h = blockIdx.y, rb = i / kRows;
  const auto* row = reinterpret_cast<const Value*>(in) + (static_cast<size_t>(h) * n * (n + 1) / 2 +
                                                          static_cast<size_t>(i) * (i + 1) / 2);
  auto* tiles = reinterpret_cast<Value*>(out) + h * causal_tiles(n) * kRows * kRows +
                static_cast<size_t>(i % kRows) * kRows;
  for (int k = threadIdx.x; k < (rb + 1) * kRows; k += blockDim.x) {
    Value v = i < n && k <= i ? row[k] : 0;
    if constexpr (kF16) v = f16_to_bf16_bits(v);
    tiles[tile_offset(rb, k / kRows) + k % kRows] = v;
  }
}

__global__ void f16_to_bf16_kernel(const uint16_t* in, uint16_t* out, size_t count) {
  const size_t i = blockIdx.x * static_cast<size_t>(blockDim.x) + threadIdx.x;
  if (i < count) out[i] = f16_to_bf16_bits(in[i]);
}

// Launches with `smem` bytes of dynamic shared memory, raising the kernel's limit once when
// that is past the default 48 KB.
template <auto kKernel, int kBlockThreads = kThreads, typename... Args>
void launch(dim3 grid, size_t smem, cudaStream_t stream, const char* name, Args... args) {
  static const cudaError_t raised =
      smem > 48 * 1024 ? cudaFuncSetAttribute(kKernel, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                              static_cast<int>(smem))
                       : cudaSuccess;
  check(raised, name);
  kKernel<<<grid, kBlockThreads, smem, stream>>>(args...);
  check_launch(name);
}

template <int D, int BM>
void launch_exact_rows(const AttentionArgs& args, bool record, dim3 grid, cudaStream_t stream) {
  const float scale_log2 = 1.4426950408889634f / std::sqrt(static_cast<float>(D));
  constexpr size_t smem = exact_smem<D, BM>();
  if constexpr (BM == kRows) {
    if (record) {
      if (args.causal) {
        return launch<flash_forward<D, BM, true, true>>(grid, smem, stream, "flash_forward", args,
                                                        scale_log2);
      }
      return launch<flash_forward<D, BM, true, false>>(grid, smem, stream, "flash_forward", args,
                                                       scale_log2);
    }
  }
  if (args.causal) {
    launch<flash_forward<D, BM, false, true>>(grid, smem, stream, "flash_forward", args,
                                              scale_log2);
  } else {
    launch<flash_forward<D, BM, false, false>>(grid, smem, stream, "flash_forward", args,
                                               scale_log2);
  }
}

bool has_wide_items(const AttentionArgs& args) {
  return args.wide_items != nullptr && args.num_wide_items > 0;
}

template <int D>
void launch_exact(const AttentionArgs& args, bool record, cudaStream_t stream) {
  if (!record && has_wide_items(args)) {
    return launch_exact_rows<D, 2 * kRows>(args, false, dim3(args.num_wide_items, args.num_heads),
                                           stream);
  }
  launch_exact_rows<D, kRows>(args, record, dim3(args.num_items, args.num_heads), stream);
}

template <int D, MapFormat kFormat, int BM>
void launch_reuse_rows(const AttentionArgs& args, dim3 grid, cudaStream_t stream) {
  constexpr size_t smem = reuse_smem<D, kMapRowBytes<kFormat>, BM>();
  if (args.causal) {
    launch<reuse_pv<D, kFormat, true, BM>>(grid, smem, stream, "reuse_pv", args);
  } else if constexpr (kFormat == MapFormat::kP4) {
    core::throw_bad_input("P4 maps are for causal attention only");
  } else {
    launch<reuse_pv<D, kFormat, false, BM>>(grid, smem, stream, "reuse_pv", args);
  }
}

}  // namespace

// The largest of 4, 3, 2 that divides the heads per KV head, at most 3 with head 128 (with four,
// 640 threads leave 96 registers a thread, too few for wgmma: ptxas serializes it).
int reuse_heads_per_cta(const AttentionArgs& args) {
  if (!args.group_heads || !args.causal || has_wide_items(args)) return 0;
  if (args.head_dim != 64 && args.head_dim != 128) return 0;
  const int kv_heads = args.num_kv_heads > 0 ? args.num_kv_heads : args.num_heads;
  if (kv_heads <= 0 || args.num_heads % kv_heads != 0) return 0;
  const int group = args.num_heads / kv_heads;
  for (int g = args.head_dim == 128 ? 3 : 4; g >= 2; --g) {
    if (group % g == 0) return g;
  }
  return 0;
}

namespace {

template <int D, MapFormat kFormat, int G>
void launch_reuse_grouped(const AttentionArgs& args, cudaStream_t stream) {
  constexpr size_t smem = grouped_smem<D, kMapRowBytes<kFormat>, G>();
  int64_t ctas = static_cast<int64_t>(args.num_items) * (args.num_heads / G);
  if (args.grouped_ctas > 0) ctas = std::min<int64_t>(ctas, args.grouped_ctas);
  launch<reuse_pv_grouped<D, kFormat, G>, (G + 1) * kThreads>(
      dim3(static_cast<unsigned>(ctas)), smem, stream, "reuse_pv_grouped", args);
}

template <int D, MapFormat kFormat>
void launch_reuse_format(const AttentionArgs& args, cudaStream_t stream) {
  if constexpr (D == 64 || D == 128) {
    switch (reuse_heads_per_cta(args)) {
      case 2:
        return launch_reuse_grouped<D, kFormat, 2>(args, stream);
      case 3:
        return launch_reuse_grouped<D, kFormat, 3>(args, stream);
      case 4:
        if constexpr (D == 64) return launch_reuse_grouped<D, kFormat, 4>(args, stream);
        break;
      default:
        break;
    }
  }
  if (has_wide_items(args)) {
    return launch_reuse_rows<D, kFormat, 2 * kRows>(args, dim3(args.num_wide_items, args.num_heads),
                                                    stream);
  }
  launch_reuse_rows<D, kFormat, kRows>(args, dim3(args.num_items, args.num_heads), stream);
}

template <int D>
void launch_reuse(const AttentionArgs& args, MapFormat format, cudaStream_t stream) {
  switch (format) {
    case MapFormat::kBF16:
      return launch_reuse_format<D, MapFormat::kBF16>(args, stream);
    case MapFormat::kP8:
      return launch_reuse_format<D, MapFormat::kP8>(args, stream);
    case MapFormat::kFP8:
      return launch_reuse_format<D, MapFormat::kFP8>(args, stream);
    case MapFormat::kP4:
      return launch_reuse_format<D, MapFormat::kP4>(args, stream);
  }
}

// The arguments with num_kv_heads filled in, checked.
AttentionArgs resolved(AttentionArgs args) {
  if (args.num_kv_heads == 0) args.num_kv_heads = args.num_heads;
  if (args.num_kv_heads <= 0 || args.num_heads % args.num_kv_heads != 0) {
    core::throw_internal("attention: ", args.num_heads, " query heads cannot share ",
                         args.num_kv_heads, " key/value heads");
  }
  return args;
}

}  // namespace

bool attention_uses_wgmma() {
  DeviceBuffer flag(sizeof(int), "a flag");
  report_wgmma<<<1, 1>>>(flag.as<int>());
  check_launch("report_wgmma");
  check(cudaDeviceSynchronize(), "cudaDeviceSynchronize");
  int value = 0;
  flag.download(&value, sizeof(int));
  return value != 0;
}

bool attention_supports_head_dim(int head_dim) {
  return head_dim == 16 || head_dim == 32 || head_dim == 64 || head_dim == 128;
}

size_t causal_map_elements(int n) { return causal_tiles(n) * kRows * kRows; }

namespace {
// Calls copy(packed byte offset, tiles byte offset, bytes) for each stretch of a row that lies
// in one tile: row i's keys 0..i sit in tiles (i / 64, 0..i / 64).
template <typename Copy>
void for_each_tile_stretch(int n, int bytes, Copy copy) {
  for (int i = 0; i < n; ++i) {
    const size_t row = static_cast<size_t>(i) * (i + 1) / 2 * bytes;
    const int rb = i / kRows;
    for (int kb = 0; kb <= rb; ++kb) {
      const int k0 = kb * kRows, count = std::min(kRows, i + 1 - k0);
      const size_t tile = static_cast<size_t>(rb) * (rb + 1) / 2 + kb;
      copy(row + static_cast<size_t>(k0) * bytes,
           (tile * kRows * kRows + static_cast<size_t>(i % kRows) * kRows) * bytes,
           static_cast<size_t>(count) * bytes);
    }
  }
}
}  // namespace

void causal_map_to_tiles(const void* packed, int n, int bytes, void* tiles) {
  const auto* in = static_cast<const unsigned char*>(packed);
  auto* out = static_cast<unsigned char*>(tiles);
  std::memset(out, 0, causal_map_elements(n) * bytes);
  for_each_tile_stretch(n, bytes, [&](size_t from, size_t to, size_t count) {
    std::memcpy(out + to, in + from, count);
  });
}

size_t p4_map_bytes(int n, int heads) {
  const size_t padded_rows = static_cast<size_t>(n + kRows - 1) / kRows * kRows;
  return p4_scales_offset(n, heads) + heads * padded_rows * sizeof(float);
}

void p4_rows_to_tiles(const void* rows, int n, int heads, void* p4) {
  const auto* in = static_cast<const unsigned char*>(rows);
  auto* out = static_cast<unsigned char*>(p4);
  std::memset(out, 0, p4_map_bytes(n, heads));
  const size_t head_values = causal_map_elements(n);
  const int padded_rows = (n + kRows - 1) / kRows * kRows;
  auto* scales = reinterpret_cast<float*>(out + p4_scales_offset(n, heads));
  for (int h = 0; h < heads; ++h) {
    const unsigned char* head = in + h * p4_row_offset(n);
    for (int i = 0; i < n; ++i) {
      const unsigned char* codes = head + p4_row_offset(i);
      unsigned squares = 0;
      for (int k = 0; k <= i; ++k) {
        const size_t tile_row = h * head_values + tile_offset(i / kRows, k / kRows) +
                                static_cast<size_t>(i % kRows) * kRows;
        const unsigned q = p4_row_code(codes, k);
        squares += q * q;
        out[map_value_bytes<MapFormat::kP4>(tile_row) + p4_byte(k % kRows)] |=
            static_cast<unsigned char>(q << p4_shift(k % kRows));
      }
      scales[static_cast<size_t>(h) * padded_rows + i] = p4_scale(squares);
    }
  }
}

void causal_maps_to_p4(const float* packed, int n, int heads, void* p4) {
  std::vector<unsigned char> rows(p4_layer_bytes(n, heads));
  p4_encode_layer(packed, n, heads, rows.data());
  p4_rows_to_tiles(rows.data(), n, heads, p4);
}

void causal_map_from_tiles(const void* tiles, int n, int bytes, void* packed) {
  const auto* in = static_cast<const unsigned char*>(tiles);
  auto* out = static_cast<unsigned char*>(packed);
  for_each_tile_stretch(n, bytes, [&](size_t to, size_t from, size_t count) {
    std::memcpy(out + to, in + from, count);
  });
}

void attention_exact(const AttentionArgs& in, bool record, cudaStream_t stream) {
  if (in.num_items == 0) return;
  const AttentionArgs args = resolved(in);
  switch (args.head_dim) {
    case 16:
      return launch_exact<16>(args, record, stream);
    case 32:
      return launch_exact<32>(args, record, stream);
    case 64:
      return launch_exact<64>(args, record, stream);
    case 128:
      return launch_exact<128>(args, record, stream);
    default:
      core::throw_internal("attention_exact: unsupported head size ", args.head_dim);
  }
}

void attention_reuse(const AttentionArgs& in, MapFormat format, cudaStream_t stream) {
  if (in.num_items == 0) return;
  if (in.maps == nullptr) core::throw_internal("attention_reuse without maps");
  const AttentionArgs args = resolved(in);
  switch (args.head_dim) {
    case 16:
      return launch_reuse<16>(args, format, stream);
    case 32:
      return launch_reuse<32>(args, format, stream);
    case 64:
      return launch_reuse<64>(args, format, stream);
    case 128:
      return launch_reuse<128>(args, format, stream);
    default:
      core::throw_internal("attention_reuse: unsupported head size ", args.head_dim);
  }
}

void maps_to_p8(const void* bf16, void* p8, size_t count, cudaStream_t stream) {
  if (count == 0) return;
  const int threads = 256;
  to_p8_kernel<<<static_cast<unsigned>((count + threads - 1) / threads), threads, 0, stream>>>(
      static_cast<const __nv_bfloat16*>(bf16), static_cast<unsigned char*>(p8), count);
  check_launch("maps_to_p8");
}

void maps_to_fp8(const void* bf16, void* fp8, size_t count, cudaStream_t stream) {
  if (count == 0) return;
  const int threads = 256;
  to_fp8_kernel<<<static_cast<unsigned>((count + threads - 1) / threads), threads, 0, stream>>>(
      static_cast<const __nv_bfloat16*>(bf16), static_cast<unsigned char*>(fp8), count);
  check_launch("maps_to_fp8");
}

void maps_to_p4(const void* tiles, MapFormat from, int n, int heads, void* p4,
                cudaStream_t stream) {
  if (n <= 0 || heads <= 0) return;
  const dim3 grid((n + kRows - 1) / kRows, heads);
  const auto* in = static_cast<const unsigned char*>(tiles);
  auto* out = static_cast<unsigned char*>(p4);
  switch (from) {
    case MapFormat::kBF16:
      to_p4_kernel<MapFormat::kBF16><<<grid, kRows, 0, stream>>>(in, n, heads, out);
      break;
    case MapFormat::kP8:
      to_p4_kernel<MapFormat::kP8><<<grid, kRows, 0, stream>>>(in, n, heads, out);
      break;
    case MapFormat::kFP8:
      to_p4_kernel<MapFormat::kFP8><<<grid, kRows, 0, stream>>>(in, n, heads, out);
      break;
    case MapFormat::kP4:
      core::throw_internal("maps_to_p4: the maps are P4 already");
  }
  check_launch("maps_to_p4");
}

void p4_rows_to_tiles(const void* rows, int n, int heads, void* p4, cudaStream_t stream) {
  if (n <= 0 || heads <= 0) return;
  p4_rows_to_tiles_kernel<<<dim3((n + kRows - 1) / kRows, heads), kRows, 0, stream>>>(
      static_cast<const unsigned char*>(rows), n, heads, static_cast<unsigned char*>(p4));
  check_launch("p4_rows_to_tiles");
}

void stored_maps_to_tiles(const void* stored, int n, int heads, bool causal, int bytes, bool fp16,
                          void* out, cudaStream_t stream) {
  if (n <= 0 || heads <= 0) return;
  if ((bytes != 1 && bytes != 2) || (fp16 && bytes != 2)) {
    core::throw_internal("stored_maps_to_tiles: ", bytes, "-byte values", fp16 ? " as fp16" : "");
  }
  const auto* in = static_cast<const unsigned char*>(stored);
  auto* to = static_cast<unsigned char*>(out);
  if (!causal) {
    const size_t count = static_cast<size_t>(heads) * n * n;
    if (fp16) {
      f16_to_bf16_kernel<<<(count + 255) / 256, 256, 0, stream>>>(
          reinterpret_cast<const uint16_t*>(in), reinterpret_cast<uint16_t*>(to), count);
      check_launch("stored_maps_to_tiles");
    } else {
      check(cudaMemcpyAsync(to, in, count * bytes, cudaMemcpyDeviceToDevice, stream),
            "stored_maps_to_tiles");
    }
    return;
  }
  const dim3 grid((n + kRows - 1) / kRows * kRows, heads);
  if (bytes == 1) {
    packed_rows_to_tiles_kernel<1, false><<<grid, kThreads, 0, stream>>>(in, n, to);
  } else if (fp16) {
    packed_rows_to_tiles_kernel<2, true><<<grid, kThreads, 0, stream>>>(in, n, to);
  } else {
    packed_rows_to_tiles_kernel<2, false><<<grid, kThreads, 0, stream>>>(in, n, to);
  }
  check_launch("stored_maps_to_tiles");
}

}  // namespace attncache::cuda
