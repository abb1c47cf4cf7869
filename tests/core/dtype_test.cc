#include "core/dtype.h"

#include <gtest/gtest.h>

#include <cmath>
#include <fstream>
#include <limits>
#include <nlohmann/json.hpp>
#include <vector>

#include "core/error.h"
#include "support/test_paths.h"

namespace core {
namespace {

TEST(DType, Float16DecodesNormalSubnormalAndSpecialValues) {
  EXPECT_EQ(f16_to_f32(0x3C00), 1.0f);
  EXPECT_EQ(f16_to_f32(0xC000), -2.0f);
  EXPECT_EQ(f16_to_f32(0x7BFF), 65504.0f);
  EXPECT_EQ(f16_to_f32(0x0001), std::ldexp(1.0f, -24));
  EXPECT_EQ(f16_to_f32(0x03FF), std::ldexp(1023.0f, -24));
  EXPECT_EQ(f16_to_f32(0x3555), 0.333251953125f);
  EXPECT_TRUE(std::signbit(f16_to_f32(0x8000)));
  EXPECT_EQ(f16_to_f32(0x7C00), std::numeric_limits<float>::infinity());
  EXPECT_TRUE(std::isnan(f16_to_f32(0x7E00)));
}

TEST(DType, BFloat16IsTheHighHalfOfFloat32) {
  EXPECT_EQ(bf16_to_f32(0x3F80), 1.0f);
  EXPECT_EQ(bf16_to_f32(0xC0A0), -5.0f);
  EXPECT_EQ(bf16_to_f32(0x3EAB), 0.333984375f);
}

TEST(DType, ConvertsUnalignedBuffers) {
  unsigned char bytes[5] = {0xFF, 0x00, 0x3C, 0x00, 0xC0};  // two fp16 values at offset 1
  float out[2];
  convert_to_f32(DType::kF16, bytes + 1, 2, out);
  EXPECT_EQ(out[0], 1.0f);
  EXPECT_EQ(out[1], -2.0f);
  EXPECT_THROW(convert_to_f32(DType::kI64, bytes, 0, out), Error);
  EXPECT_EQ(dtype_size(DType::kBF16), 2u);
}

TEST(DType, Float16EncodingRoundsToNearestEvenAndRoundTrips) {
  // Every finite half survives f16 → f32 → f16, through the vector and the scalar paths.
  std::vector<uint16_t> halves;
  std::vector<float> floats;
  for (uint32_t bits = 0; bits < 0x10000; ++bits) {
    if (((bits >> 10) & 0x1f) == 0x1f) continue;  // inf / nan
    halves.push_back(static_cast<uint16_t>(bits));
    floats.push_back(f16_to_f32(static_cast<uint16_t>(bits)));
  }
  std::vector<uint16_t> back(halves.size());
  convert_from_f32(DType::kF16, floats.data(), floats.size(), back.data());
  EXPECT_EQ(back, halves);
  for (size_t i = 0; i < halves.size(); i += 97) EXPECT_EQ(f32_to_f16(floats[i]), halves[i]);
  // Ties go to even: 1 + 2^-11 lies halfway between 1 and the next half.
  EXPECT_EQ(f32_to_f16(1.0f + 0.00048828125f), 0x3c00);
  EXPECT_EQ(f32_to_f16(1.0f + 3 * 0.00048828125f), 0x3c02);
  EXPECT_EQ(f32_to_f16(1e6f), 0x7c00);
}

TEST(DType, P8StoresProbabilitiesWithSquareRootCompanding) {
  std::vector<float> p = {0.0f, 1.0f, 0.25f, 1e-4f, 0.01f, 0.5f, -0.1f, 1.5f};
  std::vector<uint8_t> q(p.size());
  convert_from_f32(DType::kP8, p.data(), p.size(), q.data());
  EXPECT_EQ(q[0], 0);
  EXPECT_EQ(q[1], 255);
  EXPECT_EQ(q[6], 0);    // clamped
  EXPECT_EQ(q[7], 255);  // clamped
  std::vector<float> back(p.size());
  convert_to_f32(DType::kP8, q.data(), q.size(), back.data());
  for (size_t i = 0; i < 6; ++i) {
    // Half a step in √p: |Δp| ≤ (√p + 1/510)/255.
    EXPECT_NEAR(back[i], p[i], (std::sqrt(p[i]) + 1.0 / 510) / 255) << p[i];
  }
  EXPECT_EQ(dtype_size(DType::kP8), 1u);
}

// Golden values from PyTorch's float8_e4m3fn (tests/data/fp8/make_golden.py).
TEST(DType, E4M3MatchesPyTorch) {
  std::ifstream in(testing_paths::data_dir() + "/fp8/e4m3_golden.json");
  ASSERT_TRUE(in) << "tests/data/fp8/e4m3_golden.json";
  const nlohmann::json golden = nlohmann::json::parse(in);
  const auto& decoded = golden["decoded"];
  ASSERT_EQ(decoded.size(), 256u);
  for (int b = 0; b < 256; ++b) {
    const float got = e4m3_to_f32(static_cast<uint8_t>(b));
    if (decoded[b].is_null()) {
      EXPECT_TRUE(std::isnan(got)) << b;
    } else {
      EXPECT_EQ(got, decoded[b].get<float>()) << b;
    }
  }
  const auto& values = golden["values"];
  const auto& codes = golden["codes"];
  ASSERT_EQ(values.size(), codes.size());
  ASSERT_GT(values.size(), 400u);
  for (size_t i = 0; i < values.size(); ++i) {
    const float v = values[i].get<float>();
    EXPECT_EQ(f32_to_e4m3(v), codes[i].get<int>()) << v;
  }
  // Past the largest finite value we saturate (PyTorch gives NaN; CUDA's SATFINITE saturates).
  EXPECT_EQ(f32_to_e4m3(448.0f), 0x7e);
  EXPECT_EQ(f32_to_e4m3(1e9f), 0x7e);
  EXPECT_EQ(f32_to_e4m3(-1e9f), 0xfe);
  EXPECT_EQ(f32_to_e4m3(std::numeric_limits<float>::quiet_NaN()), 0x7f);
}

TEST(DType, FP8StoresProbabilitiesScaledBy256) {
  const std::vector<float> p = {0.0f, 1.0f, 0.5f, 0.3f, 1e-3f, 1e-4f, 2e-5f, 1e-7f};
  std::vector<uint8_t> q(p.size());
  convert_from_f32(DType::kFP8, p.data(), p.size(), q.data());
  std::vector<float> back(p.size());
  convert_to_f32(DType::kFP8, q.data(), q.size(), back.data());
  EXPECT_EQ(back[0], 0.0f);
  EXPECT_EQ(back[1], 1.0f);
  EXPECT_EQ(back[2], 0.5f);
  for (size_t i = 3; i < 6; ++i) EXPECT_NEAR(back[i], p[i], p[i] / 16) << p[i];  // normal: 3 bits
  EXPECT_NEAR(back[6], p[6], std::ldexp(1.0f, -18));  // subnormal: steps of 2^-17
  EXPECT_EQ(back[7], 0.0f);                           // below half the smallest step
  EXPECT_EQ(dtype_size(DType::kFP8), 1u);
  EXPECT_EQ(dtype_name(DType::kFP8), "FP8");
}

}  // namespace
}  // namespace core
