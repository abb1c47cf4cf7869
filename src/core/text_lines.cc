#include "core/text_lines.h"

#include <fstream>
#include <iostream>

#include "core/error.h"

namespace core {

std::vector<std::string> read_lines(const std::string& path) {
  std::ifstream file;
  std::istream* in = &std::cin;
  if (path != "-") {
    file.open(path, std::ios::binary);
    if (!file) throw_bad_input("cannot open input ", path);
    in = &file;
  }
  std::vector<std::string> lines;
  std::string line;
  while (std::getline(*in, line)) {
    if (!line.empty() && line.back() == '\r') line.pop_back();
    lines.push_back(std::move(line));
  }
  if (in->bad()) throw_bad_input("error reading ", path);
  return lines;
}

}  // namespace core
