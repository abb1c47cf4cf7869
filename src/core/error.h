// Errors crossing module boundaries. Two kinds, because the command line maps them to two exit
// codes: bad input (the user can fix it; exit 2) and internal failure (a bug or the system; exit
// 1).
#pragma once

#include <sstream>
#include <stdexcept>
#include <string>
#include <utility>

namespace core {

enum class ErrorKind { kBadInput, kInternal };

class Error : public std::runtime_error {
 public:
  Error(ErrorKind kind, const std::string& message) : std::runtime_error(message), kind_(kind) {}
  ErrorKind kind() const { return kind_; }
  int exit_code() const { return kind_ == ErrorKind::kBadInput ? 2 : 1; }

 private:
  ErrorKind kind_;
};

template <typename... Parts>
std::string cat(Parts&&... parts) {
  std::ostringstream out;
  (out << ... << std::forward<Parts>(parts));
  return out.str();
}

template <typename... Parts>
[[noreturn]] void throw_bad_input(Parts&&... parts) {
  throw Error(ErrorKind::kBadInput, cat(std::forward<Parts>(parts)...));
}

template <typename... Parts>
[[noreturn]] void throw_internal(Parts&&... parts) {
  throw Error(ErrorKind::kInternal, cat(std::forward<Parts>(parts)...));
}

}  // namespace core
