// Writes a file so that readers see either the old file or the complete new one: data goes to a
// temporary file beside the target, which commit() flushes and renames over it. Destroying an
// uncommitted writer removes the temporary file.
#pragma once

#include <cstdio>
#include <string>
#include <string_view>

namespace core {

class AtomicFileWriter {
 public:
  // Throws core::Error (bad input) when the temporary file cannot be created.
  explicit AtomicFileWriter(std::string path);
  AtomicFileWriter(const AtomicFileWriter&) = delete;
  AtomicFileWriter& operator=(const AtomicFileWriter&) = delete;
  ~AtomicFileWriter();

  std::FILE* stream() { return file_; }
  void write(std::string_view bytes);
  // Throws core::Error (internal) when flushing or renaming fails.
  void commit();

 private:
  std::string path_;
  std::string temp_path_;
  std::FILE* file_ = nullptr;
};

}  // namespace core
