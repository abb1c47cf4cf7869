#include "attncache/kernels/stored_maps.h"

#include <algorithm>
#include <cstring>
#include <vector>

#include "attncache/kernels/cpu/attention.h"
#include "core/error.h"

namespace attncache {
namespace {

void require_causal_p4(bool causal) {
  if (!causal) core::throw_bad_input("P4 maps are for causal decoders only");
}

}  // namespace

unsigned p4_encode_row(const float* row, int len, unsigned char* codes) {
  float m = 0.0f;
  for (int k = 0; k < len; ++k) m = std::max(m, row[k]);
  std::memset(codes, 0, (static_cast<size_t>(len) + 1) / 2);
  unsigned squares = 0;
  for (int k = 0; k < len; ++k) {
    const unsigned q = p4_code(row[k], m);
    squares += q * q;
    codes[k / 2] |= static_cast<unsigned char>(q << (4 * (k & 1)));
  }
  return squares;
}

void p4_encode_layer(const float* packed, int n, int heads, void* out) {
  auto* bytes = static_cast<unsigned char*>(out);
  for (int h = 0; h < heads; ++h) {
    const float* head = packed + static_cast<size_t>(h) * cpu::attention_map_size(n, true);
    unsigned char* rows = bytes + h * p4_row_offset(n);
    for (int i = 0; i < n; ++i) {
      p4_encode_row(head + cpu::attention_map_row(n, i, true), i + 1, rows + p4_row_offset(i));
    }
  }
}

void p4_decode_row(const unsigned char* codes, int len, float* out) {
  const int bytes = (len + 1) / 2;
  unsigned squares = 0;
  for (int b = 0; b < bytes; ++b) {
    const unsigned lo = codes[b] & 15u, hi = codes[b] >> 4;
    squares += lo * lo + hi * hi;  // an odd row's last high nibble is zero
  }
  float values[16];
  const float scale = p4_scale(squares);
  for (int q = 0; q < 16; ++q) values[q] = static_cast<float>(q * q) * scale;
  for (int k = 0; k + 1 < len; k += 2) {
    out[k] = values[codes[k / 2] & 15u];
    out[k + 1] = values[codes[k / 2] >> 4];
  }
  if (len % 2 != 0) out[len - 1] = values[codes[len / 2] & 15u];
}

size_t stored_layer_bytes(int n, int heads, bool causal, core::DType dtype) {
  if (dtype == core::DType::kP4) {
    require_causal_p4(causal);
    return p4_layer_bytes(n, heads);
  }
  return static_cast<size_t>(heads) * cpu::attention_map_size(n, causal) * core::dtype_size(dtype);
}

void stored_map_row(const void* layer, core::DType dtype, int n, bool causal, int h, int i, int len,
                    float* out) {
  if (dtype == core::DType::kP4) {
    require_causal_p4(causal);
    const unsigned char* codes =
        static_cast<const unsigned char*>(layer) + h * p4_row_offset(n) + p4_row_offset(i);
    if (len == i + 1) return p4_decode_row(codes, len, out);
    std::vector<float> row(static_cast<size_t>(i) + 1);
    p4_decode_row(codes, i + 1, row.data());
    std::copy(row.begin(), row.begin() + len, out);
    return;
  }
  const size_t offset = static_cast<size_t>(h) * cpu::attention_map_size(n, causal) +
                        cpu::attention_map_row(n, i, causal);
  core::convert_to_f32(
      dtype, static_cast<const unsigned char*>(layer) + offset * core::dtype_size(dtype), len, out);
}

void stored_round_trip(core::DType dtype, const float* row, int len, float* out) {
  if (dtype == core::DType::kP4) {
    std::vector<unsigned char> codes((static_cast<size_t>(len) + 1) / 2);
    p4_encode_row(row, len, codes.data());
    return p4_decode_row(codes.data(), len, out);
  }
  std::vector<std::byte> stored(static_cast<size_t>(len) * core::dtype_size(dtype));
  core::convert_from_f32(dtype, row, len, stored.data());
  core::convert_to_f32(dtype, stored.data(), len, out);
}

void store_layer(core::DType dtype, const float* maps, int n, int heads, bool causal, void* out) {
  if (dtype == core::DType::kP4) {
    require_causal_p4(causal);
    return p4_encode_layer(maps, n, heads, out);
  }
  core::convert_from_f32(dtype, maps,
                         static_cast<size_t>(heads) * cpu::attention_map_size(n, causal), out);
}

}  // namespace attncache
