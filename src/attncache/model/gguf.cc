#include "attncache/model/gguf.h"

#include <cstring>
#include <limits>

#include "core/error.h"

namespace attncache {
namespace {

constexpr char kMagic[4] = {'G', 'G', 'U', 'F'};
constexpr uint32_t kMaxDims = 4;  // GGML_MAX_DIMS
constexpr int kMaxArrayNesting = 8;
constexpr uint32_t kDefaultAlignment = 32;

// Smallest encoding of one value of `type`, so that a count can be checked against the bytes left
// before anything is allocated for it.
uint64_t min_value_bytes(GgufValueType type) {
  switch (type) {
    case GgufValueType::kUint8:
    case GgufValueType::kInt8:
    case GgufValueType::kBool:
      return 1;
    case GgufValueType::kUint16:
    case GgufValueType::kInt16:
      return 2;
    case GgufValueType::kUint32:
    case GgufValueType::kInt32:
    case GgufValueType::kFloat32:
      return 4;
    case GgufValueType::kUint64:
    case GgufValueType::kInt64:
    case GgufValueType::kFloat64:
    case GgufValueType::kString:  // the 8-byte length
      return 8;
    case GgufValueType::kArray:  // element type + count
      return 12;
  }
  return 1;
}

bool valid_value_type(uint32_t raw) {
  return raw <= static_cast<uint32_t>(GgufValueType::kFloat64);
}

// Bounds-checked little-endian reads from the mapped file; every failure names the file, what was
// being read and where.
class Cursor {
 public:
  Cursor(const std::byte* data, size_t size, const std::string& path)
      : data_(data), size_(size), path_(path) {}

  size_t pos() const { return pos_; }
  uint64_t remaining() const { return size_ - pos_; }

  void need(uint64_t n, const std::string& what) const {
    if (n > remaining()) {
      core::throw_bad_input(path_, ": truncated GGUF file: ", what, " at byte ", pos_, " needs ", n,
                            " bytes, only ", remaining(), " remain");
    }
  }

  template <typename T>
  T read(const std::string& what) {
    need(sizeof(T), what);
    T value;
    std::memcpy(&value, data_ + pos_, sizeof(T));
    pos_ += sizeof(T);
    return value;
  }

  std::string read_string(const std::string& what) {
    const uint64_t length = read<uint64_t>(what + " (length)");
    need(length, what);
    std::string s(reinterpret_cast<const char*>(data_ + pos_), length);
    pos_ += length;
    return s;
  }

  GgufValue read_value(GgufValueType type, const std::string& what, int depth) {
    GgufValue v;
    v.type = type;
    switch (type) {
      case GgufValueType::kUint8:
        v.value = uint64_t{read<uint8_t>(what)};
        break;
      case GgufValueType::kInt8:
        v.value = int64_t{read<int8_t>(what)};
        break;
      case GgufValueType::kUint16:
        v.value = uint64_t{read<uint16_t>(what)};
        break;
      case GgufValueType::kInt16:
        v.value = int64_t{read<int16_t>(what)};
        break;
      case GgufValueType::kUint32:
        v.value = uint64_t{read<uint32_t>(what)};
        break;
      case GgufValueType::kInt32:
        v.value = int64_t{read<int32_t>(what)};
        break;
      case GgufValueType::kUint64:
        v.value = read<uint64_t>(what);
        break;
      case GgufValueType::kInt64:
        v.value = read<int64_t>(what);
        break;
      case GgufValueType::kFloat32:
        v.value = double{read<float>(what)};
        break;
      case GgufValueType::kFloat64:
        v.value = read<double>(what);
        break;
      case GgufValueType::kBool: {
        const uint8_t b = read<uint8_t>(what);
        if (b > 1) core::throw_bad_input(path_, ": ", what, " is a bool with value ", int{b});
        v.value = b == 1;
        break;
      }
      case GgufValueType::kString:
        v.value = read_string(what);
        break;
      case GgufValueType::kArray: {
        if (depth >= kMaxArrayNesting) {
          core::throw_bad_input(path_, ": ", what, " nests arrays deeper than ", kMaxArrayNesting);
        }
        const uint32_t raw = read<uint32_t>(what + " (element type)");
        if (!valid_value_type(raw)) {
          core::throw_bad_input(path_, ": ", what, " is an array of unknown value type ", raw);
        }
        v.element_type = static_cast<GgufValueType>(raw);
        const uint64_t count = read<uint64_t>(what + " (element count)");
        if (count > remaining() / min_value_bytes(v.element_type)) {
          core::throw_bad_input(path_, ": ", what, " claims ", count, " elements of type ",
                                gguf_value_type_name(v.element_type), ", more than the ",
                                remaining(), " bytes left in the file can hold");
        }
        GgufValue::Array items;
        items.reserve(count);
        for (uint64_t i = 0; i < count; ++i) {
          items.push_back(read_value(v.element_type, what, depth + 1));
        }
        v.value = std::move(items);
        break;
      }
    }
    return v;
  }

 private:
  const std::byte* data_;
  size_t size_;
  size_t pos_ = 0;
  const std::string& path_;
};

[[noreturn]] void wrong_type(const std::string& path, const std::string& key, const GgufValue& v,
                             const char* wanted) {
  core::throw_bad_input(path, ": metadata key '", key, "' is ", gguf_value_type_name(v.type),
                        ", expected ", wanted);
}

}  // namespace

const char* gguf_value_type_name(GgufValueType type) {
  switch (type) {
    case GgufValueType::kUint8:
      return "uint8";
    case GgufValueType::kInt8:
      return "int8";
    case GgufValueType::kUint16:
      return "uint16";
    case GgufValueType::kInt16:
      return "int16";
    case GgufValueType::kUint32:
      return "uint32";
    case GgufValueType::kInt32:
      return "int32";
    case GgufValueType::kFloat32:
      return "float32";
    case GgufValueType::kBool:
      return "bool";
    case GgufValueType::kString:
      return "string";
    case GgufValueType::kArray:
      return "array";
    case GgufValueType::kUint64:
      return "uint64";
    case GgufValueType::kInt64:
      return "int64";
    case GgufValueType::kFloat64:
      return "float64";
  }
  return "unknown";
}

bool GgufValue::is_integer() const {
  return std::holds_alternative<uint64_t>(value) || std::holds_alternative<int64_t>(value);
}

int64_t GgufTensor::numel() const {
  int64_t n = 1;
  for (int64_t d : dims) n *= d;
  return n;
}

std::vector<int64_t> GgufTensor::shape() const { return {dims.rbegin(), dims.rend()}; }

std::string GgufTensor::dims_string() const {
  std::string s = "[";
  for (size_t i = 0; i < dims.size(); ++i) {
    if (i) s += ',';
    s += std::to_string(dims[i]);
  }
  return s + "]";
}

GgufFile GgufFile::open(const std::string& path) {
  GgufFile g;
  g.file_ = core::MappedFile::open(path);
  const size_t size = g.file_.size();
  Cursor in(g.file_.data(), size, path);

  in.need(4, "magic");
  if (std::memcmp(g.file_.data(), kMagic, 4) != 0) {
    core::throw_bad_input(path, ": not a GGUF file (the first 4 bytes are not \"GGUF\")");
  }
  in.read<uint32_t>("magic");
  g.version_ = in.read<uint32_t>("version");
  if (g.version_ != 2 && g.version_ != 3) {
    if (g.version_ == 0x02000000u || g.version_ == 0x03000000u) {
      core::throw_bad_input(path, ": big-endian GGUF files are not supported");
    }
    core::throw_bad_input(path, ": GGUF version ", g.version_,
                          " is not supported (this reader handles versions 2 and 3)");
  }
  const uint64_t n_tensors = in.read<uint64_t>("tensor count");
  const uint64_t n_kv = in.read<uint64_t>("metadata key/value count");
  // A key/value takes at least 13 bytes (key length, value type, one byte of value) and a
  // tensor entry at least 24 (name length, dimension count, type, offset).
  if (n_kv > in.remaining() / 13) {
    core::throw_bad_input(path, ": header claims ", n_kv, " metadata key/values, more than the ",
                          in.remaining(), " bytes left in the file can hold");
  }
  if (n_tensors > in.remaining() / 24) {
    core::throw_bad_input(path, ": header claims ", n_tensors, " tensors, more than the ",
                          in.remaining(), " bytes left in the file can hold");
  }

  for (uint64_t i = 0; i < n_kv; ++i) {
    std::string key = in.read_string(core::cat("metadata key ", i));
    const std::string what = core::cat("metadata value '", key, "'");
    const uint32_t raw = in.read<uint32_t>(what + " (type)");
    if (!valid_value_type(raw)) {
      core::throw_bad_input(path, ": metadata key '", key, "' has unknown value type ", raw);
    }
    GgufValue value = in.read_value(static_cast<GgufValueType>(raw), what, 0);
    if (!g.metadata_.emplace(key, std::move(value)).second) {
      core::throw_bad_input(path, ": metadata key '", key, "' appears twice");
    }
  }

  if (const GgufValue* a = g.find("general.alignment")) {
    if (a->type != GgufValueType::kUint32) wrong_type(path, "general.alignment", *a, "uint32");
    const uint64_t alignment = std::get<uint64_t>(a->value);
    if (alignment == 0 || (alignment & (alignment - 1)) != 0) {
      core::throw_bad_input(path, ": general.alignment ", alignment, " is not a power of two");
    }
    g.alignment_ = static_cast<uint32_t>(alignment);
  } else {
    g.alignment_ = kDefaultAlignment;
  }

  g.tensors_.reserve(n_tensors);
  for (uint64_t i = 0; i < n_tensors; ++i) {
    GgufTensor t;
    t.name = in.read_string(core::cat("tensor ", i, " name"));
    const std::string what = core::cat("tensor '", t.name, "'");
    const uint32_t n_dims = in.read<uint32_t>(what + " dimension count");
    if (n_dims > kMaxDims) {
      core::throw_bad_input(path, ": ", what, " has ", n_dims, " dimensions (at most ", kMaxDims,
                            ")");
    }
    int64_t numel = 1;
    for (uint32_t d = 0; d < n_dims; ++d) {
      const uint64_t dim = in.read<uint64_t>(what + " dimensions");
      if (dim > static_cast<uint64_t>(std::numeric_limits<int64_t>::max()) ||
          (dim != 0 && static_cast<uint64_t>(numel) >
                           static_cast<uint64_t>(std::numeric_limits<int64_t>::max()) / dim)) {
        core::throw_bad_input(path, ": ", what, " has absurd dimensions (dimension ", d, " is ",
                              dim, ")");
      }
      t.dims.push_back(static_cast<int64_t>(dim));
      numel *= static_cast<int64_t>(dim);
    }
    const uint32_t raw_type = in.read<uint32_t>(what + " type");
    const std::optional<GgmlTypeTraits> traits = ggml_type_traits(raw_type);
    if (!traits) {
      core::throw_bad_input(path, ": ", what, " has unknown tensor type ", raw_type);
    }
    t.type = traits->type;
    t.offset = in.read<uint64_t>(what + " offset");
    const int64_t row = t.dims.empty() ? 1 : t.dims[0];
    if (row % traits->block_size != 0) {
      core::throw_bad_input(path, ": ", what, " has rows of ", row, " values, not a multiple of ",
                            traits->name, "'s block size ", traits->block_size);
    }
    t.nbytes = static_cast<size_t>(numel / traits->block_size) * traits->type_size;
    if (t.offset % g.alignment_ != 0) {
      core::throw_bad_input(path, ": ", what, " offset ", t.offset, " is not a multiple of the ",
                            "alignment ", g.alignment_);
    }
    if (!g.tensor_index_.emplace(t.name, g.tensors_.size()).second) {
      core::throw_bad_input(path, ": tensor '", t.name, "' appears twice");
    }
    g.tensors_.push_back(std::move(t));
  }

  g.data_offset_ = (in.pos() + g.alignment_ - 1) / g.alignment_ * g.alignment_;
  const uint64_t data_size = g.data_offset_ <= size ? size - g.data_offset_ : 0;
  for (GgufTensor& t : g.tensors_) {
    if (t.offset > data_size || t.nbytes > data_size - t.offset) {
      core::throw_bad_input(path, ": tensor '", t.name, "' (", ggml_type_name(t.type),
                            t.dims_string(), ", ", t.nbytes, " bytes at data offset ", t.offset,
                            ") runs past the end of the data section (", data_size,
                            " bytes; file truncated?)");
    }
    t.data = g.file_.data() + g.data_offset_ + t.offset;
  }
  return g;
}

const GgufValue* GgufFile::find(const std::string& key) const {
  auto it = metadata_.find(key);
  return it == metadata_.end() ? nullptr : &it->second;
}

namespace {

const GgufValue& require(const GgufFile& g, const std::string& key) {
  const GgufValue* v = g.find(key);
  if (v == nullptr) core::throw_bad_input(g.path(), ": missing metadata key '", key, "'");
  return *v;
}

}  // namespace

uint64_t GgufFile::get_uint(const std::string& key) const {
  const GgufValue& v = require(*this, key);
  if (const auto* u = std::get_if<uint64_t>(&v.value)) return *u;
  if (const auto* i = std::get_if<int64_t>(&v.value); i && *i >= 0) return uint64_t(*i);
  wrong_type(path(), key, v, "a non-negative integer");
}

int64_t GgufFile::get_int(const std::string& key) const {
  const GgufValue& v = require(*this, key);
  if (const auto* i = std::get_if<int64_t>(&v.value)) return *i;
  if (const auto* u = std::get_if<uint64_t>(&v.value);
      u && *u <= uint64_t(std::numeric_limits<int64_t>::max())) {
    return int64_t(*u);
  }
  wrong_type(path(), key, v, "an integer");
}

double GgufFile::get_float(const std::string& key) const {
  const GgufValue& v = require(*this, key);
  if (const auto* d = std::get_if<double>(&v.value)) return *d;
  wrong_type(path(), key, v, "float32 or float64");
}

bool GgufFile::get_bool(const std::string& key) const {
  const GgufValue& v = require(*this, key);
  if (const auto* b = std::get_if<bool>(&v.value)) return *b;
  wrong_type(path(), key, v, "bool");
}

const std::string& GgufFile::get_string(const std::string& key) const {
  const GgufValue& v = require(*this, key);
  if (const auto* s = std::get_if<std::string>(&v.value)) return *s;
  wrong_type(path(), key, v, "string");
}

const GgufValue::Array& GgufFile::get_array(const std::string& key) const {
  const GgufValue& v = require(*this, key);
  if (const auto* a = std::get_if<GgufValue::Array>(&v.value)) return *a;
  wrong_type(path(), key, v, "array");
}

std::vector<std::string> GgufFile::get_strings(const std::string& key) const {
  const GgufValue::Array& items = get_array(key);
  const GgufValue& v = *find(key);
  if (v.element_type != GgufValueType::kString) {
    core::throw_bad_input(path(), ": metadata key '", key, "' is an array of ",
                          gguf_value_type_name(v.element_type), ", expected strings");
  }
  std::vector<std::string> out;
  out.reserve(items.size());
  for (const GgufValue& item : items) out.push_back(std::get<std::string>(item.value));
  return out;
}

uint64_t GgufFile::get_uint(const std::string& key, uint64_t fallback) const {
  return find(key) ? get_uint(key) : fallback;
}

double GgufFile::get_float(const std::string& key, double fallback) const {
  return find(key) ? get_float(key) : fallback;
}

const GgufTensor* GgufFile::find_tensor(const std::string& name) const {
  auto it = tensor_index_.find(name);
  return it == tensor_index_.end() ? nullptr : &tensors_[it->second];
}

const GgufTensor& GgufFile::tensor(const std::string& name) const {
  const GgufTensor* t = find_tensor(name);
  if (t == nullptr) core::throw_bad_input(path(), ": missing tensor '", name, "'");
  return *t;
}

std::vector<float> GgufFile::dequantize(const GgufTensor& tensor) const {
  const int64_t blocks = tensor.numel() / ggml_type_traits(tensor.type).block_size;
  std::vector<float> out(static_cast<size_t>(tensor.numel()));
  dequantize_blocks(tensor, 0, blocks, out.data());
  return out;
}

void GgufFile::dequantize_blocks(const GgufTensor& tensor, int64_t first_block, int64_t n_blocks,
                                 float* dst) const {
  const GgmlTypeTraits& traits = ggml_type_traits(tensor.type);
  const int64_t total = tensor.numel() / traits.block_size;
  if (first_block < 0 || n_blocks < 0 || first_block > total || n_blocks > total - first_block) {
    core::throw_bad_input(path(), ": blocks [", first_block, ", ", first_block + n_blocks,
                          ") lie outside tensor '", tensor.name, "' (", total, " blocks)");
  }
  if (!traits.can_dequantize) {
    core::throw_bad_input(path(), ": tensor '", tensor.name, "' has type ", traits.name,
                          ", which this engine cannot dequantize (it handles ",
                          ggml_dequantizable_types(), ")");
  }
  attncache::dequantize(tensor.type, tensor.data + first_block * traits.type_size,
                        n_blocks * traits.block_size, dst);
}

}  // namespace attncache
