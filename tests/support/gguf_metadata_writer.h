// Writes GGUF v3 files for tests: metadata (copies of a real model's keys with some replaced, or
// small synthetic vocabularies) and optionally tensors given as raw bytes of any ggml type.
#pragma once

#include <cstdint>
#include <cstring>
#include <fstream>
#include <map>
#include <string>
#include <vector>

#include "attncache/model/gguf.h"

namespace testing_support {

class GgufMetadataWriter {
 public:
  using Value = attncache::GgufValue;
  using Type = attncache::GgufValueType;

  void set(const std::string& key, Value value) { kv_[key] = std::move(value); }
  void erase(const std::string& key) { kv_.erase(key); }

  void set_string(const std::string& key, std::string s) {
    Value v;
    v.type = Type::kString;
    v.value = std::move(s);
    set(key, std::move(v));
  }
  void set_bool(const std::string& key, bool b) {
    Value v;
    v.type = Type::kBool;
    v.value = b;
    set(key, std::move(v));
  }
  void set_uint32(const std::string& key, uint32_t u) {
    Value v;
    v.type = Type::kUint32;
    v.value = uint64_t{u};
    set(key, std::move(v));
  }
  void set_strings(const std::string& key, const std::vector<std::string>& items) {
    Value v;
    v.type = Type::kArray;
    v.element_type = Type::kString;
    Value::Array a;
    for (const std::string& s : items) {
      Value e;
      e.type = Type::kString;
      e.value = s;
      a.push_back(std::move(e));
    }
    v.value = std::move(a);
    set(key, std::move(v));
  }
  void set_float32(const std::string& key, float f) {
    Value v;
    v.type = Type::kFloat32;
    v.value = double{f};
    set(key, std::move(v));
  }
  // dims as stored: innermost first ({in, out} for a PyTorch [out, in] weight).
  void add_tensor(const std::string& name, std::vector<uint64_t> dims, uint32_t type,
                  std::string data) {
    tensors_.push_back({name, std::move(dims), type, std::move(data)});
  }
  void set_int32s(const std::string& key, const std::vector<int32_t>& items) {
    Value v;
    v.type = Type::kArray;
    v.element_type = Type::kInt32;
    Value::Array a;
    for (int32_t i : items) {
      Value e;
      e.type = Type::kInt32;
      e.value = int64_t{i};
      a.push_back(std::move(e));
    }
    v.value = std::move(a);
    set(key, std::move(v));
  }

  std::string bytes() const {
    std::string out = "GGUF";
    raw<uint32_t>(&out, 3);
    raw<uint64_t>(&out, tensors_.size());
    raw<uint64_t>(&out, kv_.size());
    for (const auto& [key, value] : kv_) {
      str(&out, key);
      raw<uint32_t>(&out, static_cast<uint32_t>(value.type));
      put(&out, value);
    }
    std::string data;
    for (const Tensor& t : tensors_) {
      str(&out, t.name);
      raw<uint32_t>(&out, static_cast<uint32_t>(t.dims.size()));
      for (uint64_t d : t.dims) raw<uint64_t>(&out, d);
      raw<uint32_t>(&out, t.type);
      raw<uint64_t>(&out, data.size());
      data += t.data;
      data.resize((data.size() + 31) / 32 * 32, '\0');
    }
    out.resize((out.size() + 31) / 32 * 32, '\0');  // the data section is aligned
    return out + data;
  }

  void write(const std::string& path) const { std::ofstream(path, std::ios::binary) << bytes(); }

 private:
  template <typename T>
  static void raw(std::string* out, T v) {
    out->append(reinterpret_cast<const char*>(&v), sizeof v);
  }
  static void str(std::string* out, const std::string& s) {
    raw<uint64_t>(out, s.size());
    *out += s;
  }
  template <typename T>
  static T integer(const Value& v) {
    if (const auto* u = std::get_if<uint64_t>(&v.value)) return static_cast<T>(*u);
    return static_cast<T>(std::get<int64_t>(v.value));
  }
  // The value's payload (its type is written by the caller: the key's, or the array's).
  static void put(std::string* out, const Value& v) {
    switch (v.type) {
      case Type::kUint8:
        return raw(out, integer<uint8_t>(v));
      case Type::kInt8:
        return raw(out, integer<int8_t>(v));
      case Type::kUint16:
        return raw(out, integer<uint16_t>(v));
      case Type::kInt16:
        return raw(out, integer<int16_t>(v));
      case Type::kUint32:
        return raw(out, integer<uint32_t>(v));
      case Type::kInt32:
        return raw(out, integer<int32_t>(v));
      case Type::kUint64:
        return raw(out, integer<uint64_t>(v));
      case Type::kInt64:
        return raw(out, integer<int64_t>(v));
      case Type::kFloat32:
        return raw(out, static_cast<float>(std::get<double>(v.value)));
      case Type::kFloat64:
        return raw(out, std::get<double>(v.value));
      case Type::kBool:
        return raw<uint8_t>(out, std::get<bool>(v.value) ? 1 : 0);
      case Type::kString:
        return str(out, std::get<std::string>(v.value));
      case Type::kArray: {
        const auto& a = std::get<Value::Array>(v.value);
        raw<uint32_t>(out, static_cast<uint32_t>(v.element_type));
        raw<uint64_t>(out, a.size());
        for (const Value& e : a) put(out, e);
        return;
      }
    }
  }

  struct Tensor {
    std::string name;
    std::vector<uint64_t> dims;
    uint32_t type;
    std::string data;
  };
  std::map<std::string, Value> kv_;
  std::vector<Tensor> tensors_;
};

}  // namespace testing_support
