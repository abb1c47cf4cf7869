// Runs one of the project's binaries as a user would and captures its exit code and output.
#pragma once

#include <sys/wait.h>

#include <array>
#include <cstdio>
#include <string>

namespace testing_support {

struct CliResult {
  int exit_code;
  std::string output;  // stdout and stderr
};

// `binary`: the executable's path (default: attncache).
inline CliResult run_cli(const std::string& args, const std::string& binary = ATTNCACHE_BINARY) {
  const std::string cmd = binary + " " + args + " 2>&1";
  FILE* pipe = ::popen(cmd.c_str(), "r");
  CliResult r{-1, ""};
  std::array<char, 4096> buf;
  size_t n;
  while ((n = std::fread(buf.data(), 1, buf.size(), pipe)) > 0) r.output.append(buf.data(), n);
  const int status = ::pclose(pipe);
  r.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
  return r;
}

}  // namespace testing_support
