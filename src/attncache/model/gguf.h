// Reader for GGUF files (versions 2 and 3;
// https://github.com/ggml-org/ggml/blob/master/docs/gguf.md): a header (magic "GGUF", version,
// tensor and key/value counts), typed metadata key/values, a tensor table (name, dimensions,
// element type, offset), then the tensor data, each tensor at an offset aligned to
// `general.alignment` (default 32) from the start of the data section. The file is memory-mapped;
// tensors are views into the mapping. Little-endian files on a little-endian host only.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <variant>
#include <vector>

#include "attncache/model/ggml_type.h"
#include "core/mapped_file.h"

namespace attncache {

// The metadata value types, numbered as in the file.
enum class GgufValueType : uint32_t {
  kUint8 = 0,
  kInt8 = 1,
  kUint16 = 2,
  kInt16 = 3,
  kUint32 = 4,
  kInt32 = 5,
  kFloat32 = 6,
  kBool = 7,
  kString = 8,
  kArray = 9,
  kUint64 = 10,
  kInt64 = 11,
  kFloat64 = 12,
};

const char* gguf_value_type_name(GgufValueType type);

// One metadata value. Integers are widened to 64 bits and floats to double; `type` keeps what the
// file said. An array holds its elements (all of `element_type`; nested arrays are allowed).
struct GgufValue {
  using Array = std::vector<GgufValue>;
  GgufValueType type = GgufValueType::kUint8;
  GgufValueType element_type = GgufValueType::kUint8;  // arrays only
  std::variant<uint64_t, int64_t, double, bool, std::string, Array> value;

  bool is_integer() const;
};

struct GgufTensor {
  std::string name;
  GgmlType type = GgmlType::kF32;
  // As stored: dims[0] is the innermost (contiguous) dimension, so a PyTorch [out, in] weight
  // has dims {in, out}. shape() gives the row-major order.
  std::vector<int64_t> dims;
  uint64_t offset = 0;  // from the start of the data section
  const std::byte* data = nullptr;
  size_t nbytes = 0;

  int64_t numel() const;
  std::vector<int64_t> shape() const;
  std::string dims_string() const;  // "[576,49152]", as stored
};

class GgufFile {
 public:
  // Maps and validates `path`: magic, version (2 or 3), counts and string lengths within the
  // file, known value and tensor types, dimensions, alignment, and every tensor's bytes inside
  // the data section. Throws core::Error (bad input) naming the file and the problem.
  static GgufFile open(const std::string& path);

  uint32_t version() const { return version_; }
  uint32_t alignment() const { return alignment_; }
  const std::string& path() const { return file_.path(); }
  const core::MappedFile& mapped() const { return file_; }
  // Byte offset of the data section in the file.
  uint64_t data_offset() const { return data_offset_; }

  const std::map<std::string, GgufValue>& metadata() const { return metadata_; }
  const GgufValue* find(const std::string& key) const;
  // Typed getters; each throws core::Error (bad input) naming the key when it is missing or of
  // another type. get_uint and get_int take any integer type whose value fits; get_float takes
  // float32 or float64.
  uint64_t get_uint(const std::string& key) const;
  int64_t get_int(const std::string& key) const;
  double get_float(const std::string& key) const;
  bool get_bool(const std::string& key) const;
  const std::string& get_string(const std::string& key) const;
  const GgufValue::Array& get_array(const std::string& key) const;
  std::vector<std::string> get_strings(const std::string& key) const;
  // The same with a default for a missing key (a key of the wrong type still throws).
  uint64_t get_uint(const std::string& key, uint64_t fallback) const;
  double get_float(const std::string& key, double fallback) const;

  // In file order.
  const std::vector<GgufTensor>& tensors() const { return tensors_; }
  const GgufTensor* find_tensor(const std::string& name) const;
  // Throws core::Error (bad input) when `name` is missing.
  const GgufTensor& tensor(const std::string& name) const;

  // The tensor's values as fp32, in storage order. Throws core::Error (bad input) naming the
  // tensor and its type when the type cannot be dequantized.
  std::vector<float> dequantize(const GgufTensor& tensor) const;
  // Blocks [first_block, first_block + n_blocks) of the tensor, into `dst` (n_blocks ×
  // block_size values). Throws core::Error (bad input) when the range runs past the tensor.
  void dequantize_blocks(const GgufTensor& tensor, int64_t first_block, int64_t n_blocks,
                         float* dst) const;

 private:
  core::MappedFile file_;
  uint32_t version_ = 0;
  uint32_t alignment_ = 32;
  uint64_t data_offset_ = 0;
  std::map<std::string, GgufValue> metadata_;
  std::vector<GgufTensor> tensors_;
  std::map<std::string, size_t> tensor_index_;
};

}  // namespace attncache
