// Where each thread of the attention kernels copies its 16-byte chunks from, key block after
// key block: computed once per CTA and advanced by a constant per key block, instead of being
// re-derived (divisions, the block triangle's 64-bit tile index) for every chunk of every block,
// which made the reuse kernel's loads cost about as many instructions as its tensor-core work.
// Plain arithmetic, also compiled on the host: tests/attncache/tile_addressing_test.cc checks it
// against the direct formulas.
//
// Chunks: a tile of rows × kChunksPerRow chunks is copied by kThreads threads; thread t copies
// chunks t, t + kThreads, …, i.e. column chunk t % kChunksPerRow of rows t / kChunksPerRow + j ·
// (kThreads / kChunksPerRow), j = 0, 1, ….
#pragma once

#include <cstddef>

#if defined(__CUDACC__)
#define ATTNCACHE_HOST_DEVICE __host__ __device__
#else
#define ATTNCACHE_HOST_DEVICE
#endif

namespace attncache::cuda {

constexpr int kTileRows = 64;  // rows and columns of a map tile, keys per key block

// Offset (in values) of tile (rb, kb) within one head's block triangle: row blocks in order,
// each holding its tiles kb = 0 … rb of kTileRows × kTileRows values.
ATTNCACHE_HOST_DEVICE inline size_t tile_offset(int rb, int kb) {
  return (static_cast<size_t>(rb) * (rb + 1) / 2 + kb) * kTileRows * kTileRows;
}

// A thread's place in a tile copy: its first row and its column (in values), and the rows
// between its successive chunks.
struct ChunkLane {
  int row, col, rows_per_pass;
};
ATTNCACHE_HOST_DEVICE inline ChunkLane chunk_lane(int thread, int threads, int chunks_per_row,
                                                  int values_per_chunk) {
  return {thread / chunks_per_row, (thread % chunks_per_row) * values_per_chunk,
          threads / chunks_per_row};
}

// Causal maps (block triangles). The value offset, within the head, of a thread's first chunk
// in 64-row slice m (rows 64m … 64m + 63) of the query block starting at row q0, at key block 0.
// Its chunk of row r = 64m + rr (rr = lane.row + a multiple of lane.rows_per_pass, below 64) at
// key block kb is then start + rr' · 64 + kb · 64², rr' = rr − lane.row: causal_chunk_offset.
ATTNCACHE_HOST_DEVICE inline size_t causal_slice_start(int q0, int m, ChunkLane lane) {
  return tile_offset(q0 / kTileRows + m, 0) + static_cast<size_t>(lane.row) * kTileRows + lane.col;
}
ATTNCACHE_HOST_DEVICE inline size_t causal_chunk_offset(size_t slice_start, int rows_past_lane,
                                                        int kb) {
  return slice_start + static_cast<size_t>(rows_past_lane) * kTileRows +
         static_cast<size_t>(kb) * kTileRows * kTileRows;
}

// Byte maps (P8, FP8) in the reuse kernel. A thread reads its map values for a whole key block
// with one 16-byte load per row: bytes 16t … 16t + 15 (t = lane % 4) of its rows. k-step kk of
// the m16n8k16 product then uses keys 16t + 4kk … 16t + 4kk + 3 where the fragment layout names
// columns 2t, 2t + 1, 2t + 8, 2t + 9. The product sums over k in any order as long as P's and
// V's fragments agree, so V's rows are gathered in the same order: logical column k of k-step kk
// is key permuted_key(kk, k) of the block.
ATTNCACHE_HOST_DEVICE inline int permuted_key(int kk, int k) {
  return 16 * ((k & 7) >> 1) + 4 * kk + 2 * (k >> 3) + (k & 1);
}
// The inverse: the logical row (16 kk + k) that key `key` of a block takes in k-step order
// (the row of V a wgmma reads it from).
ATTNCACHE_HOST_DEVICE inline int permuted_row(int key) {
  const int t = key / 16, kk = key % 16 / 4, j = key % 4;
  return 16 * kk + (j < 2 ? 2 * t + j : 8 + 2 * t + j - 2);
}
// A wgmma operand tile of 64 rows (keys, or query rows) × `dims` bf16, dims contiguous, 128-byte
// swizzle: atoms of 8 rows × 64 dims (1 KB), chunk c of a row stored at chunk c ^ (row % 8); the
// 8-row groups of an atom 1 KB apart (the descriptors' stride offset), the atoms along the dims
// 8 KB apart. V is read "MN-major" (dims are the product's N; the atoms' distance is the leading
// offset), Q and K "K-major" (dims are the product's K; a k-step of 16 dims is 32 bytes into an
// atom row). Byte offset of row `row`'s 16-byte chunk `chunk` (dims 8 chunk … 8 chunk + 7).
constexpr int kWgmmaAtomBytes = 1024, kWgmmaDimAtomBytes = 8 * kWgmmaAtomBytes;
ATTNCACHE_HOST_DEVICE inline int wgmma_tile_offset(int row, int chunk) {
  return chunk / 8 * kWgmmaDimAtomBytes + row / 8 * kWgmmaAtomBytes + row % 8 * 128 +
         ((chunk % 8) ^ (row % 8)) * 16;
}

// The 8 keys an ldmatrix gathers then lie 16 apart in pairs; in V tiles whose rows are padded
// to an odd number of 16-byte chunks they would share bank groups. V tiles for byte maps
// therefore store row key's 16-byte chunk c at chunk c ^ v_swizzle(key, chunks).
ATTNCACHE_HOST_DEVICE inline int v_swizzle(int key, int chunks_per_row) {
  return (2 * ((key / 16) % 4)) & (chunks_per_row - 1);
}

}  // namespace attncache::cuda
