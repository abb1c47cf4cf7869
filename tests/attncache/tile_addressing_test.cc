// The attention kernels' incremental chunk addressing (kernels/cuda/tile_addressing.h) against
// the direct formulas it replaces, for every thread, chunk and key block of the shapes the
// kernels launch. Plain arithmetic: runs without a GPU.
#include "attncache/kernels/cuda/tile_addressing.h"

#include <gtest/gtest.h>

namespace attncache::cuda {
namespace {

constexpr int kThreads = 128;

// Chunk i = thread + j · threads of a tile with `chunks_per_row` chunks per row.
TEST(TileAddressing, AThreadsChunksAreEveryThreadsthChunkOfTheTile) {
  for (int values_per_chunk : {8, 16}) {
    for (int chunks_per_row : {1, 2, 4, 8, 16}) {
      for (int t = 0; t < kThreads; ++t) {
        const ChunkLane lane = chunk_lane(t, kThreads, chunks_per_row, values_per_chunk);
        for (int j = 0; j < 8; ++j) {
          const int i = t + j * kThreads;
          ASSERT_EQ(lane.row + j * lane.rows_per_pass, i / chunks_per_row);
          ASSERT_EQ(lane.col, (i % chunks_per_row) * values_per_chunk);
        }
      }
    }
  }
}

// Causal maps: row r of a query block at q0, key block kb, column c lies at
// tile_offset(q0 / 64 + r / 64, kb) + (r % 64) · 64 + c within the head.
TEST(TileAddressing, CausalChunkOffsetsEqualTheBlockTriangleFormula) {
  for (int values_per_chunk : {8, 16}) {  // bf16 and one-byte maps
    const int chunks_per_row = kTileRows / values_per_chunk;
    for (int rows : {64, 128}) {  // query rows per CTA
      for (int q0 = 0; q0 < 40 * 64; q0 += rows) {
        const int row_blocks_before = q0 / kTileRows;
        for (int t = 0; t < kThreads; ++t) {
          const ChunkLane lane = chunk_lane(t, kThreads, chunks_per_row, values_per_chunk);
          for (int past = 0; past < rows; past += lane.rows_per_pass) {
            const int r = lane.row + past, m = past / kTileRows;
            ASSERT_EQ(r / kTileRows, m);  // a chunk stays in its 64-row slice
            const int rb = row_blocks_before + m;
            for (int kb = 0; kb <= rb; ++kb) {
              const size_t direct =
                  tile_offset(rb, kb) + static_cast<size_t>(r % kTileRows) * kTileRows + lane.col;
              ASSERT_EQ(causal_chunk_offset(causal_slice_start(q0, m, lane), past % kTileRows, kb),
                        direct)
                  << "q0 " << q0 << " thread " << t << " row " << r << " key block " << kb;
            }
          }
        }
      }
    }
  }
}

TEST(TileAddressing, TileOffsetsFollowTheBlockTriangle) {
  size_t expected = 0;
  for (int rb = 0; rb < 300; ++rb) {
    for (int kb = 0; kb <= rb; ++kb) {
      ASSERT_EQ(tile_offset(rb, kb), expected);
      expected += kTileRows * kTileRows;
    }
  }
}

}  // namespace
}  // namespace attncache::cuda
