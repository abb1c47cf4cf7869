// P4 maps (4-bit codes relative to each row's largest probability, one fp32 scale per row; causal
// block triangles only, attncache/kernels/cuda/attention.h): the host encoder against the
// layout the header documents (no device needed), the device encoders (from bf16, P8 and FP8
// block triangles, and from the map database's P4 rows) against the host's, the
// reuse kernels (64 and 128 query rows, grouped, mma.sync and wgmma head sizes) against the
// decoded maps times V computed here, and a decoder reusing its own maps in P4. Every test that
// needs a GPU skips without one.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <random>
#include <string>
#include <utility>
#include <vector>

#include "attncache/kernels/cuda/attention.h"
#include "attncache/kernels/cuda/check.h"
#include "attncache/kernels/cuda/runtime.h"
#include "attncache/kernels/stored_maps.h"
#include "attncache/model/cuda_forward.h"
#include "core/dtype.h"
#include "core/error.h"

namespace attncache {
namespace {

#define SKIP_WITHOUT_GPU() \
  if (cuda::device_count() == 0) GTEST_SKIP() << "no CUDA device"

constexpr int kTile = 64;

// `heads` causal maps of n tokens as packed lower triangles: each row a softmax of normal scores
// (spread `spread`), rounded to bf16 (what the GPU records), so host and device encode the same
// values.
std::vector<float> random_maps(int n, int heads, float spread, std::mt19937& rng) {
  std::normal_distribution<float> normal(0.0f, spread);
  std::vector<float> maps;
  for (int h = 0; h < heads; ++h) {
    for (int i = 0; i < n; ++i) {
      std::vector<float> row(i + 1);
      for (float& x : row) x = normal(rng);
      const float top = *std::max_element(row.begin(), row.end());
      double sum = 0;
      for (float& x : row) sum += x = std::exp(x - top);
      for (float& x : row) {
        maps.push_back(core::bf16_to_f32(core::f32_to_bf16(static_cast<float>(x / sum))));
      }
    }
  }
  return maps;
}

// Head h's code of row i, key k, and the row's scale, read by the layout attention.h documents.
int code(const std::vector<unsigned char>& p4, int n, int h, int i, int k) {
  const size_t rows = (n + kTile - 1) / kTile, tiles = rows * (rows + 1) / 2;
  const size_t tile = static_cast<size_t>(i / kTile) * (i / kTile + 1) / 2 + k / kTile;
  const size_t row_start = (h * tiles + tile) * kTile * kTile / 2 + (i % kTile) * kTile / 2;
  const int kk = k % kTile;
  return (p4[row_start + 2 * (kk / 4) + (kk & 1)] >> (4 * ((kk >> 1) & 1))) & 15;
}
float row_scale(const std::vector<unsigned char>& p4, int n, int heads, int h, int i) {
  const size_t rows = (n + kTile - 1) / kTile, tiles = rows * (rows + 1) / 2;
  float scale;
  std::memcpy(&scale, &p4[heads * tiles * kTile * kTile / 2 + 4 * (h * rows * kTile + i)], 4);
  return scale;
}
// The decoded probability: q² · scale.
double decoded(const std::vector<unsigned char>& p4, int n, int heads, int h, int i, int k) {
  const int q = code(p4, n, h, i, k);
  return double(q) * q * row_scale(p4, n, heads, h, i);
}

// The host encoder: every code is 15·√(p / m) rounded to nearest (m the row's largest), the
// row's scale 1 / Σ q² (so the decoded row sums to 1), codes above the diagonal and rows past
// n are zero, and the bytes are p4_map_bytes.
TEST(P4Maps, HostEncoderFollowsTheDocumentedLayout) {
  std::mt19937 rng(5);
  for (const int n : {1, 63, 64, 65, 200}) {
    const int heads = 3;
    const std::vector<float> maps = random_maps(n, heads, 2.0f, rng);
    const size_t rows = (n + kTile - 1) / kTile, tiles = rows * (rows + 1) / 2;
    ASSERT_EQ(cuda::p4_map_bytes(n, heads),
              heads * tiles * kTile * kTile / 2 + heads * rows * kTile * sizeof(float));
    std::vector<unsigned char> p4(cuda::p4_map_bytes(n, heads), 0xAB);
    cuda::causal_maps_to_p4(maps.data(), n, heads, p4.data());
    size_t at = 0;
    for (int h = 0; h < heads; ++h) {
      for (int i = 0; i < n; ++i) {
        const float* row = maps.data() + at;
        at += i + 1;
        const float m = *std::max_element(row, row + i + 1);
        int squares = 0;
        double sum = 0;
        for (int k = 0; k <= i; ++k) {
          const int q = code(p4, n, h, i, k);
          EXPECT_LE(std::fabs(q - 15 * std::sqrt(double(row[k]) / m)), 0.5 + 1e-5)
              << n << " " << h << " " << i << " " << k;
          squares += q * q;
          sum += decoded(p4, n, heads, h, i, k);
        }
        EXPECT_EQ(row_scale(p4, n, heads, h, i), 1.0f / static_cast<float>(squares));
        EXPECT_NEAR(sum, 1.0, 1e-5) << n << " " << h << " " << i;
        for (int k = i + 1; k < static_cast<int>(rows) * kTile; ++k) {
          if (k / kTile <= i / kTile) {
            EXPECT_EQ(decoded(p4, n, heads, h, i, k), 0.0) << n << " " << k;
          }
        }
      }
      for (int i = n; i < static_cast<int>(rows) * kTile; ++i) {
        EXPECT_EQ(decoded(p4, n, heads, h, i, 0), 0.0) << "row past n";
      }
    }
  }
}

// maps_to_p4 on bf16, P8 and FP8 block triangles gives the host encoder's bytes for the values
// they decode to.
TEST(P4Maps, DeviceEncoderGivesTheHostEncodersBytes) {
  SKIP_WITHOUT_GPU();
  std::mt19937 rng(6);
  const std::pair<core::DType, cuda::MapFormat> formats[] = {
      {core::DType::kBF16, cuda::MapFormat::kBF16},
      {core::DType::kP8, cuda::MapFormat::kP8},
      {core::DType::kFP8, cuda::MapFormat::kFP8}};
  for (const int n : {1, 64, 65, 300}) {
    const int heads = 4;
    const std::vector<float> maps = random_maps(n, heads, 3.0f, rng);
    const size_t head_values = cuda::causal_map_elements(n);
    const size_t packed = static_cast<size_t>(n) * (n + 1) / 2;
    for (const auto& [dtype, format] : formats) {
      const int bytes = static_cast<int>(core::dtype_size(dtype));
      std::vector<unsigned char> stored(maps.size() * bytes), tiles(heads * head_values * bytes);
      core::convert_from_f32(dtype, maps.data(), maps.size(), stored.data());
      for (int h = 0; h < heads; ++h) {
        cuda::causal_map_to_tiles(stored.data() + h * packed * bytes, n, bytes,
                                  tiles.data() + h * head_values * bytes);
      }
      std::vector<float> decoded(maps.size());
      core::convert_to_f32(dtype, stored.data(), stored.size() / bytes, decoded.data());
      std::vector<unsigned char> host(cuda::p4_map_bytes(n, heads));
      cuda::causal_maps_to_p4(decoded.data(), n, heads, host.data());
      cuda::DeviceBuffer d_tiles(tiles.size(), "test maps"), d_p4(host.size(), "test P4");
      d_tiles.upload(tiles.data(), tiles.size());
      cuda::maps_to_p4(d_tiles.data(), format, n, heads, d_p4.data(), nullptr);
      cuda::check(cudaDeviceSynchronize(), "maps_to_p4");
      std::vector<unsigned char> device(host.size());
      d_p4.download(device.data(), device.size());
      EXPECT_EQ(device, host) << n << " " << core::dtype_name(dtype);
    }
  }
}

// P4 rows (the map database's layout) become P4 block triangles on the device exactly as on the
// host, and those are the host encoder's bytes for the same maps.
TEST(P4Maps, RowsBecomeTheHostEncodersTilesOnTheDevice) {
  SKIP_WITHOUT_GPU();
  std::mt19937 rng(9);
  for (const int n : {1, 2, 63, 64, 65, 257}) {
    const int heads = 3;
    const std::vector<float> maps = random_maps(n, heads, 2.5f, rng);
    std::vector<unsigned char> rows(p4_layer_bytes(n, heads));
    store_layer(core::DType::kP4, maps.data(), n, heads, true, rows.data());
    std::vector<unsigned char> host(cuda::p4_map_bytes(n, heads), 0xEE);
    cuda::causal_maps_to_p4(maps.data(), n, heads, host.data());
    cuda::DeviceBuffer d_rows(rows.size(), "test P4 rows"), d_p4(host.size(), "test P4");
    d_rows.upload(rows.data(), rows.size());
    cuda::check(cudaMemset(d_p4.data(), 0xEE, host.size()), "cudaMemset");
    cuda::p4_rows_to_tiles(d_rows.data(), n, heads, d_p4.data(), nullptr);
    cuda::check(cudaDeviceSynchronize(), "p4_rows_to_tiles");
    std::vector<unsigned char> device(host.size());
    d_p4.download(device.data(), device.size());
    EXPECT_EQ(device, host) << n;
  }
}

// The reuse kernels on P4 maps compute the decoded maps times V: head sizes 32 (mma.sync) and
// 64 and 128 (wgmma where the image has it); 64-row blocks, 128-row blocks, and the grouped
// kernel (one CTA per unit and persistent) where it applies.
TEST(P4Maps, ReuseKernelsMultiplyTheDecodedMapsByV) {
  SKIP_WITHOUT_GPU();
  const bool wgmma = cuda::attention_uses_wgmma();
  const std::vector<int> lengths = {1, 70, 129, 200};
  const int heads = 4, kv_heads = 2;
  for (const int head_dim : {32, 64, 128}) {
    std::mt19937 rng(head_dim);
    const int width = (heads + 2 * kv_heads) * head_dim;
    int total = 0;
    std::vector<int> offsets, items, wide;
    for (size_t s = 0; s < lengths.size(); ++s) {
      offsets.push_back(total);
      total += lengths[s];
    }
    // Longest query blocks first, as the decoder orders them.
    for (int q = 3; q >= 0; --q) {
      for (size_t s = 0; s < lengths.size(); ++s) {
        if (q * 64 < lengths[s]) items.insert(items.end(), {int(s), q});
        if (q * 128 < lengths[s]) wide.insert(wide.end(), {int(s), q});
      }
    }
    std::normal_distribution<float> normal(0.0f, 1.0f);
    std::vector<uint16_t> qkv(static_cast<size_t>(total) * width);
    for (uint16_t& x : qkv) x = core::f32_to_bf16(normal(rng));
    std::vector<std::vector<unsigned char>> p4(lengths.size());
    size_t p4_total = 0;
    std::vector<size_t> p4_offset;
    for (size_t s = 0; s < lengths.size(); ++s) {
      const std::vector<float> maps = random_maps(lengths[s], heads, 2.0f, rng);
      p4[s].resize(cuda::p4_map_bytes(lengths[s], heads));
      cuda::causal_maps_to_p4(maps.data(), lengths[s], heads, p4[s].data());
      p4_offset.push_back(p4_total);
      p4_total += (p4[s].size() + 255) / 256 * 256;
    }
    // ctx[t][h][d] = Σ_k P'[h][i][k] · V[k][kv(h)][d], from the decoded codes.
    std::vector<double> want(static_cast<size_t>(total) * heads * head_dim, 0.0);
    double largest = 0;
    for (size_t s = 0; s < lengths.size(); ++s) {
      const int n = lengths[s];
      for (int h = 0; h < heads; ++h) {
        const int v_col = (heads + kv_heads + h / (heads / kv_heads)) * head_dim;
        for (int i = 0; i < n; ++i) {
          double* out = &want[(static_cast<size_t>(offsets[s] + i) * heads + h) * head_dim];
          for (int k = 0; k <= i; ++k) {
            const double p = decoded(p4[s], n, heads, h, i, k);
            const uint16_t* v = &qkv[static_cast<size_t>(offsets[s] + k) * width + v_col];
            for (int d = 0; d < head_dim; ++d) out[d] += p * core::bf16_to_f32(v[d]);
          }
          for (int d = 0; d < head_dim; ++d) largest = std::max(largest, std::fabs(out[d]));
        }
      }
    }
    auto upload = [](const void* data, size_t bytes) {
      cuda::DeviceBuffer b(bytes, "test input");
      b.upload(data, bytes);
      return b;
    };
    const cuda::DeviceBuffer d_qkv = upload(qkv.data(), qkv.size() * 2);
    const cuda::DeviceBuffer d_off = upload(offsets.data(), offsets.size() * 4);
    const cuda::DeviceBuffer d_len = upload(lengths.data(), lengths.size() * 4);
    const cuda::DeviceBuffer d_items = upload(items.data(), items.size() * 4);
    const cuda::DeviceBuffer d_wide = upload(wide.data(), wide.size() * 4);
    cuda::DeviceBuffer d_maps(p4_total, "test P4 maps");
    std::vector<cuda::DeviceMapSlot> slots(lengths.size());
    for (size_t s = 0; s < lengths.size(); ++s) {
      void* at = static_cast<char*>(d_maps.data()) + p4_offset[s];
      cuda::check(cudaMemcpy(at, p4[s].data(), p4[s].size(), cudaMemcpyHostToDevice), "upload");
      slots[s].stored = at;
      slots[s].format = cuda::MapFormat::kP4;
    }
    const cuda::DeviceBuffer d_slots =
        upload(slots.data(), slots.size() * sizeof(cuda::DeviceMapSlot));
    const size_t ctx_bytes = want.size() * 2;
    cuda::DeviceBuffer ctx(ctx_bytes, "ctx");
    cuda::AttentionArgs args;
    args.qkv = d_qkv.data();
    args.ctx = ctx.data();
    args.seq_offset = d_off.as<int>();
    args.seq_len = d_len.as<int>();
    args.items = d_items.as<int>();
    args.num_items = static_cast<int>(items.size() / 2);
    args.num_heads = heads;
    args.num_kv_heads = kv_heads;
    args.head_dim = head_dim;
    args.causal = true;
    args.maps = d_slots.as<cuda::DeviceMapSlot>();
    auto check = [&](const std::string& how) {
      cuda::check(cudaMemset(ctx.data(), 0xff, ctx_bytes), "cudaMemset");
      cuda::attention_reuse(args, cuda::MapFormat::kP4, nullptr);
      std::vector<uint16_t> got(want.size());
      ctx.download(got.data(), ctx_bytes);
      size_t bad = 0;
      double worst = 0;
      for (size_t i = 0; i < want.size(); ++i) {
        const double err = std::fabs(core::bf16_to_f32(got[i]) - want[i]);
        worst = std::max(worst, err / largest);
        bad += !(err <= 0.01 * std::fabs(want[i]) + 2e-3 * largest);
      }
      EXPECT_EQ(bad, 0u) << how << ", head size " << head_dim << ": worst error " << worst
                         << " of the largest output";
    };
    check("64-row blocks");
    args.wide_items = d_wide.as<int>();
    args.num_wide_items = static_cast<int>(wide.size() / 2);
    check("128-row blocks");
    args.wide_items = nullptr;
    args.num_wide_items = 0;
    if (wgmma && head_dim != 32) {
      args.group_heads = true;
      ASSERT_EQ(cuda::reuse_heads_per_cta(args), 2);
      check("grouped, one CTA per unit");
      args.grouped_ctas = 3;
      args.grouped_band_items = cuda::grouped_four_bands(args.num_items);
      check("grouped, 3 persistent CTAs, four bands");
      args.group_heads = false;
      args.grouped_ctas = 0;
      args.grouped_band_items = 0;
    }
  }
}

// A plan of P4 maps passes the decoder's check and is bad input for the encoder, before anything
// runs (no device needed).
TEST(P4Maps, OnlyADecodersPlanMayHoldThem) {
  alignas(16) static const unsigned char maps[16] = {};
  DeviceMapPlan plan;
  plan.slots.push_back({maps, nullptr, ~0ull, core::DType::kP4});
  EXPECT_NO_THROW(cuda_forward::check_map_plan(plan, 1, 1, /*causal=*/true));
  try {
    cuda_forward::check_map_plan(plan, 1, 1, /*causal=*/false);
    FAIL() << "no error";
  } catch (const core::Error& e) {
    EXPECT_EQ(e.kind(), core::ErrorKind::kBadInput);
    EXPECT_NE(std::string(e.what()).find("encoder reuses BF16, P8 or FP8 maps, not P4"),
              std::string::npos)
        << e.what();
  }
}

// Bidirectional attention has no P4 maps: a clear error, nothing launched.
TEST(P4Maps, BidirectionalReuseIsRefused) {
  SKIP_WITHOUT_GPU();
  cuda::AttentionArgs args;
  const int items[2] = {0, 0};
  cuda::DeviceMapSlot slot;
  args.items = items;
  args.num_items = 1;
  args.num_heads = 2;
  args.head_dim = 64;
  args.maps = &slot;
  try {
    cuda::attention_reuse(args, cuda::MapFormat::kP4, nullptr);
    FAIL() << "no error";
  } catch (const std::exception& e) {
    EXPECT_NE(std::string(e.what()).find("causal"), std::string::npos) << e.what();
  }
}

}  // namespace
}  // namespace attncache
