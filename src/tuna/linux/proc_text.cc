#include "tuna/linux/proc_text.h"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <charconv>
#include <cstring>
#include <filesystem>

#include "core/error.h"
#include "core/text_lines.h"

namespace tuna::linux_tier {

std::string under_root(const std::string& root, std::string_view relative) {
  return (std::filesystem::path(root) / relative).string();
}

std::vector<std::string> read_proc_lines(const std::string& path) {
  // core::read_lines would say "cannot open input"; here the reader's path is what matters.
  if (!std::filesystem::exists(path)) core::throw_bad_input(path, ": no such file");
  return core::read_lines(path);
}

std::vector<std::string_view> split_fields(std::string_view line) {
  std::vector<std::string_view> fields;
  size_t i = 0;
  while (i < line.size()) {
    while (i < line.size() && (line[i] == ' ' || line[i] == '\t')) ++i;
    const size_t start = i;
    while (i < line.size() && line[i] != ' ' && line[i] != '\t') ++i;
    if (i > start) fields.push_back(line.substr(start, i - start));
  }
  return fields;
}

bool parse_u64(std::string_view text, uint64_t* value) {
  const char* end = text.data() + text.size();
  const auto [ptr, ec] = std::from_chars(text.data(), end, *value);
  return ec == std::errc() && ptr == end && !text.empty();
}

uint64_t read_u64_file(const std::string& path) {
  const std::vector<std::string> lines = read_proc_lines(path);
  uint64_t value = 0;
  const std::vector<std::string_view> fields =
      lines.empty() ? std::vector<std::string_view>{} : split_fields(lines[0]);
  if (lines.size() != 1 || fields.size() != 1 || !parse_u64(fields[0], &value)) {
    core::throw_bad_input(path, ":1: expected one unsigned integer, got '",
                          lines.empty() ? "" : lines[0], "'");
  }
  return value;
}

void write_sysctl(const std::string& path, uint64_t value) {
  const std::string text = std::to_string(value) + "\n";
  const int fd = ::open(path.c_str(), O_WRONLY | O_TRUNC | O_CLOEXEC);
  const auto fail = [&](const char* what) {
    const int err = errno;
    const std::string reason =
        core::cat(what, " ", path, ": ", std::strerror(err), " (errno ", err, ")");
    if (err == EACCES || err == EPERM || err == EROFS) {
      core::throw_bad_input(reason, "; writing sysctls needs root (CAP_SYS_ADMIN)");
    }
    if (err == EINVAL) core::throw_bad_input(reason, "; the kernel refused the value ", value);
    core::throw_internal(reason);
  };
  if (fd < 0) fail("cannot open");
  const ssize_t written = ::write(fd, text.data(), text.size());
  if (written != static_cast<ssize_t>(text.size())) {
    const int err = errno;
    ::close(fd);
    errno = written < 0 ? err : EIO;
    fail("cannot write");
  }
  if (::close(fd) != 0) fail("cannot close");
}

}  // namespace tuna::linux_tier
