#pragma once

#include <string>
#include <vector>

namespace core {

// Reads a text file ("-" for stdin) as lines without their line endings ("\n" or "\r\n").
// Throws core::Error (bad input) when the file cannot be read.
std::vector<std::string> read_lines(const std::string& path);

}  // namespace core
