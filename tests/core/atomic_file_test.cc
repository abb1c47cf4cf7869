#include "core/atomic_file.h"

#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <sstream>

#include "core/error.h"
#include "core/text_lines.h"
#include "support/temp_dir.h"

namespace core {
namespace {

std::string slurp(const std::string& path) {
  std::ifstream in(path);
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

TEST(AtomicFileWriter, CommitReplacesTheTarget) {
  testing_support::TempDir dir;
  std::ofstream(dir.path("out.txt")) << "old";
  {
    AtomicFileWriter w(dir.path("out.txt"));
    w.write("new contents");
    EXPECT_EQ(slurp(dir.path("out.txt")), "old");  // readers see the old file until commit
    w.commit();
  }
  EXPECT_EQ(slurp(dir.path("out.txt")), "new contents");
  EXPECT_EQ(std::distance(std::filesystem::directory_iterator(dir.path()), {}), 1);
}

TEST(AtomicFileWriter, AbandonedWriteLeavesNothingBehind) {
  testing_support::TempDir dir;
  {
    AtomicFileWriter w(dir.path("out.txt"));
    w.write("partial");
  }
  EXPECT_FALSE(std::filesystem::exists(dir.path("out.txt")));
  EXPECT_EQ(std::distance(std::filesystem::directory_iterator(dir.path()), {}), 0);
}

TEST(AtomicFileWriter, UnwritableDirectoryIsBadInput) {
  try {
    AtomicFileWriter w("/nonexistent-dir/out.txt");
    FAIL();
  } catch (const Error& e) {
    EXPECT_EQ(e.exit_code(), 2);
    EXPECT_NE(std::string(e.what()).find("/nonexistent-dir/out.txt"), std::string::npos);
  }
}

TEST(ReadLines, StripsLineEndings) {
  testing_support::TempDir dir;
  std::ofstream(dir.path("in.txt"), std::ios::binary) << "a\r\nb\n\nc";
  std::vector<std::string> lines = read_lines(dir.path("in.txt"));
  EXPECT_EQ(lines, (std::vector<std::string>{"a", "b", "", "c"}));
  EXPECT_THROW(read_lines(dir.path("missing.txt")), Error);
}

}  // namespace
}  // namespace core
