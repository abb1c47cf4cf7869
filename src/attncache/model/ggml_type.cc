// Bit-exact with the reference (gguf.quants, numpy) by construction: every product of an fp16
// scale (11 significant bits) with the small integer scales and quants of the types below needs at
// most 24 bits, so it is exact in fp32 and only the final add or subtract rounds, the same with or
// without a fused multiply-add. Products are still taken in the reference's order.
#include "attncache/model/ggml_type.h"

#include <array>
#include <cstring>

#include "core/dtype.h"
#include "core/error.h"

namespace attncache {
namespace {

constexpr int64_t kQK = 32;    // block size of the legacy quants (Q4_0 ... Q8_0)
constexpr int64_t kQKK = 256;  // block size of the k-quants

constexpr std::array kTypes = {
    GgmlTypeTraits{GgmlType::kF32, "F32", 1, 4, true},
    GgmlTypeTraits{GgmlType::kF16, "F16", 1, 2, true},
    GgmlTypeTraits{GgmlType::kQ4_0, "Q4_0", kQK, 18, true},
    GgmlTypeTraits{GgmlType::kQ4_1, "Q4_1", kQK, 20, true},
    GgmlTypeTraits{GgmlType::kQ5_0, "Q5_0", kQK, 22, true},
    GgmlTypeTraits{GgmlType::kQ5_1, "Q5_1", kQK, 24, true},
    GgmlTypeTraits{GgmlType::kQ8_0, "Q8_0", kQK, 34, true},
    GgmlTypeTraits{GgmlType::kQ8_1, "Q8_1", kQK, 36, false},
    GgmlTypeTraits{GgmlType::kQ2_K, "Q2_K", kQKK, 84, true},
    GgmlTypeTraits{GgmlType::kQ3_K, "Q3_K", kQKK, 110, true},
    GgmlTypeTraits{GgmlType::kQ4_K, "Q4_K", kQKK, 144, true},
    GgmlTypeTraits{GgmlType::kQ5_K, "Q5_K", kQKK, 176, true},
    GgmlTypeTraits{GgmlType::kQ6_K, "Q6_K", kQKK, 210, true},
    GgmlTypeTraits{GgmlType::kQ8_K, "Q8_K", kQKK, 292, false},
    GgmlTypeTraits{GgmlType::kIQ2_XXS, "IQ2_XXS", kQKK, 66, false},
    GgmlTypeTraits{GgmlType::kIQ2_XS, "IQ2_XS", kQKK, 74, false},
    GgmlTypeTraits{GgmlType::kIQ3_XXS, "IQ3_XXS", kQKK, 98, false},
    GgmlTypeTraits{GgmlType::kIQ1_S, "IQ1_S", kQKK, 50, false},
    GgmlTypeTraits{GgmlType::kIQ4_NL, "IQ4_NL", kQK, 18, false},
    GgmlTypeTraits{GgmlType::kIQ3_S, "IQ3_S", kQKK, 110, false},
    GgmlTypeTraits{GgmlType::kIQ2_S, "IQ2_S", kQKK, 82, false},
    GgmlTypeTraits{GgmlType::kIQ4_XS, "IQ4_XS", kQKK, 136, false},
    GgmlTypeTraits{GgmlType::kI8, "I8", 1, 1, false},
    GgmlTypeTraits{GgmlType::kI16, "I16", 1, 2, false},
    GgmlTypeTraits{GgmlType::kI32, "I32", 1, 4, false},
    GgmlTypeTraits{GgmlType::kI64, "I64", 1, 8, false},
    GgmlTypeTraits{GgmlType::kF64, "F64", 1, 8, false},
    GgmlTypeTraits{GgmlType::kIQ1_M, "IQ1_M", kQKK, 56, false},
    GgmlTypeTraits{GgmlType::kBF16, "BF16", 1, 2, true},
    GgmlTypeTraits{GgmlType::kTQ1_0, "TQ1_0", kQKK, 54, false},
    GgmlTypeTraits{GgmlType::kTQ2_0, "TQ2_0", kQKK, 66, false},
    GgmlTypeTraits{GgmlType::kMXFP4, "MXFP4", kQK, 17, false},
};

inline float half(const uint8_t* p) {
  uint16_t bits;
  std::memcpy(&bits, p, 2);
  return core::f16_to_f32(bits);
}

// Legacy quants: a 32-value block, the low nibbles hold values 0..15, the high nibbles 16..31.
void dequant_q4_0(const uint8_t* b, float* y) {
  const float d = half(b);
  const uint8_t* qs = b + 2;
  for (int j = 0; j < 16; ++j) {
    y[j] = d * static_cast<float>((qs[j] & 0xf) - 8);
    y[j + 16] = d * static_cast<float>((qs[j] >> 4) - 8);
  }
}

void dequant_q4_1(const uint8_t* b, float* y) {
  const float d = half(b), m = half(b + 2);
  const uint8_t* qs = b + 4;
  for (int j = 0; j < 16; ++j) {
    y[j] = d * static_cast<float>(qs[j] & 0xf) + m;
    y[j + 16] = d * static_cast<float>(qs[j] >> 4) + m;
  }
}

// Q5: the fifth bit of value j is bit j of the 32-bit little-endian qh.
void dequant_q5_0(const uint8_t* b, float* y) {
  const float d = half(b);
  uint32_t qh;
  std::memcpy(&qh, b + 2, 4);
  const uint8_t* qs = b + 6;
  for (int j = 0; j < 16; ++j) {
    const int x0 = static_cast<int>((qs[j] & 0xf) | (((qh >> j) & 1) << 4)) - 16;
    const int x1 = static_cast<int>((qs[j] >> 4) | (((qh >> (j + 16)) & 1) << 4)) - 16;
    y[j] = d * static_cast<float>(x0);
    y[j + 16] = d * static_cast<float>(x1);
  }
}

void dequant_q5_1(const uint8_t* b, float* y) {
  const float d = half(b), m = half(b + 2);
  uint32_t qh;
  std::memcpy(&qh, b + 4, 4);
  const uint8_t* qs = b + 8;
  for (int j = 0; j < 16; ++j) {
    const unsigned x0 = (qs[j] & 0xf) | (((qh >> j) & 1) << 4);
    const unsigned x1 = (qs[j] >> 4) | (((qh >> (j + 16)) & 1) << 4);
    y[j] = d * static_cast<float>(x0) + m;
    y[j + 16] = d * static_cast<float>(x1) + m;
  }
}

void dequant_q8_0(const uint8_t* b, float* y) {
  const float d = half(b);
  const int8_t* qs = reinterpret_cast<const int8_t*>(b + 2);
  for (int j = 0; j < kQK; ++j) y[j] = static_cast<float>(qs[j]) * d;
}

// Q2_K: scales[16] (low nibble scale, high nibble min), qs[64] (2 bits each), d, dmin.
void dequant_q2_k(const uint8_t* b, float* y) {
  const uint8_t* scales = b;
  const uint8_t* q = b + 16;
  const float d = half(b + 80), dmin = half(b + 82);
  int is = 0;
  for (int n = 0; n < kQKK; n += 128) {
    for (int shift = 0; shift < 8; shift += 2) {
      for (int half_index = 0; half_index < 2; ++half_index) {
        const uint8_t sc = scales[is++];
        const float dl = d * static_cast<float>(sc & 0xf);
        const float ml = dmin * static_cast<float>(sc >> 4);
        const uint8_t* qq = q + 16 * half_index;
        for (int l = 0; l < 16; ++l) {
          *y++ = dl * static_cast<float>((qq[l] >> shift) & 3) - ml;
        }
      }
    }
    q += 32;
  }
}

// Q3_K: hmask[32] (the third bit, inverted), qs[64] (low 2 bits), scales[12] (16 6-bit scales
// stored with an offset of 32), d.
void dequant_q3_k(const uint8_t* b, float* y) {
  const uint8_t* hm = b;
  const uint8_t* q = b + 32;
  const uint8_t* packed = b + 96;
  const float d_all = half(b + 108);
  int8_t scales[16];
  for (int i = 0; i < 16; ++i) {
    const int low = i < 8 ? (packed[i] & 0xf) : (packed[i - 8] >> 4);
    const int high = (packed[8 + i % 4] >> (2 * (i / 4))) & 3;
    scales[i] = static_cast<int8_t>((low | (high << 4)) - 32);
  }
  int is = 0;
  uint8_t m = 1;
  for (int n = 0; n < kQKK; n += 128) {
    for (int shift = 0; shift < 8; shift += 2) {
      for (int half_index = 0; half_index < 2; ++half_index) {
        const float dl = d_all * static_cast<float>(scales[is++]);
        const int off = 16 * half_index;
        for (int l = 0; l < 16; ++l) {
          const int v = ((q[l + off] >> shift) & 3) - ((hm[l + off] & m) ? 0 : 4);
          *y++ = dl * static_cast<float>(v);
        }
      }
      m = static_cast<uint8_t>(m << 1);
    }
    q += 32;
  }
}

// The 6-bit scale and min of sub-block j (0..7) of Q4_K and Q5_K, packed into 12 bytes.
inline void scale_min_k4(int j, const uint8_t* q, uint8_t* d, uint8_t* m) {
  if (j < 4) {
    *d = q[j] & 63;
    *m = q[j + 4] & 63;
  } else {
    *d = (q[j + 4] & 0xf) | ((q[j - 4] >> 6) << 4);
    *m = (q[j + 4] >> 4) | ((q[j] >> 6) << 4);
  }
}

// Q4_K: d, dmin, scales[12], qs[128]; eight sub-blocks of 32 with their own scale and min.
void dequant_q4_k(const uint8_t* b, float* y) {
  const float d = half(b), dmin = half(b + 2);
  const uint8_t* scales = b + 4;
  const uint8_t* q = b + 16;
  for (int is = 0; is < 8; is += 2) {
    uint8_t sc, m;
    scale_min_k4(is, scales, &sc, &m);
    const float d1 = d * static_cast<float>(sc), m1 = dmin * static_cast<float>(m);
    scale_min_k4(is + 1, scales, &sc, &m);
    const float d2 = d * static_cast<float>(sc), m2 = dmin * static_cast<float>(m);
    for (int l = 0; l < 32; ++l) *y++ = d1 * static_cast<float>(q[l] & 0xf) - m1;
    for (int l = 0; l < 32; ++l) *y++ = d2 * static_cast<float>(q[l] >> 4) - m2;
    q += 32;
  }
}

// Q5_K: as Q4_K plus qh[32] holding each value's fifth bit.
void dequant_q5_k(const uint8_t* b, float* y) {
  const float d = half(b), dmin = half(b + 2);
  const uint8_t* scales = b + 4;
  const uint8_t* qh = b + 16;
  const uint8_t* ql = b + 48;
  uint8_t u1 = 1, u2 = 2;
  for (int is = 0; is < 8; is += 2) {
    uint8_t sc, m;
    scale_min_k4(is, scales, &sc, &m);
    const float d1 = d * static_cast<float>(sc), m1 = dmin * static_cast<float>(m);
    scale_min_k4(is + 1, scales, &sc, &m);
    const float d2 = d * static_cast<float>(sc), m2 = dmin * static_cast<float>(m);
    for (int l = 0; l < 32; ++l) {
      *y++ = d1 * static_cast<float>((ql[l] & 0xf) + ((qh[l] & u1) ? 16 : 0)) - m1;
    }
    for (int l = 0; l < 32; ++l) {
      *y++ = d2 * static_cast<float>((ql[l] >> 4) + ((qh[l] & u2) ? 16 : 0)) - m2;
    }
    ql += 32;
    u1 = static_cast<uint8_t>(u1 << 2);
    u2 = static_cast<uint8_t>(u2 << 2);
  }
}

// Q6_K: ql[128] (low 4 bits), qh[64] (high 2 bits), int8 scales[16], d.
void dequant_q6_k(const uint8_t* b, float* y) {
  const uint8_t* ql = b;
  const uint8_t* qh = b + 128;
  const int8_t* sc = reinterpret_cast<const int8_t*>(b + 192);
  const float d = half(b + 208);
  for (int n = 0; n < kQKK; n += 128) {
    for (int l = 0; l < 32; ++l) {
      const int is = l / 16;
      const int q1 = ((ql[l] & 0xf) | (((qh[l] >> 0) & 3) << 4)) - 32;
      const int q2 = ((ql[l + 32] & 0xf) | (((qh[l] >> 2) & 3) << 4)) - 32;
      const int q3 = ((ql[l] >> 4) | (((qh[l] >> 4) & 3) << 4)) - 32;
      const int q4 = ((ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4)) - 32;
      y[l] = d * static_cast<float>(sc[is]) * static_cast<float>(q1);
      y[l + 32] = d * static_cast<float>(sc[is + 2]) * static_cast<float>(q2);
      y[l + 64] = d * static_cast<float>(sc[is + 4]) * static_cast<float>(q3);
      y[l + 96] = d * static_cast<float>(sc[is + 6]) * static_cast<float>(q4);
    }
    y += 128;
    ql += 64;
    qh += 32;
    sc += 8;
  }
}

template <void (*Block)(const uint8_t*, float*)>
void dequant_blocks(const void* src, int64_t count, int64_t block_size, size_t type_size,
                    float* dst) {
  const uint8_t* b = static_cast<const uint8_t*>(src);
  for (int64_t i = 0; i < count / block_size; ++i) {
    Block(b + i * type_size, dst + i * block_size);
  }
}

}  // namespace

std::optional<GgmlTypeTraits> ggml_type_traits(uint32_t raw_type) {
  for (const GgmlTypeTraits& t : kTypes) {
    if (static_cast<uint32_t>(t.type) == raw_type) return t;
  }
  return std::nullopt;
}

const GgmlTypeTraits& ggml_type_traits(GgmlType type) {
  for (const GgmlTypeTraits& t : kTypes) {
    if (t.type == type) return t;
  }
  core::throw_internal("ggml type ", static_cast<uint32_t>(type), " has no traits");
}

const char* ggml_type_name(GgmlType type) { return ggml_type_traits(type).name; }

std::string ggml_dequantizable_types() {
  std::string names;
  for (const GgmlTypeTraits& t : kTypes) {
    if (!t.can_dequantize) continue;
    if (!names.empty()) names += ", ";
    names += t.name;
  }
  return names;
}

void dequantize(GgmlType type, const void* src, int64_t count, float* dst) {
  const GgmlTypeTraits& t = ggml_type_traits(type);
  if (count < 0 || count % t.block_size != 0) {
    core::throw_internal("dequantize: ", count, " values is not a whole number of ", t.name,
                         " blocks of ", t.block_size);
  }
  const int64_t bs = t.block_size;
  const size_t ts = t.type_size;
  switch (type) {
    case GgmlType::kF32:
      std::memcpy(dst, src, static_cast<size_t>(count) * 4);
      return;
    case GgmlType::kF16:
      core::convert_to_f32(core::DType::kF16, src, static_cast<size_t>(count), dst);
      return;
    case GgmlType::kBF16:
      core::convert_to_f32(core::DType::kBF16, src, static_cast<size_t>(count), dst);
      return;
    case GgmlType::kQ4_0:
      return dequant_blocks<dequant_q4_0>(src, count, bs, ts, dst);
    case GgmlType::kQ4_1:
      return dequant_blocks<dequant_q4_1>(src, count, bs, ts, dst);
    case GgmlType::kQ5_0:
      return dequant_blocks<dequant_q5_0>(src, count, bs, ts, dst);
    case GgmlType::kQ5_1:
      return dequant_blocks<dequant_q5_1>(src, count, bs, ts, dst);
    case GgmlType::kQ8_0:
      return dequant_blocks<dequant_q8_0>(src, count, bs, ts, dst);
    case GgmlType::kQ2_K:
      return dequant_blocks<dequant_q2_k>(src, count, bs, ts, dst);
    case GgmlType::kQ3_K:
      return dequant_blocks<dequant_q3_k>(src, count, bs, ts, dst);
    case GgmlType::kQ4_K:
      return dequant_blocks<dequant_q4_k>(src, count, bs, ts, dst);
    case GgmlType::kQ5_K:
      return dequant_blocks<dequant_q5_k>(src, count, bs, ts, dst);
    case GgmlType::kQ6_K:
      return dequant_blocks<dequant_q6_k>(src, count, bs, ts, dst);
    default:
      core::throw_bad_input("tensor type ", t.name, " cannot be dequantized by this engine (it ",
                            "handles ", ggml_dequantizable_types(), ")");
  }
}

}  // namespace attncache
