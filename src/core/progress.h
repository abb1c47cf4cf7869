// Progress of long work on stderr: a redrawn bar with rate and ETA on a terminal, a plain line
// every few seconds otherwise (logs and CI stay readable).
#pragma once

#include <chrono>
#include <cstdio>
#include <string>

namespace core {

class Progress {
 public:
  // `enabled` false makes every call a no-op (short jobs should not print anything).
  Progress(std::string label, size_t total, bool enabled, std::FILE* out = stderr);
  ~Progress();
  void advance(size_t n);
  void finish();

 private:
  void draw(bool final_line);

  std::string label_;
  size_t total_;
  size_t done_ = 0;
  bool enabled_;
  bool tty_;
  bool finished_ = false;
  std::FILE* out_;
  std::chrono::steady_clock::time_point start_;
  std::chrono::steady_clock::time_point last_draw_;
};

}  // namespace core
