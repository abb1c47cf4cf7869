// Reading and writing the small text files of /proc and /sys under a root path. Every reader in
// this folder takes a root ("/" on a real machine, a fake tree in tests) and names the full path
// and line in its errors, so an operator can see which file of which kernel did not parse.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace tuna::linux_tier {

// `relative` (e.g. "proc/vmstat") under `root`.
std::string under_root(const std::string& root, std::string_view relative);

// The file's lines. Throws core::Error (bad input) naming the path when it cannot be read.
std::vector<std::string> read_proc_lines(const std::string& path);

// The whitespace-separated fields of a line.
std::vector<std::string_view> split_fields(std::string_view line);

// Parses a whole field as a decimal unsigned integer; false on anything else.
bool parse_u64(std::string_view text, uint64_t* value);

// A file holding one unsigned integer, as /proc/sys files do. Throws core::Error (bad input)
// naming the path when it is missing or holds anything else.
uint64_t read_u64_file(const std::string& path);

// Writes `value` to a sysctl file in place: /proc/sys files cannot be replaced by renaming, and
// the kernel applies a value on the write itself. Throws core::Error naming the path and errno
// (bad input for permission, internal otherwise).
void write_sysctl(const std::string& path, uint64_t value);

}  // namespace tuna::linux_tier
