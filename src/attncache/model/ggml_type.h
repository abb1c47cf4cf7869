// Tensor element types of GGML/GGUF files and their dequantization to fp32. A quantized type
// stores `block_size` consecutive values of a row in `type_size` bytes; the formulas follow
// ggml-quants.c and the gguf Python package (gguf.quants), which tests/data/gguf/ checks against.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>

namespace attncache {

// The numbering is the file format's (enum ggml_type); gaps are types ggml has removed.
enum class GgmlType : uint32_t {
  kF32 = 0,
  kF16 = 1,
  kQ4_0 = 2,
  kQ4_1 = 3,
  kQ5_0 = 6,
  kQ5_1 = 7,
  kQ8_0 = 8,
  kQ8_1 = 9,
  kQ2_K = 10,
  kQ3_K = 11,
  kQ4_K = 12,
  kQ5_K = 13,
  kQ6_K = 14,
  kQ8_K = 15,
  kIQ2_XXS = 16,
  kIQ2_XS = 17,
  kIQ3_XXS = 18,
  kIQ1_S = 19,
  kIQ4_NL = 20,
  kIQ3_S = 21,
  kIQ2_S = 22,
  kIQ4_XS = 23,
  kI8 = 24,
  kI16 = 25,
  kI32 = 26,
  kI64 = 27,
  kF64 = 28,
  kIQ1_M = 29,
  kBF16 = 30,
  kTQ1_0 = 34,
  kTQ2_0 = 35,
  kMXFP4 = 39,
};

struct GgmlTypeTraits {
  GgmlType type;
  const char* name;     // as ggml spells it: "Q4_K", "BF16"
  int64_t block_size;   // values per block (1 for plain types)
  size_t type_size;     // bytes per block
  bool can_dequantize;  // whether dequantize() below handles it
};

// The traits of a raw type id read from a file, or nullopt for an id this reader does not know.
std::optional<GgmlTypeTraits> ggml_type_traits(uint32_t raw_type);
const GgmlTypeTraits& ggml_type_traits(GgmlType type);
const char* ggml_type_name(GgmlType type);
// "F32, F16, BF16, Q4_0, ..." for error messages.
std::string ggml_dequantizable_types();

// Converts `count` values of `type` at `src` (any alignment) to fp32 at `dst`. `count` must be a
// multiple of the type's block size; `src` holds count / block_size blocks. Throws core::Error
// (bad input) for a type that cannot be dequantized, naming it.
void dequantize(GgmlType type, const void* src, int64_t count, float* dst);

}  // namespace attncache
