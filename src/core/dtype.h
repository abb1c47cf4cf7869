// Element types of stored tensors and their conversion to fp32. fp16 and bf16 are stored as raw
// 16-bit patterns; conversion is exact (every fp16/bf16 value is representable in fp32).
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <string_view>

namespace core {

// kP8 is ours, not a safetensors type: a probability in [0, 1] stored in one byte with
// square-root companding, q = round(255·√p), p = (q/255)², which keeps small probabilities
// (most of an attention row) to a few percent relative error at a quarter of fp32's bytes.
// kFP8 is ours too: a probability p as the OCP fp8 e4m3 encoding of p·256 (the scale keeps
// probabilities down to 2^-17 nonzero; relative error ≤ 1/16). It is what Hopper's tensor-core
// and conversion instructions read; P8 is as compact and more accurate on large probabilities.
// kP4 is for causal attention maps only: 4-bit codes relative to each row's largest
// probability plus one fp32 scale per row (attncache/kernels/stored_maps.h on the host,
// attncache/kernels/cuda/attention.h on the GPU), so it has no per-element size (dtype_size is
// 0) and no conversion here.
enum class DType { kF32, kF16, kBF16, kI64, kI32, kP8, kFP8, kP4 };

// Scale of kFP8: stored value = p · kFP8Scale.
constexpr float kFP8Scale = 256.0f;
// OCP fp8 e4m3 (no infinities; 0x7f/0xff NaN; largest finite 448) ↔ fp32; round to nearest
// even, saturating to ±448 as __nv_cvt_float_to_fp8(…, __NV_SATFINITE, __NV_E4M3) does.
uint8_t f32_to_e4m3(float value);
float e4m3_to_f32(uint8_t bits);

size_t dtype_size(DType dtype);
std::string_view dtype_name(DType dtype);

inline float bf16_to_f32(uint16_t bits) {
  uint32_t u = static_cast<uint32_t>(bits) << 16;
  float f;
  std::memcpy(&f, &u, sizeof f);
  return f;
}

inline float f16_to_f32(uint16_t bits) {
  uint32_t sign = static_cast<uint32_t>(bits & 0x8000u) << 16;
  uint32_t exponent = (bits >> 10) & 0x1fu;
  uint32_t mantissa = bits & 0x3ffu;
  uint32_t u;
  if (exponent == 0x1f) {
    u = sign | 0x7f800000u | (mantissa << 13);  // inf / nan
  } else if (exponent != 0) {
    u = sign | ((exponent + 112) << 23) | (mantissa << 13);
  } else if (mantissa == 0) {
    u = sign;  // signed zero
  } else {
    // Subnormal: renormalize.
    int shift = 0;
    while ((mantissa & 0x400u) == 0) {
      mantissa <<= 1;
      ++shift;
    }
    u = sign | (static_cast<uint32_t>(113 - shift) << 23) | ((mantissa & 0x3ffu) << 13);
  }
  float f;
  std::memcpy(&f, &u, sizeof f);
  return f;
}

// Round to nearest, ties to even (the conversions PyTorch's .half() and .bfloat16() do).
uint16_t f32_to_f16(float value);
inline uint16_t f32_to_bf16(float value) {  // inline: conversion loops vectorize
  uint32_t u;
  std::memcpy(&u, &value, 4);
  if ((u & 0x7fffffffu) > 0x7f800000u) return static_cast<uint16_t>((u >> 16) | 0x40);  // nan
  u += 0x7fff + ((u >> 16) & 1);
  return static_cast<uint16_t>(u >> 16);
}

// Converts `count` elements of a floating-point `dtype` at `src` (any alignment) to fp32.
// Millions of values (a model's weights) are converted in chunks on the OpenMP threads.
void convert_to_f32(DType dtype, const void* src, size_t count, float* dst);
// The reverse: `count` fp32 values to `dtype` (fp32, fp16 or bf16), rounding to nearest even.
void convert_from_f32(DType dtype, const float* src, size_t count, void* dst);

}  // namespace core
