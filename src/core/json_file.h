#pragma once

#include <nlohmann/json.hpp>
#include <string>

namespace core {

// Reads and parses a JSON file. Throws core::Error (bad input) naming the file when it is
// missing or malformed.
nlohmann::json read_json_file(const std::string& path);

}  // namespace core
