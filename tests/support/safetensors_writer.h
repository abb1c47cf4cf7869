// Writes small safetensors files for tests, optionally corrupted on purpose.
#pragma once

#include <cmath>
#include <cstdint>
#include <cstring>
#include <fstream>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

namespace testing_support {

struct TestTensor {
  std::string name;
  std::string dtype = "F32";
  std::vector<int64_t> shape;
  std::vector<unsigned char> bytes;
};

inline TestTensor f32_tensor(std::string name, std::vector<int64_t> shape, float start = 0.0f,
                             float step = 0.001f) {
  TestTensor t{std::move(name), "F32", std::move(shape), {}};
  int64_t n = 1;
  for (int64_t d : t.shape) n *= d;
  t.bytes.resize(n * 4);
  for (int64_t i = 0; i < n; ++i) {
    float v = start + step * static_cast<float>(i % 97);
    std::memcpy(t.bytes.data() + 4 * i, &v, 4);
  }
  return t;
}

// Rounds a float in [-65504, 65504] to the nearest fp16 (normal or subnormal) bit pattern.
inline uint16_t f32_to_f16(float value) {
  uint16_t sign = value < 0 ? 0x8000 : 0;
  float a = std::fabs(value);
  if (a < 6.103515625e-5f)
    return sign | static_cast<uint16_t>(std::lround(a / 5.9604644775390625e-8f));
  int e;
  float m = std::frexp(a, &e);  // a = m·2^e, m in [0.5, 1)
  uint32_t mant = static_cast<uint32_t>(std::lround((m * 2 - 1) * 1024));
  uint32_t exp = static_cast<uint32_t>(e - 1 + 15);
  if (mant == 1024) mant = 0, ++exp;
  return sign | static_cast<uint16_t>((exp << 10) | mant);
}

// Rounds to the nearest bf16 (ties to even).
inline uint16_t f32_to_bf16(float value) {
  uint32_t u;
  std::memcpy(&u, &value, 4);
  u += 0x7FFF + ((u >> 16) & 1);
  return static_cast<uint16_t>(u >> 16);
}

// The same tensor stored as "F16" or "BF16".
inline TestTensor to_half(const TestTensor& t, const std::string& dtype) {
  TestTensor h{t.name, dtype, t.shape, {}};
  const size_t n = t.bytes.size() / 4;
  h.bytes.resize(n * 2);
  for (size_t i = 0; i < n; ++i) {
    float v;
    std::memcpy(&v, t.bytes.data() + 4 * i, 4);
    uint16_t bits = dtype == "F16" ? f32_to_f16(v) : f32_to_bf16(v);
    std::memcpy(h.bytes.data() + 2 * i, &bits, 2);
  }
  return h;
}

// Serializes `tensors`; the header's declared length can be overridden to test bounds checks.
inline std::string safetensors_bytes(const std::vector<TestTensor>& tensors,
                                     int64_t header_len_override = -1) {
  nlohmann::json header = nlohmann::json::object();
  size_t offset = 0;
  for (auto& t : tensors) {
    header[t.name] = {{"dtype", t.dtype},
                      {"shape", t.shape},
                      {"data_offsets", {offset, offset + t.bytes.size()}}};
    offset += t.bytes.size();
  }
  std::string text = header.dump();
  while (text.size() % 8) text += ' ';
  uint64_t len =
      header_len_override >= 0 ? static_cast<uint64_t>(header_len_override) : text.size();
  std::string out(8, '\0');
  std::memcpy(out.data(), &len, 8);
  out += text;
  for (auto& t : tensors) out.append(reinterpret_cast<const char*>(t.bytes.data()), t.bytes.size());
  return out;
}

inline void write_file(const std::string& path, const std::string& bytes) {
  std::ofstream out(path, std::ios::binary);
  out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
}

}  // namespace testing_support
