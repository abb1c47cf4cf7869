#include "tuna/workloads/lackey_trace.h"

#include <cstdio>
#include <cstring>
#include <fstream>
#include <unordered_map>

#include "core/error.h"

namespace tuna {
namespace {

struct Record {
  char kind = 0;  // I, L, S, M; 0 for a line to skip
  uint64_t address = 0;
};

// Parses one trace line; throws core::Error naming `line_number` when it is malformed.
Record parse(const std::string& line, const std::string& path, uint64_t line_number) {
  Record r;
  if (line.empty() || line.rfind("==", 0) == 0 || line.rfind("--", 0) == 0) return r;
  size_t i = 0;
  while (i < line.size() && line[i] == ' ') ++i;
  if (i >= line.size() || std::strchr("ILSM", line[i]) == nullptr || i + 1 >= line.size() ||
      line[i + 1] != ' ') {
    core::throw_bad_input(path, ": line ", line_number, " is not a lackey record: '",
                          line.substr(0, 60), "'");
  }
  r.kind = line[i];
  i += 1;
  while (i < line.size() && line[i] == ' ') ++i;
  const size_t comma = line.find(',', i);
  char* end = nullptr;
  if (comma == std::string::npos || comma == i) {
    core::throw_bad_input(path, ": line ", line_number, " is truncated or malformed: '",
                          line.substr(0, 60), "'");
  }
  r.address = std::strtoull(line.c_str() + i, &end, 16);
  const char* size = line.c_str() + comma + 1;
  if (end != line.c_str() + comma || *size < '0' || *size > '9') {
    core::throw_bad_input(path, ": line ", line_number, " has a bad address or size: '",
                          line.substr(0, 60), "'");
  }
  return r;
}

template <typename Fn>
void for_each_record(const std::string& path, Fn&& fn) {
  std::ifstream in(path, std::ios::binary);
  if (!in) core::throw_bad_input("cannot open trace ", path);
  std::string line;
  uint64_t number = 0;
  while (std::getline(in, line)) {
    ++number;
    const Record r = parse(line, path, number);
    if (r.kind != 0) fn(r);
  }
}

}  // namespace

LackeyTrace::LackeyTrace(std::string path) : path_(std::move(path)) {
  std::unordered_map<uint64_t, uint64_t> pages;
  for_each_record(path_, [&](const Record& r) {
    if (r.kind == 'I') return;
    pages.emplace(r.address >> 12, pages.size());
    ++accesses_;
  });
  if (accesses_ == 0) core::throw_bad_input(path_, ": no memory accesses in the trace");
  pages_ = pages.size();
}

void LackeyTrace::run(sim::MemorySystem& memory) {
  const uint64_t base = memory.allocate(footprint_bytes());
  std::unordered_map<uint64_t, uint64_t> pages;
  replayed_ = 0;
  for_each_record(path_, [&](const Record& r) {
    if (r.kind == 'I') {
      memory.compute(1);
      return;
    }
    const uint64_t page = pages.emplace(r.address >> 12, pages.size()).first->second;
    const uint64_t address = base + page * 4096 + (r.address & 4095);
    if (r.kind == 'L' || r.kind == 'M') memory.load(address);
    if (r.kind == 'S' || r.kind == 'M') memory.store(address);
    ++replayed_;
  });
}

std::string LackeyTrace::verify() const {
  if (replayed_ != accesses_) {
    return core::cat("trace: replayed ", replayed_, " of ", accesses_,
                     " accesses (the file changed?)");
  }
  return "";
}

}  // namespace tuna
