// The GGUF reader against files and values from the reference (gguf-py; see
// tests/data/gguf/make_goldens.py), and its errors on broken files.
#include "attncache/model/gguf.h"

#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "core/error.h"
#include "support/safetensors_writer.h"
#include "support/temp_dir.h"
#include "support/test_paths.h"

namespace attncache {
namespace {

using testing_support::write_file;

std::string golden_dir() { return testing_paths::data_dir() + "/gguf"; }
std::string types_path() { return golden_dir() + "/types.gguf"; }

std::string read_bytes(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::ostringstream s;
  s << in.rdbuf();
  return s.str();
}

nlohmann::json read_json(const std::string& path) {
  return nlohmann::json::parse(read_bytes(path));
}

// The message of the core::Error (bad input) that opening `bytes` as a GGUF file gives, or "".
std::string open_error(const std::string& bytes) {
  testing_support::TempDir dir;
  write_file(dir.path("m.gguf"), bytes);
  try {
    GgufFile::open(dir.path("m.gguf"));
  } catch (const core::Error& e) {
    EXPECT_EQ(e.kind(), core::ErrorKind::kBadInput);
    return e.what();
  }
  return "";
}

template <typename T>
void put(std::string& bytes, size_t pos, T value) {
  ASSERT_LE(pos + sizeof(T), bytes.size());
  std::memcpy(bytes.data() + pos, &value, sizeof(T));
}

// Byte position of the tensor-table entry of `name` just after its name: n_dims (u32), dims
// (u64 each), type (u32), offset (u64) follow.
size_t after_tensor_name(const std::string& bytes, const std::string& name) {
  std::string key(8, '\0');
  uint64_t n = name.size();
  std::memcpy(key.data(), &n, 8);
  key += name;
  size_t pos = bytes.find(key);
  EXPECT_NE(pos, std::string::npos) << name;
  return pos + key.size();
}

// A GGUF file built by hand: version, key/values already encoded, tensors (name, dims, type,
// offset) and a data section.
struct Builder {
  uint32_t version = 3;
  std::string kv;
  uint64_t n_kv = 0;
  std::string infos;
  uint64_t n_tensors = 0;
  std::string data;

  static std::string str(const std::string& s) {
    std::string out(8, '\0');
    uint64_t n = s.size();
    std::memcpy(out.data(), &n, 8);
    return out + s;
  }
  template <typename T>
  static std::string raw(T v) {
    return std::string(reinterpret_cast<const char*>(&v), sizeof v);
  }
  void add_tensor(const std::string& name, std::vector<uint64_t> dims, uint32_t type,
                  uint64_t offset) {
    infos += str(name) + raw<uint32_t>(static_cast<uint32_t>(dims.size()));
    for (uint64_t d : dims) infos += raw(d);
    infos += raw(type) + raw(offset);
    ++n_tensors;
  }
  std::string bytes(uint32_t alignment = 32) const {
    std::string out = "GGUF" + raw(version) + raw(n_tensors) + raw(n_kv) + kv + infos;
    out.resize((out.size() + alignment - 1) / alignment * alignment, '\0');
    return out + data;
  }
};

TEST(Gguf, ReadsMetadataOfEveryValueType) {
  GgufFile g = GgufFile::open(types_path());
  EXPECT_EQ(g.version(), 3u);
  EXPECT_EQ(g.alignment(), 64u);
  EXPECT_EQ(g.data_offset() % 64, 0u);
  EXPECT_EQ(g.get_string("general.architecture"), "test");
  EXPECT_EQ(g.get_uint("test.u8"), 200u);
  EXPECT_EQ(g.find("test.u8")->type, GgufValueType::kUint8);
  EXPECT_EQ(g.get_int("test.i8"), -100);
  EXPECT_EQ(g.get_uint("test.u16"), 60000u);
  EXPECT_EQ(g.get_int("test.i16"), -30000);
  EXPECT_EQ(g.get_uint("test.u32"), 4000000000u);
  EXPECT_EQ(g.get_int("test.i32"), -2000000000);
  EXPECT_EQ(g.get_uint("test.u64"), (uint64_t{1} << 63) + 5);
  EXPECT_EQ(g.get_int("test.i64"), -(int64_t{1} << 62) - 3);
  EXPECT_EQ(static_cast<float>(g.get_float("test.f32")), 0.1f);
  EXPECT_EQ(g.find("test.f32")->type, GgufValueType::kFloat32);
  EXPECT_EQ(g.get_float("test.f64"), -1.0 / 3.0);
  EXPECT_TRUE(g.get_bool("test.true"));
  EXPECT_FALSE(g.get_bool("test.false"));
  EXPECT_EQ(g.get_string("test.string"), "h\xc3\xa9llo, \xe2\x9c\x93 GGUF");
  EXPECT_EQ(g.get_strings("test.strings"),
            (std::vector<std::string>{"a", "", "\xc3\xbcmlaut", "\xe4\xb8\x89"}));
  const GgufValue::Array& i16s = g.get_array("test.i16s");
  EXPECT_EQ(g.find("test.i16s")->element_type, GgufValueType::kInt16);
  ASSERT_EQ(i16s.size(), 3u);
  EXPECT_EQ(std::get<int64_t>(i16s[2].value), -3);
  const GgufValue::Array& u64s = g.get_array("test.u64s");
  ASSERT_EQ(u64s.size(), 2u);
  EXPECT_EQ(std::get<uint64_t>(u64s[1].value), ~uint64_t{0});
  const GgufValue::Array& f32s = g.get_array("test.f32s");
  EXPECT_EQ(std::get<double>(f32s[1].value), -2.25);
  const GgufValue::Array& nested = g.get_array("test.nested");
  EXPECT_EQ(g.find("test.nested")->element_type, GgufValueType::kArray);
  ASSERT_EQ(nested.size(), 2u);
  const auto& inner = std::get<GgufValue::Array>(nested[0].value);
  ASSERT_EQ(inner.size(), 2u);
  EXPECT_EQ(inner[0].type, GgufValueType::kInt32);
  EXPECT_EQ(std::get<int64_t>(inner[1].value), 2);
  EXPECT_EQ(g.metadata().size(), 20u);
  EXPECT_EQ(g.get_uint("test.absent", 7), 7u);
  EXPECT_EQ(g.get_float("test.absent", 0.5), 0.5);
}

TEST(Gguf, TypedGettersNameTheKeyOnMismatch) {
  GgufFile g = GgufFile::open(types_path());
  auto message = [](auto&& f) -> std::string {
    try {
      f();
    } catch (const core::Error& e) {
      EXPECT_EQ(e.kind(), core::ErrorKind::kBadInput);
      return e.what();
    }
    return "";
  };
  EXPECT_NE(message([&] { g.get_string("test.u8"); }).find("'test.u8' is uint8, expected string"),
            std::string::npos);
  EXPECT_NE(message([&] { g.get_uint("test.i8"); }).find("'test.i8' is int8"), std::string::npos);
  EXPECT_NE(message([&] { g.get_int("test.u64"); }).find("'test.u64' is uint64"),
            std::string::npos);
  EXPECT_NE(message([&] { g.get_strings("test.i16s"); }).find("array of int16"), std::string::npos);
  EXPECT_NE(message([&] {
              g.get_bool("llama.block_count");
            }).find("missing metadata key 'llama.block_count'"),
            std::string::npos);
  EXPECT_NE(message([&] { g.tensor("nope"); }).find("missing tensor 'nope'"), std::string::npos);
}

TEST(Gguf, ReadsTheTensorTable) {
  GgufFile g = GgufFile::open(types_path());
  nlohmann::json manifest = read_json(golden_dir() + "/types.json");
  ASSERT_EQ(g.tensors().size(), manifest["tensors"].size());
  const size_t file_size = std::filesystem::file_size(types_path());
  for (size_t i = 0; i < g.tensors().size(); ++i) {
    const GgufTensor& t = g.tensors()[i];
    const auto& m = manifest["tensors"][i];
    EXPECT_EQ(t.name, m["name"].get<std::string>());
    EXPECT_EQ(ggml_type_name(t.type), m["type"].get<std::string>());
    EXPECT_EQ(t.dims, m["dims"].get<std::vector<int64_t>>());
    EXPECT_EQ(t.numel(), m["count"].get<int64_t>());
    EXPECT_EQ(t.offset % 64, 0u) << t.name;
    EXPECT_LE(g.data_offset() + t.offset + t.nbytes, file_size);
    EXPECT_EQ(&g.tensor(t.name), &t);
  }
  const GgufTensor& cube = g.tensor("t.cube_q8_0");
  EXPECT_EQ(cube.dims, (std::vector<int64_t>{32, 3, 2}));
  EXPECT_EQ(cube.shape(), (std::vector<int64_t>{2, 3, 32}));
  EXPECT_EQ(cube.nbytes, 6u * 34u);
  EXPECT_EQ(g.find_tensor("t.absent"), nullptr);
}

// Every tensor of types.gguf dequantizes to exactly what gguf.quants.dequantize gives.
class GgufDequantize : public testing::TestWithParam<std::string> {};

TEST_P(GgufDequantize, MatchesTheReferenceExactly) {
  GgufFile g = GgufFile::open(types_path());
  nlohmann::json manifest = read_json(golden_dir() + "/types.json");
  const std::string golden = read_bytes(golden_dir() + "/types.f32");
  for (const auto& m : manifest["tensors"]) {
    if (m["name"] != GetParam()) continue;
    const GgufTensor& t = g.tensor(GetParam());
    std::vector<float> got = g.dequantize(t);
    const size_t count = m["count"].get<size_t>();
    ASSERT_EQ(got.size(), count);
    std::vector<float> want(count);
    std::memcpy(want.data(), golden.data() + m["offset"].get<size_t>() * 4, count * 4);
    double max_abs = 0;
    size_t mismatches = 0;
    for (size_t i = 0; i < count; ++i) {
      ASSERT_TRUE(std::isfinite(want[i])) << i;
      max_abs = std::max(max_abs, std::abs(double(got[i]) - want[i]));
      mismatches += std::memcmp(&got[i], &want[i], 4) != 0;
    }
    std::cout << "[ gguf     ] " << GetParam() << " (" << m["type"].get<std::string>()
              << "): max |diff| vs gguf-py " << max_abs << " over " << count << " values\n";
    EXPECT_EQ(mismatches, 0u) << "max abs diff " << max_abs;
    // Dequantizing a range of blocks gives the same values as the whole tensor.
    const int64_t block = ggml_type_traits(t.type).block_size;
    std::vector<float> part(block);
    g.dequantize_blocks(t, 1, 1, part.data());
    EXPECT_EQ(0, std::memcmp(part.data(), got.data() + block, block * 4));
    return;
  }
  FAIL() << "no golden for " << GetParam();
}

INSTANTIATE_TEST_SUITE_P(Types, GgufDequantize,
                         testing::Values("t.f32", "t.f16", "t.bf16", "t.q4_0", "t.q4_1", "t.q5_0",
                                         "t.q5_1", "t.q8_0", "t.q2_k", "t.q3_k", "t.q4_k", "t.q5_k",
                                         "t.q6_k", "t.cube_q8_0"),
                         [](const auto& info) { return info.param.substr(2); });

TEST(Gguf, DefaultAlignmentIs32) {
  Builder b;
  b.add_tensor("w", {4}, 0, 0);
  b.add_tensor("v", {2}, 0, 32);
  b.data = std::string(40, '\0');
  float values[2] = {1.5f, -2.0f};
  std::memcpy(b.data.data() + 32, values, 8);
  testing_support::TempDir dir;
  write_file(dir.path("m.gguf"), b.bytes());
  GgufFile g = GgufFile::open(dir.path("m.gguf"));
  EXPECT_EQ(g.alignment(), 32u);
  EXPECT_EQ(g.data_offset() % 32, 0u);
  EXPECT_EQ(g.dequantize(g.tensor("v")), (std::vector<float>{1.5f, -2.0f}));
  b.version = 2;  // version 2 has the same layout
  write_file(dir.path("m2.gguf"), b.bytes());
  EXPECT_EQ(GgufFile::open(dir.path("m2.gguf")).version(), 2u);
}

TEST(Gguf, RejectsWrongMagic) {
  std::string bytes = read_bytes(types_path());
  bytes[0] = 'X';
  EXPECT_NE(open_error(bytes).find("not a GGUF file"), std::string::npos);
  EXPECT_NE(open_error("GG").find("truncated GGUF file: magic"), std::string::npos);
}

TEST(Gguf, RejectsUnsupportedVersions) {
  std::string bytes = read_bytes(types_path());
  put<uint32_t>(bytes, 4, 1);
  EXPECT_NE(open_error(bytes).find("GGUF version 1 is not supported (this reader handles versions "
                                   "2 and 3)"),
            std::string::npos);
  put<uint32_t>(bytes, 4, 4);
  EXPECT_NE(open_error(bytes).find("GGUF version 4 is not supported"), std::string::npos);
  put<uint32_t>(bytes, 4, 0x03000000u);
  EXPECT_NE(open_error(bytes).find("big-endian GGUF files are not supported"), std::string::npos);
}

TEST(Gguf, RejectsUnknownTensorType) {
  std::string bytes = read_bytes(types_path());
  const size_t pos = after_tensor_name(bytes, "t.q4_0");
  put<uint32_t>(bytes, pos + 4 + 2 * 8, 99);
  std::string error = open_error(bytes);
  EXPECT_NE(error.find("tensor 't.q4_0' has unknown tensor type 99"), std::string::npos) << error;
}

TEST(Gguf, RefusesToDequantizeTypesItCannot) {
  // IQ4_NL has Q4_0's block geometry (32 values in 18 bytes), so the file stays consistent.
  std::string bytes = read_bytes(types_path());
  const size_t pos = after_tensor_name(bytes, "t.q4_0");
  put<uint32_t>(bytes, pos + 4 + 2 * 8, static_cast<uint32_t>(GgmlType::kIQ4_NL));
  testing_support::TempDir dir;
  write_file(dir.path("m.gguf"), bytes);
  GgufFile g = GgufFile::open(dir.path("m.gguf"));
  EXPECT_EQ(g.tensor("t.q4_0").type, GgmlType::kIQ4_NL);
  try {
    g.dequantize(g.tensor("t.q4_0"));
    FAIL() << "expected an error";
  } catch (const core::Error& e) {
    EXPECT_EQ(e.kind(), core::ErrorKind::kBadInput);
    EXPECT_NE(std::string(e.what()).find("tensor 't.q4_0' has type IQ4_NL, which this engine "
                                         "cannot dequantize (it handles F32, F16, Q4_0"),
              std::string::npos)
        << e.what();
  }
}

TEST(Gguf, RejectsTruncatedFiles) {
  const std::string bytes = read_bytes(types_path());
  // Cut inside the tensor data: the last tensor runs past the end.
  std::string error = open_error(bytes.substr(0, bytes.size() - 100));
  EXPECT_NE(error.find("tensor 't.cube_q8_0' (Q8_0[32,3,2], 204 bytes at data offset"),
            std::string::npos)
      << error;
  EXPECT_NE(error.find("runs past the end of the data section"), std::string::npos) << error;
  // Cut inside the metadata.
  error = open_error(bytes.substr(0, bytes.find("test.nested") + 5));
  EXPECT_NE(error.find("truncated GGUF file: metadata"), std::string::npos) << error;
  // Cut inside the tensor table.
  const size_t pos = after_tensor_name(bytes, "t.q8_0");
  error = open_error(bytes.substr(0, pos + 6));
  EXPECT_NE(error.find("truncated GGUF file: tensor 't.q8_0' dimensions"), std::string::npos)
      << error;
}

TEST(Gguf, RejectsTensorOffsetsPastTheEnd) {
  std::string bytes = read_bytes(types_path());
  const size_t pos = after_tensor_name(bytes, "t.q6_k");
  put<uint64_t>(bytes, pos + 4 + 2 * 8 + 4, uint64_t{1} << 40);
  std::string error = open_error(bytes);
  EXPECT_NE(error.find("tensor 't.q6_k' (Q6_K[512,1], 420 bytes at data offset 1099511627776) "
                       "runs past the end of the data section"),
            std::string::npos)
      << error;
  put<uint64_t>(bytes, pos + 4 + 2 * 8 + 4, ~uint64_t{0} - 63);  // offset + size overflows
  EXPECT_NE(open_error(bytes).find("runs past the end"), std::string::npos);
  put<uint64_t>(bytes, pos + 4 + 2 * 8 + 4, 65);
  EXPECT_NE(open_error(bytes).find("offset 65 is not a multiple of the alignment 64"),
            std::string::npos);
}

TEST(Gguf, RejectsAbsurdCountsAndSizes) {
  const std::string bytes = read_bytes(types_path());
  std::string b = bytes;
  put<uint64_t>(b, 8, uint64_t{1} << 60);
  EXPECT_NE(open_error(b).find("header claims 1152921504606846976 tensors"), std::string::npos);
  b = bytes;
  put<uint64_t>(b, 16, uint64_t{1} << 58);
  EXPECT_NE(open_error(b).find("metadata key/values, more than the"), std::string::npos);
  // An array count far beyond the file.
  b = bytes;
  size_t pos = b.find("test.strings");
  ASSERT_NE(pos, std::string::npos);
  put<uint64_t>(b, pos + 12 + 4 + 4, uint64_t{1} << 50);
  std::string error = open_error(b);
  EXPECT_NE(error.find("metadata value 'test.strings' claims 1125899906842624 elements of type "
                       "string"),
            std::string::npos)
      << error;
  // A string length far beyond the file.
  b = bytes;
  pos = b.find("test.string");
  put<uint64_t>(b, pos + 11 + 4, uint64_t{1} << 40);
  error = open_error(b);
  EXPECT_NE(error.find("truncated GGUF file: metadata value 'test.string'"), std::string::npos)
      << error;
  // Dimensions whose product overflows, five dimensions, a row not a whole number of blocks.
  Builder big;
  big.add_tensor("w", {uint64_t{1} << 40, uint64_t{1} << 40}, 0, 0);
  EXPECT_NE(open_error(big.bytes()).find("tensor 'w' has absurd dimensions"), std::string::npos);
  Builder five;
  five.add_tensor("w", {1, 1, 1, 1, 1}, 0, 0);
  EXPECT_NE(open_error(five.bytes()).find("has 5 dimensions (at most 4)"), std::string::npos);
  Builder ragged;
  ragged.add_tensor("w", {48, 2}, static_cast<uint32_t>(GgmlType::kQ8_0), 0);
  ragged.data = std::string(1024, '\0');
  EXPECT_NE(open_error(ragged.bytes())
                .find("rows of 48 values, not a multiple of Q8_0's block "
                      "size 32"),
            std::string::npos);
}

TEST(Gguf, RejectsBadMetadata) {
  const std::string bytes = read_bytes(types_path());
  std::string b = bytes;
  size_t pos = b.find("general.alignment");
  put<uint32_t>(b, pos + 17 + 4, 48);
  EXPECT_NE(open_error(b).find("general.alignment 48 is not a power of two"), std::string::npos);
  b = bytes;
  pos = b.find("test.u8");
  put<uint32_t>(b, pos + 7, 13);
  EXPECT_NE(open_error(b).find("metadata key 'test.u8' has unknown value type 13"),
            std::string::npos);
  b = bytes;
  pos = b.find("test.true");
  b[pos + 9 + 4] = 2;
  EXPECT_NE(open_error(b).find("is a bool with value 2"), std::string::npos);
  Builder twice;
  twice.kv = Builder::str("k") + Builder::raw<uint32_t>(4) + Builder::raw<uint32_t>(1);
  twice.kv += twice.kv;
  twice.n_kv = 2;
  EXPECT_NE(open_error(twice.bytes()).find("metadata key 'k' appears twice"), std::string::npos);
  Builder deep;  // arrays nested nine deep
  deep.kv = Builder::str("k") + Builder::raw<uint32_t>(9);
  for (int i = 0; i < 9; ++i) deep.kv += Builder::raw<uint32_t>(9) + Builder::raw<uint64_t>(1);
  deep.kv += Builder::raw<uint32_t>(0) + Builder::raw<uint64_t>(1) + std::string(1, '\0');
  deep.n_kv = 1;
  EXPECT_NE(open_error(deep.bytes()).find("nests arrays deeper than 8"), std::string::npos);
}

// The real SmolLM2-135M-Instruct GGUF (scripts/fetch-models.sh SmolLM2-135M-Instruct): its
// metadata, and a few blocks of its Q8_0, Q4_1 and F32 tensors against gguf-py.
TEST(GgufRealModel, SmolLM2BlocksMatchTheReference) {
  const nlohmann::json ref = read_json(golden_dir() + "/SmolLM2-135M-Instruct.blocks.json");
  const std::string path = testing_paths::source_dir() + "/" + ref["file"].get<std::string>();
  if (!std::filesystem::exists(path)) {
    GTEST_SKIP() << path << " is absent (scripts/fetch-models.sh SmolLM2-135M-Instruct)";
  }
  GgufFile g = GgufFile::open(path);
  EXPECT_EQ(g.version(), 3u);
  EXPECT_EQ(g.alignment(), 32u);
  EXPECT_EQ(g.tensors().size(), ref["tensor_count"].get<size_t>());
  EXPECT_EQ(g.get_string("general.architecture"), ref["architecture"].get<std::string>());
  EXPECT_EQ(g.get_uint("llama.block_count"), ref["block_count"].get<uint64_t>());
  EXPECT_EQ(g.get_uint("llama.embedding_length"), ref["embedding_length"].get<uint64_t>());
  EXPECT_EQ(g.get_strings("tokenizer.ggml.tokens").size(), ref["vocab_size"].get<size_t>());
  EXPECT_EQ(g.get_array("tokenizer.ggml.merges").size(), 48900u);
  EXPECT_EQ(static_cast<float>(g.get_float("llama.rope.freq_base")), 100000.0f);
  const GgufTensor& embd = g.tensor("token_embd.weight");
  EXPECT_EQ(embd.type, GgmlType::kQ8_0);
  EXPECT_EQ(embd.shape(), (std::vector<int64_t>{49152, 576}));
  for (const auto& entry : ref["blocks"]) {
    const GgufTensor& t = g.tensor(entry["tensor"].get<std::string>());
    EXPECT_EQ(ggml_type_name(t.type), entry["type"].get<std::string>());
    const std::vector<float> want = entry["values"].get<std::vector<float>>();
    std::vector<float> got(want.size());
    g.dequantize_blocks(t, entry["block"].get<int64_t>(), 1, got.data());
    EXPECT_EQ(got, want) << t.name << " block " << entry["block"];
  }
  // The whole of one Q4_1 tensor agrees with its blocks.
  const GgufTensor& q = g.tensor("blk.0.attn_q.weight");
  std::vector<float> all = g.dequantize(q);
  ASSERT_EQ(all.size(), 576u * 576u);
  std::vector<float> last(32);
  g.dequantize_blocks(q, 10367, 1, last.data());
  EXPECT_EQ(0, std::memcmp(last.data(), all.data() + 10367 * 32, 32 * 4));
}

}  // namespace
}  // namespace attncache
