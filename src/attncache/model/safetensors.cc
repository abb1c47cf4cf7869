#include "attncache/model/safetensors.h"

#include <cstring>
#include <nlohmann/json.hpp>

#include "core/error.h"

namespace attncache {
namespace {

constexpr uint64_t kMaxHeaderBytes = 100ull << 20;  // the reference implementation's limit

core::DType parse_dtype(const std::string& name, const std::string& path,
                        const std::string& tensor) {
  if (name == "F32") return core::DType::kF32;
  if (name == "F16") return core::DType::kF16;
  if (name == "BF16") return core::DType::kBF16;
  if (name == "I64") return core::DType::kI64;
  if (name == "I32") return core::DType::kI32;
  core::throw_bad_input(path, ": tensor '", tensor, "' has unsupported dtype ", name);
}

}  // namespace

int64_t TensorView::numel() const {
  int64_t n = 1;
  for (int64_t d : shape) n *= d;
  return n;
}

std::string TensorView::shape_string() const {
  std::string s = "[";
  for (size_t i = 0; i < shape.size(); ++i) {
    if (i) s += ',';
    s += std::to_string(shape[i]);
  }
  return s + "]";
}

SafeTensors SafeTensors::open(const std::string& path) {
  SafeTensors st;
  st.file_ = core::MappedFile::open(path);
  const size_t size = st.file_.size();
  if (size < 8) core::throw_bad_input(path, ": truncated safetensors file (", size, " bytes)");
  uint64_t header_len;
  std::memcpy(&header_len, st.file_.data(), 8);
  if (header_len > kMaxHeaderBytes || header_len > size - 8) {
    core::throw_bad_input(path, ": header length ", header_len, " runs past the end of the file (",
                          size, " bytes)");
  }
  const char* header = reinterpret_cast<const char*>(st.file_.data() + 8);
  nlohmann::json json = nlohmann::json::parse(header, header + header_len, nullptr, false);
  if (json.is_discarded() || !json.is_object()) {
    core::throw_bad_input(path, ": header is not a valid JSON object");
  }
  const std::byte* data = st.file_.data() + 8 + header_len;
  const size_t data_size = size - 8 - header_len;
  for (auto& [name, entry] : json.items()) {
    if (name == "__metadata__") continue;
    if (!entry.is_object() || !entry.contains("dtype") || !entry.contains("shape") ||
        !entry.contains("data_offsets") || !entry["dtype"].is_string() ||
        !entry["shape"].is_array() || !entry["data_offsets"].is_array() ||
        entry["data_offsets"].size() != 2) {
      core::throw_bad_input(path, ": malformed header entry for tensor '", name, "'");
    }
    TensorView view;
    view.name = name;
    view.dtype = parse_dtype(entry["dtype"].get<std::string>(), path, name);
    for (auto& d : entry["shape"]) {
      if (!d.is_number_unsigned()) core::throw_bad_input(path, ": bad shape for '", name, "'");
      view.shape.push_back(d.get<int64_t>());
    }
    auto& offs = entry["data_offsets"];
    if (!offs[0].is_number_unsigned() || !offs[1].is_number_unsigned()) {
      core::throw_bad_input(path, ": bad data_offsets for '", name, "'");
    }
    uint64_t begin = offs[0].get<uint64_t>();
    uint64_t end = offs[1].get<uint64_t>();
    if (begin > end || end > data_size) {
      core::throw_bad_input(path, ": tensor '", name, "' byte range [", begin, ", ", end,
                            ") lies outside the data section (", data_size,
                            " bytes; file truncated?)");
    }
    uint64_t expected = static_cast<uint64_t>(view.numel()) * core::dtype_size(view.dtype);
    if (end - begin != expected) {
      core::throw_bad_input(path, ": tensor '", name, "' has ", end - begin, " bytes but ",
                            core::dtype_name(view.dtype), view.shape_string(), " needs ", expected);
    }
    view.data = data + begin;
    view.nbytes = end - begin;
    st.tensors_.emplace(name, std::move(view));
  }
  return st;
}

const TensorView* SafeTensors::find(const std::string& name) const {
  auto it = tensors_.find(name);
  return it == tensors_.end() ? nullptr : &it->second;
}

const TensorView& SafeTensors::get(const std::string& name) const {
  const TensorView* view = find(name);
  if (view == nullptr) core::throw_bad_input(path(), ": missing tensor '", name, "'");
  return *view;
}

const TensorView& SafeTensors::get_float(const std::string& name,
                                         const std::vector<int64_t>& shape) const {
  const TensorView& t = get(name);
  if (t.shape != shape) {
    TensorView expected;
    expected.shape = shape;
    core::throw_bad_input(path(), ": tensor '", t.name, "' has shape ", t.shape_string(),
                          " but config.json implies ", expected.shape_string());
  }
  if (t.dtype != core::DType::kF32 && t.dtype != core::DType::kF16 &&
      t.dtype != core::DType::kBF16) {
    core::throw_bad_input(path(), ": tensor '", t.name, "' has dtype ", core::dtype_name(t.dtype),
                          "; expected F32, F16 or BF16");
  }
  return t;
}

}  // namespace attncache
