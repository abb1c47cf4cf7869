#include "core/json_file.h"

#include <fstream>
#include <sstream>

#include "core/error.h"

namespace core {

nlohmann::json read_json_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw_bad_input("cannot open ", path);
  std::stringstream buffer;
  buffer << in.rdbuf();
  std::string text = buffer.str();
  try {
    return nlohmann::json::parse(text);
  } catch (const nlohmann::json::parse_error& e) {
    throw_bad_input(path, ": malformed JSON: ", e.what());
  }
}

}  // namespace core
