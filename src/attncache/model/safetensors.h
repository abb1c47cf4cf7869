// Reader for the safetensors format (https://github.com/huggingface/safetensors): an 8-byte
// little-endian header length, a JSON header naming each tensor's dtype, shape and byte range,
// then the raw data. The file is memory-mapped; tensors are views into the mapping.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "core/dtype.h"
#include "core/mapped_file.h"

namespace attncache {

struct TensorView {
  std::string name;
  core::DType dtype = core::DType::kF32;
  std::vector<int64_t> shape;
  const std::byte* data = nullptr;
  size_t nbytes = 0;

  int64_t numel() const;
  std::string shape_string() const;
};

class SafeTensors {
 public:
  // Maps and validates `path`: header bounds, JSON syntax, known dtypes, byte ranges inside the
  // data section and consistent with dtype × shape. Throws core::Error (bad input) naming the
  // file and the problem.
  static SafeTensors open(const std::string& path);

  const TensorView* find(const std::string& name) const;
  // Throws core::Error (bad input) when `name` is missing.
  const TensorView& get(const std::string& name) const;
  // The same, and checks that the tensor has `shape` (as config.json implies it) and a float
  // dtype (F32, F16 or BF16); throws core::Error (bad input) naming the tensor otherwise.
  const TensorView& get_float(const std::string& name, const std::vector<int64_t>& shape) const;
  const std::map<std::string, TensorView>& tensors() const { return tensors_; }
  const std::string& path() const { return file_.path(); }

 private:
  core::MappedFile file_;
  std::map<std::string, TensorView> tensors_;
};

}  // namespace attncache
