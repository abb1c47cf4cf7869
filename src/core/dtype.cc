#include "core/dtype.h"

#include <immintrin.h>

#include <algorithm>
#include <array>
#include <cmath>
#include <limits>

#include "core/error.h"

namespace core {

size_t dtype_size(DType dtype) {
  switch (dtype) {
    case DType::kF32:
    case DType::kI32:
      return 4;
    case DType::kF16:
    case DType::kBF16:
      return 2;
    case DType::kI64:
      return 8;
    case DType::kP8:
    case DType::kFP8:
      return 1;
    case DType::kP4:
      return 0;
  }
  return 0;
}

std::string_view dtype_name(DType dtype) {
  switch (dtype) {
    case DType::kF32:
      return "F32";
    case DType::kF16:
      return "F16";
    case DType::kBF16:
      return "BF16";
    case DType::kI64:
      return "I64";
    case DType::kI32:
      return "I32";
    case DType::kP8:
      return "P8";
    case DType::kFP8:
      return "FP8";
    case DType::kP4:
      return "P4";
  }
  return "?";
}

namespace {

// The hardware conversion (F16C, 8 halves per instruction): stored attention maps are fp16 and
// are converted on every cache hit, where the scalar bit-twiddling above cost as much as P·V.
__attribute__((target("avx,f16c"))) size_t f16_to_f32_f16c(const unsigned char* src, size_t count,
                                                           float* dst) {
  size_t i = 0;
  for (; i + 8 <= count; i += 8) {
    const __m128i h = _mm_loadu_si128(reinterpret_cast<const __m128i*>(src + 2 * i));
    _mm256_storeu_ps(dst + i, _mm256_cvtph_ps(h));
  }
  return i;
}

__attribute__((target("avx,f16c"))) size_t f32_to_f16_f16c(const float* src, size_t count,
                                                           unsigned char* dst) {
  size_t i = 0;
  for (; i + 8 <= count; i += 8) {
    const __m128i h = _mm256_cvtps_ph(_mm256_loadu_ps(src + i), _MM_FROUND_TO_NEAREST_INT);
    _mm_storeu_si128(reinterpret_cast<__m128i*>(dst + 2 * i), h);
  }
  return i;
}

const bool kHasF16C = __builtin_cpu_supports("f16c");

bool is_float(DType dtype) { return dtype != DType::kI64 && dtype != DType::kI32; }

// convert(first, n) over [0, count): at once for small counts, else in chunks on the OpenMP
// threads (a model's weights are gigabytes; the fresh pages they land in fault in parallel too).
template <typename Convert>
void in_chunks(size_t count, Convert convert) {
  constexpr size_t kChunk = size_t{1} << 16, kParallelMin = size_t{1} << 20;
  if (count < kParallelMin) return convert(0, count);
  const int64_t chunks = static_cast<int64_t>((count + kChunk - 1) / kChunk);
#pragma omp parallel for schedule(static)
  for (int64_t c = 0; c < chunks; ++c) {
    const size_t first = static_cast<size_t>(c) * kChunk;
    convert(first, std::min(kChunk, count - first));
  }
}

void convert_to_f32_serial(DType dtype, const void* src, size_t count, float* dst) {
  const auto* bytes = static_cast<const unsigned char*>(src);
  switch (dtype) {
    case DType::kF32:
      std::memcpy(dst, src, count * sizeof(float));
      return;
    case DType::kF16:
      for (size_t i = kHasF16C ? f16_to_f32_f16c(bytes, count, dst) : 0; i < count; ++i) {
        uint16_t bits;
        std::memcpy(&bits, bytes + 2 * i, 2);
        dst[i] = f16_to_f32(bits);
      }
      return;
    case DType::kBF16:
      for (size_t i = 0; i < count; ++i) {
        uint16_t bits;
        std::memcpy(&bits, bytes + 2 * i, 2);
        dst[i] = bf16_to_f32(bits);
      }
      return;
    case DType::kP8:
      for (size_t i = 0; i < count; ++i) {
        const float r = static_cast<float>(bytes[i]) * (1.0f / 255.0f);
        dst[i] = r * r;
      }
      return;
    case DType::kFP8: {
      static const auto table = [] {
        std::array<float, 256> t{};
        for (int b = 0; b < 256; ++b) t[b] = e4m3_to_f32(static_cast<uint8_t>(b)) / kFP8Scale;
        return t;
      }();
      for (size_t i = 0; i < count; ++i) dst[i] = table[bytes[i]];
      return;
    }
    case DType::kI64:
    case DType::kI32:
    case DType::kP4:
      break;
  }
}

void convert_from_f32_serial(DType dtype, const float* src, size_t count, void* dst) {
  auto* bytes = static_cast<unsigned char*>(dst);
  switch (dtype) {
    case DType::kF32:
      std::memcpy(dst, src, count * sizeof(float));
      return;
    case DType::kF16:
      for (size_t i = kHasF16C ? f32_to_f16_f16c(src, count, bytes) : 0; i < count; ++i) {
        const uint16_t bits = f32_to_f16(src[i]);
        std::memcpy(bytes + 2 * i, &bits, 2);
      }
      return;
    case DType::kBF16:
      for (size_t i = 0; i < count; ++i) {
        const uint16_t bits = f32_to_bf16(src[i]);
        std::memcpy(bytes + 2 * i, &bits, 2);
      }
      return;
    case DType::kP8:
      for (size_t i = 0; i < count; ++i) {
        const float p = std::clamp(src[i], 0.0f, 1.0f);
        bytes[i] = static_cast<unsigned char>(std::nearbyint(std::sqrt(p) * 255.0f));
      }
      return;
    case DType::kFP8:
      for (size_t i = 0; i < count; ++i) bytes[i] = f32_to_e4m3(src[i] * kFP8Scale);
      return;
    case DType::kI64:
    case DType::kI32:
    case DType::kP4:
      break;
  }
}

}  // namespace

void convert_to_f32(DType dtype, const void* src, size_t count, float* dst) {
  if (!is_float(dtype)) {
    throw_internal("convert_to_f32: ", dtype_name(dtype), " is not a floating-point type");
  }
  const size_t size = dtype_size(dtype);
  in_chunks(count, [&](size_t first, size_t n) {
    convert_to_f32_serial(dtype, static_cast<const unsigned char*>(src) + first * size, n,
                          dst + first);
  });
}

void convert_from_f32(DType dtype, const float* src, size_t count, void* dst) {
  if (!is_float(dtype)) {
    throw_internal("convert_from_f32: ", dtype_name(dtype), " is not a floating-point type");
  }
  const size_t size = dtype_size(dtype);
  in_chunks(count, [&](size_t first, size_t n) {
    convert_from_f32_serial(dtype, src + first, n, static_cast<unsigned char*>(dst) + first * size);
  });
}

uint16_t f32_to_f16(float value) {
  const uint16_t sign = std::signbit(value) ? 0x8000 : 0;
  const float a = std::fabs(value);
  if (std::isnan(a)) return sign | 0x7e00;
  if (a >= 65520.0f) return sign | 0x7c00;  // rounds past the largest half: infinity
  if (a < 6.103515625e-5f) {                // subnormal half: a multiple of 2^-24
    return sign | static_cast<uint16_t>(std::nearbyint(a * 16777216.0f));
  }
  int e;
  const float m = std::frexp(a, &e);  // a = m·2^e, m in [0.5, 1)
  uint32_t mant = static_cast<uint32_t>(std::nearbyint((m * 2 - 1) * 1024));
  uint32_t exp = static_cast<uint32_t>(e - 1 + 15);
  if (mant == 1024) mant = 0, ++exp;
  return sign | static_cast<uint16_t>((exp << 10) | mant);
}

uint8_t f32_to_e4m3(float value) {
  const uint8_t sign = std::signbit(value) ? 0x80 : 0;
  const float a = std::fabs(value);
  if (std::isnan(a)) return sign | 0x7f;
  if (a >= 448.0f) return sign | 0x7e;  // saturate
  if (a < 0.015625f) {  // subnormal: a multiple of 2^-9 (8·2^-9 is the first normal)
    return sign | static_cast<uint8_t>(std::nearbyint(a * 512.0f));
  }
  int e;
  const float m = std::frexp(a, &e);  // a = m·2^e, m in [0.5, 1)
  uint32_t mant = static_cast<uint32_t>(std::nearbyint((m * 2 - 1) * 8));
  uint32_t exp = static_cast<uint32_t>(e - 1 + 7);
  if (mant == 8) mant = 0, ++exp;
  return sign | static_cast<uint8_t>((exp << 3) | mant);  // 448 < a < 464 rounds to 0x7e
}

float e4m3_to_f32(uint8_t bits) {
  const float sign = (bits & 0x80) != 0 ? -1.0f : 1.0f;
  const int exp = (bits >> 3) & 0xf, mant = bits & 7;
  if (exp == 0xf && mant == 7) return std::numeric_limits<float>::quiet_NaN();
  if (exp == 0) return sign * std::ldexp(static_cast<float>(mant), -9);
  return sign * std::ldexp(1.0f + mant / 8.0f, exp - 7);
}

}  // namespace core
