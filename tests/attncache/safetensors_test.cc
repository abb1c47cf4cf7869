#include "attncache/model/safetensors.h"

#include <gtest/gtest.h>

#include "core/error.h"
#include "support/safetensors_writer.h"
#include "support/temp_dir.h"

namespace attncache {
namespace {

using testing_support::f32_tensor;
using testing_support::safetensors_bytes;
using testing_support::write_file;

std::string open_error(const std::string& bytes) {
  testing_support::TempDir dir;
  write_file(dir.path("m.safetensors"), bytes);
  try {
    SafeTensors::open(dir.path("m.safetensors"));
  } catch (const core::Error& e) {
    EXPECT_EQ(e.kind(), core::ErrorKind::kBadInput);
    return e.what();
  }
  return "";
}

TEST(SafeTensors, ReadsTensorsInPlace) {
  testing_support::TempDir dir;
  auto a = f32_tensor("a", {2, 3}, 1.0f, 1.0f);
  testing_support::TestTensor b{"b", "F16", {2}, {0x00, 0x3C, 0x00, 0xC0}};
  write_file(dir.path("m.safetensors"), safetensors_bytes({a, b}));
  SafeTensors st = SafeTensors::open(dir.path("m.safetensors"));
  ASSERT_EQ(st.tensors().size(), 2u);
  const TensorView& ta = st.get("a");
  EXPECT_EQ(ta.shape, (std::vector<int64_t>{2, 3}));
  EXPECT_EQ(ta.dtype, core::DType::kF32);
  EXPECT_EQ(reinterpret_cast<const float*>(ta.data)[4], 5.0f);
  EXPECT_EQ(st.get("b").dtype, core::DType::kF16);
  EXPECT_EQ(st.find("c"), nullptr);
  EXPECT_THROW(st.get("c"), core::Error);
}

TEST(SafeTensors, RejectsTruncatedFiles) {
  EXPECT_NE(open_error("abc").find("truncated"), std::string::npos);
  std::string full = safetensors_bytes({f32_tensor("w", {16, 16})});
  std::string error = open_error(full.substr(0, full.size() - 100));
  EXPECT_NE(error.find("outside the data section"), std::string::npos) << error;
}

TEST(SafeTensors, RejectsHeaderLengthPastEndOfFile) {
  std::string error = open_error(safetensors_bytes({f32_tensor("w", {4})}, 1 << 20));
  EXPECT_NE(error.find("runs past the end"), std::string::npos) << error;
}

TEST(SafeTensors, RejectsOffsetsOutOfRangeAndSizeMismatch) {
  auto t = f32_tensor("w", {4});
  std::string bytes = safetensors_bytes({t});
  std::string shrunk = bytes;
  // Declare a shape larger than the stored bytes.
  auto pos = shrunk.find("[4]");
  shrunk.replace(pos, 3, "[5]");
  std::string error = open_error(shrunk);
  EXPECT_NE(error.find("needs 20"), std::string::npos) << error;
  std::string moved = bytes;
  pos = moved.find("[0,16]");
  ASSERT_NE(pos, std::string::npos);
  moved.replace(pos, 6, "[0,99]");
  error = open_error(moved);
  EXPECT_NE(error.find("outside the data section"), std::string::npos) << error;
}

TEST(SafeTensors, RejectsMalformedHeaders) {
  std::string bytes = safetensors_bytes({f32_tensor("w", {4})});
  std::string broken = bytes;
  broken[8] = '[';
  EXPECT_NE(open_error(broken).find("not a valid JSON object"), std::string::npos);
  testing_support::TestTensor odd{"w", "F8_E4M3", {4}, {1, 2, 3, 4}};
  EXPECT_NE(open_error(safetensors_bytes({odd})).find("unsupported dtype F8_E4M3"),
            std::string::npos);
  EXPECT_NE(open_error("").find("truncated"), std::string::npos);
}

TEST(SafeTensors, MissingFileIsBadInput) {
  EXPECT_THROW(SafeTensors::open("/nonexistent/model.safetensors"), core::Error);
}

}  // namespace
}  // namespace attncache
