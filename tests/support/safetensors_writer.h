// Writes small safetensors files for tests, optionally corrupted on purpose.
#pragma once

#include <cmath>
#include <cstdint>
#include <cstring>
#include <fstream>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "core/dtype.h"

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

// The same tensor stored as "F16" or "BF16".
inline TestTensor to_half(const TestTensor& t, const std::string& dtype) {
  TestTensor h{t.name, dtype, t.shape, {}};
  const size_t n = t.bytes.size() / 4;
  h.bytes.resize(n * 2);
  for (size_t i = 0; i < n; ++i) {
    float v;
    std::memcpy(&v, t.bytes.data() + 4 * i, 4);
    uint16_t bits = dtype == "F16" ? core::f32_to_f16(v) : core::f32_to_bf16(v);
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
