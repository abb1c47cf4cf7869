// The attention kernels' incremental chunk addressing (kernels/cuda/tile_addressing.h) against
// the direct formulas it replaces, for every thread, chunk and key block of the shapes the
// kernels launch. Plain arithmetic: runs without a GPU.
#include "attncache/kernels/cuda/tile_addressing.h"

#include <gtest/gtest.h>

#include <vector>

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

// Byte maps: over the four k-steps of a key block, logical columns cover each of the 64 keys
// once, and lane (g, t)'s A fragment (columns 2t, 2t + 1, 2t + 8, 2t + 9) is the 4 bytes
// 16t + 4kk … 16t + 4kk + 3 it loaded, in that order.
TEST(TileAddressing, PermutedKeysCoverTheBlockAndMatchEachLanesBytes) {
  std::vector<int> seen(kTileRows, 0);
  for (int kk = 0; kk < 4; ++kk) {
    for (int k = 0; k < 16; ++k) ++seen[permuted_key(kk, k)];
    for (int t = 0; t < 4; ++t) {
      const int first = 16 * t + 4 * kk;
      EXPECT_EQ(permuted_key(kk, 2 * t), first);
      EXPECT_EQ(permuted_key(kk, 2 * t + 1), first + 1);
      EXPECT_EQ(permuted_key(kk, 2 * t + 8), first + 2);
      EXPECT_EQ(permuted_key(kk, 2 * t + 9), first + 3);
    }
  }
  for (int key = 0; key < kTileRows; ++key) EXPECT_EQ(seen[key], 1) << "key " << key;
}

// Each 8×8 matrix an ldmatrix gathers from a swizzled V tile (rows padded by one chunk) has its
// 8 rows in 8 different 16-byte bank groups, for head sizes 64 and 128 (smaller heads have too
// few chunks per row to spread them), and the swizzle keeps a row's chunks a permutation.
TEST(TileAddressing, SwizzledVRowsOfAnLdmatrixUseDistinctBankGroups) {
  for (int head : {16, 32, 64, 128}) {
    const int chunks = head / 8, row_chunks = chunks + 1;  // padded rows
    for (int key = 0; key < kTileRows; ++key) {
      std::vector<int> seen(chunks, 0);
      for (int c = 0; c < chunks; ++c) ++seen[c ^ v_swizzle(key, chunks)];
      for (int c = 0; c < chunks; ++c) ASSERT_EQ(seen[c], 1) << "head " << head << " key " << key;
    }
    if (head < 64) continue;
    for (int kk = 0; kk < 4; ++kk) {
      for (int half = 0; half < 2; ++half) {            // logical columns 0–7 or 8–15
        for (int chunk = 0; chunk < chunks; ++chunk) {  // the matrix's dimension chunk
          std::vector<int> groups(8, 0);
          for (int r = 0; r < 8; ++r) {
            const int key = permuted_key(kk, 8 * half + r);
            ++groups[(key * row_chunks + (chunk ^ v_swizzle(key, chunks))) % 8];
          }
          for (int g = 0; g < 8; ++g) {
            ASSERT_EQ(groups[g], 1) << "head " << head << " k-step " << kk << " chunk " << chunk;
          }
        }
      }
    }
  }
}

// permuted_row inverts permuted_key; the wgmma tile layout puts every 16-byte chunk of a 64-row
// tile (head sizes 64 and 128) at its own place inside the tile, 16-byte aligned.
TEST(TileAddressing, WgmmaRowsInvertThePermutationAndTheVLayoutIsABijection) {
  for (int key = 0; key < kTileRows; ++key) {
    const int row = permuted_row(key);
    ASSERT_EQ(permuted_key(row / 16, row % 16), key) << "key " << key;
  }
  for (int head : {64, 128}) {
    const int chunks = head / 8, bytes = kTileRows * head * 2;
    std::vector<int> seen(bytes / 16, 0);
    for (int row = 0; row < kTileRows; ++row) {
      for (int c = 0; c < chunks; ++c) {
        const int at = wgmma_tile_offset(row, c);
        ASSERT_EQ(at % 16, 0);
        ASSERT_LT(at, bytes) << "head " << head;
        ++seen[at / 16];
      }
    }
    for (int n : seen) ASSERT_EQ(n, 1) << "head " << head;
  }
}

}  // namespace
}  // namespace attncache::cuda
