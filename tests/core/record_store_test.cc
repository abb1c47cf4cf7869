// The record store under the map database: round trip, alignment, and every way a file can be
// wrong (truncated, corrupt, another format, another version) giving a clear error.
#include "core/record_store.h"

#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>

#include "core/error.h"
#include "support/temp_dir.h"

namespace core {
namespace {

std::vector<std::byte> bytes(std::initializer_list<int> values) {
  std::vector<std::byte> out;
  for (int v : values) out.push_back(static_cast<std::byte>(v));
  return out;
}

std::string write_store(const std::string& path) {
  RecordStoreWriter w(path, "TEST", 3);
  const auto a = bytes({1, 2, 3});
  const std::vector<float> f = {1.5f, -2.0f};
  w.add(7, a);
  const std::span<const std::byte> pieces[] = {std::as_bytes(std::span<const float>(f)), a};
  w.add(9, pieces);
  w.finish({{"name", "t"}});
  return path;
}

void flip_byte(const std::string& path, long offset) {
  std::fstream f(path, std::ios::in | std::ios::out | std::ios::binary);
  f.seekg(offset < 0 ? offset : offset, offset < 0 ? std::ios::end : std::ios::beg);
  char c;
  f.get(c);
  f.seekp(offset, offset < 0 ? std::ios::end : std::ios::beg);
  f.put(static_cast<char>(c ^ 0x5a));
}

std::string error_of(const std::function<void()>& fn) {
  try {
    fn();
  } catch (const Error& e) {
    EXPECT_EQ(e.kind(), ErrorKind::kBadInput);
    return e.what();
  }
  return "(no error)";
}

TEST(RecordStore, RoundTripsRecordsKeysAndMetadataAligned) {
  testing_support::TempDir dir;
  RecordStore s = RecordStore::open(write_store(dir.path("s.bin")), "TEST", 3);
  ASSERT_EQ(s.count(), 2u);
  EXPECT_EQ(s.key(0), 7u);
  EXPECT_EQ(s.key(1), 9u);
  EXPECT_EQ(s.meta()["name"], "t");
  ASSERT_EQ(s.record(0).size(), 3u);
  EXPECT_EQ(s.record(0)[2], std::byte{3});
  // Second record: 8 bytes of floats, padding to 64, then the 3 bytes.
  ASSERT_EQ(s.record(1).size(), 67u);
  EXPECT_EQ(reinterpret_cast<uintptr_t>(s.record(1).data()) % 64, 0u);
  EXPECT_EQ(view_as<float>(s.record(1))[1], -2.0f);
  EXPECT_EQ(s.record(1)[64], std::byte{1});
  EXPECT_NO_THROW(s.verify());
}

TEST(RecordStore, NamesEachKindOfDamage) {
  testing_support::TempDir dir;
  const std::string path = dir.path("s.bin");
  write_store(path);
  EXPECT_NE(error_of([&] { RecordStore::open(path, "OTHER", 3); }).find("wrong magic"),
            std::string::npos);
  EXPECT_NE(error_of([&] { RecordStore::open(path, "TEST", 4); }).find("format version 3"),
            std::string::npos);

  flip_byte(path, 16);  // inside the header
  EXPECT_NE(error_of([&] { RecordStore::open(path, "TEST", 3); }).find("corrupt header"),
            std::string::npos);
  write_store(path);
  flip_byte(path, -5);  // inside the table
  EXPECT_NE(error_of([&] { RecordStore::open(path, "TEST", 3); }).find("corrupt record table"),
            std::string::npos);
  write_store(path);
  flip_byte(path, 65);  // inside record 0: found by verify() only
  RecordStore s = RecordStore::open(path, "TEST", 3);
  EXPECT_NE(error_of([&] { s.verify(); }).find("record 0 is corrupt"), std::string::npos);

  write_store(path);
  std::filesystem::resize_file(path, 100);
  EXPECT_NE(error_of([&] { RecordStore::open(path, "TEST", 3); }).find("truncated"),
            std::string::npos);
  std::filesystem::resize_file(path, 10);
  EXPECT_NE(error_of([&] { RecordStore::open(path, "TEST", 3); }).find("truncated"),
            std::string::npos);
}

TEST(RecordStore, UnfinishedWriterLeavesNoFile) {
  testing_support::TempDir dir;
  {
    RecordStoreWriter w(dir.path("s.bin"), "TEST", 1);
    w.add(1, bytes({1}));
  }  // destroyed without finish()
  EXPECT_TRUE(std::filesystem::is_empty(dir.path()));
}

}  // namespace
}  // namespace core
