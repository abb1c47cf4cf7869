// Stored map formats on the host (attncache/kernels/stored_maps.h): P4 rows against the layout
// the header documents, rows read back in every format, and the CPU attention kernel reusing P4
// maps as it reuses the fp32 maps they decode to.
#include "attncache/kernels/stored_maps.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <random>
#include <vector>

#include "attncache/kernels/cpu/attention.h"
#include "core/error.h"

namespace attncache {
namespace {

// `heads` causal maps of n tokens as packed lower triangles, each row a softmax of normal scores.
std::vector<float> random_causal_maps(int n, int heads, std::mt19937& rng) {
  std::normal_distribution<float> normal(0.0f, 2.5f);
  std::vector<float> maps;
  for (int h = 0; h < heads; ++h) {
    for (int i = 0; i < n; ++i) {
      std::vector<double> row(i + 1);
      double sum = 0;
      for (double& x : row) sum += x = std::exp(normal(rng));
      for (double x : row) maps.push_back(static_cast<float>(x / sum));
    }
  }
  return maps;
}

// Code of key k in row i of head h, read as the header documents it.
int documented_code(const std::vector<unsigned char>& layer, int n, int h, int i, int k) {
  size_t head_bytes = 0, row_at = 0;
  for (int j = 0; j < n; ++j) head_bytes += (j + 2) / 2;
  for (int j = 0; j < i; ++j) row_at += (j + 2) / 2;
  return (layer[h * head_bytes + row_at + k / 2] >> (4 * (k % 2))) & 15;
}

TEST(StoredMaps, P4RowsFollowTheDocumentedLayoutAndReadBackAsCodesSquaredOverTheirSum) {
  std::mt19937 rng(3);
  for (const int n : {1, 2, 7, 64, 131}) {
    const int heads = 3;
    const std::vector<float> maps = random_causal_maps(n, heads, rng);
    size_t head_bytes = 0;
    for (int j = 0; j < n; ++j) head_bytes += (j + 2) / 2;
    ASSERT_EQ(p4_layer_bytes(n, heads), heads * head_bytes);
    ASSERT_EQ(stored_layer_bytes(n, heads, true, core::DType::kP4), p4_layer_bytes(n, heads));
    std::vector<unsigned char> layer(p4_layer_bytes(n, heads), 0xCD);
    store_layer(core::DType::kP4, maps.data(), n, heads, true, layer.data());
    size_t at = 0;
    for (int h = 0; h < heads; ++h) {
      for (int i = 0; i < n; ++i) {
        const float* row = maps.data() + at;
        at += i + 1;
        const float m = *std::max_element(row, row + i + 1);
        std::vector<float> read(i + 1);
        stored_map_row(layer.data(), core::DType::kP4, n, true, h, i, i + 1, read.data());
        int squares = 0;
        for (int k = 0; k <= i; ++k) {
          const int q = documented_code(layer, n, h, i, k);
          EXPECT_LE(std::fabs(q - 15 * std::sqrt(double(row[k]) / m)), 0.5 + 1e-5)
              << n << " " << h << " " << i << " " << k;
          squares += q * q;
        }
        const float scale = 1.0f / static_cast<float>(squares);
        double sum = 0;
        for (int k = 0; k <= i; ++k) {
          const int q = documented_code(layer, n, h, i, k);
          EXPECT_EQ(read[k], static_cast<float>(q * q) * scale) << n << " " << i << " " << k;
          sum += read[k];
        }
        EXPECT_NEAR(sum, 1.0, 1e-5);
        // A row's odd last byte holds one code; its high nibble stays zero.
        if (i % 2 == 0) {
          size_t row_at = 0;
          for (int j = 0; j < i; ++j) row_at += (j + 2) / 2;
          EXPECT_EQ(layer[h * head_bytes + row_at + i / 2] >> 4, 0);
        }
        // A row's first values alone.
        std::vector<float> first(std::max(1, i / 2));
        stored_map_row(layer.data(), core::DType::kP4, n, true, h, i,
                       static_cast<int>(first.size()), first.data());
        EXPECT_TRUE(std::equal(first.begin(), first.end(), read.begin()));
        // The round trip of the row alone is what was stored.
        std::vector<float> trip(i + 1);
        stored_round_trip(core::DType::kP4, row, i + 1, trip.data());
        EXPECT_EQ(trip, read) << n << " " << h << " " << i;
      }
    }
  }
}

TEST(StoredMaps, ElementTypesReadBackAsTheirConversion) {
  std::mt19937 rng(4);
  const int n = 9, heads = 2;
  for (const bool causal : {false, true}) {
    std::vector<float> maps(heads * cpu::attention_map_size(n, causal));
    std::uniform_real_distribution<float> u(0.0f, 1.0f);
    for (float& x : maps) x = u(rng);
    for (const core::DType dtype : {core::DType::kF32, core::DType::kF16, core::DType::kBF16,
                                    core::DType::kP8, core::DType::kFP8}) {
      ASSERT_EQ(stored_layer_bytes(n, heads, causal, dtype), maps.size() * core::dtype_size(dtype));
      std::vector<std::byte> layer(stored_layer_bytes(n, heads, causal, dtype));
      store_layer(dtype, maps.data(), n, heads, causal, layer.data());
      std::vector<float> all(maps.size());
      core::convert_to_f32(dtype, layer.data(), all.size(), all.data());
      for (int h = 0; h < heads; ++h) {
        for (int i = 0; i < n; ++i) {
          const int len = causal ? i + 1 : n;
          const size_t at =
              h * cpu::attention_map_size(n, causal) + cpu::attention_map_row(n, i, causal);
          std::vector<float> row(len), trip(len);
          stored_map_row(layer.data(), dtype, n, causal, h, i, len, row.data());
          EXPECT_TRUE(std::equal(row.begin(), row.end(), all.begin() + at))
              << core::dtype_name(dtype) << " " << h << " " << i;
          stored_round_trip(dtype, maps.data() + at, len, trip.data());
          EXPECT_EQ(trip, row);
        }
      }
    }
  }
}

TEST(StoredMaps, P4IsRefusedForBidirectionalMaps) {
  EXPECT_THROW(stored_layer_bytes(8, 2, false, core::DType::kP4), core::Error);
  float out[8];
  std::vector<unsigned char> layer(64);
  EXPECT_THROW(stored_map_row(layer.data(), core::DType::kP4, 8, false, 0, 0, 8, out), core::Error);
  std::vector<float> qkv(8 * 3 * 16), ctx(8 * 16);
  cpu::AttentionSeq seq;
  seq.length = 8;
  seq.stored = layer.data();
  seq.stored_dtype = core::DType::kP4;
  cpu::AttentionShape shape{1, 1, 16, false};
  try {
    cpu::attention(qkv.data(), ctx.data(), &seq, 1, shape);
    ADD_FAILURE() << "bidirectional P4 maps were accepted";
  } catch (const core::Error& e) {
    EXPECT_EQ(e.kind(), core::ErrorKind::kBadInput);
  }
}

// Grouped-query causal attention reusing P4 maps for some heads gives, bit for bit, what it
// gives reusing the fp32 maps they decode to.
TEST(StoredMaps, CpuAttentionReusesP4AsTheMapsTheyDecodeTo) {
  std::mt19937 rng(8);
  const int heads = 4, kv_heads = 2, dh = 32;
  const cpu::AttentionShape shape{heads, kv_heads, dh, true};
  const std::vector<int> lengths = {5, 70};
  int tokens = 0;
  for (int n : lengths) tokens += n;
  std::normal_distribution<float> normal(0.0f, 1.0f);
  std::vector<float> qkv(static_cast<size_t>(tokens) * shape.qkv_width());
  for (float& x : qkv) x = normal(rng);
  std::vector<std::vector<unsigned char>> p4(lengths.size());
  std::vector<std::vector<float>> decoded(lengths.size());
  std::vector<cpu::AttentionSeq> with_p4(lengths.size()), with_f32(lengths.size());
  int offset = 0;
  for (size_t s = 0; s < lengths.size(); ++s) {
    const int n = lengths[s];
    const std::vector<float> maps = random_causal_maps(n, heads, rng);
    p4[s].resize(p4_layer_bytes(n, heads));
    store_layer(core::DType::kP4, maps.data(), n, heads, true, p4[s].data());
    decoded[s].resize(maps.size());
    for (int h = 0; h < heads; ++h) {
      for (int i = 0; i < n; ++i) {
        stored_map_row(p4[s].data(), core::DType::kP4, n, true, h, i, i + 1,
                       decoded[s].data() + h * cpu::attention_map_size(n, true) +
                           cpu::attention_map_row(n, i, true));
      }
    }
    for (auto* seq : {&with_p4[s], &with_f32[s]}) {
      seq->offset = offset;
      seq->length = n;
      seq->stored_heads = 0b1011;  // head 2 computes its own
    }
    with_p4[s].stored = p4[s].data();
    with_p4[s].stored_dtype = core::DType::kP4;
    with_f32[s].stored = decoded[s].data();
    with_f32[s].stored_dtype = core::DType::kF32;
    offset += n;
  }
  std::vector<float> ctx_p4(static_cast<size_t>(tokens) * heads * dh), ctx_f32(ctx_p4.size());
  cpu::attention(qkv.data(), ctx_p4.data(), with_p4.data(), 2, shape);
  cpu::attention(qkv.data(), ctx_f32.data(), with_f32.data(), 2, shape);
  EXPECT_EQ(ctx_p4, ctx_f32);
}

}  // namespace
}  // namespace attncache
