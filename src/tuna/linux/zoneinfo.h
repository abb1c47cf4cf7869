// /proc/zoneinfo: each zone's free pages, watermarks and managed pages, the inputs and outputs of
// Linux's watermark arithmetic.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

namespace tuna::linux_tier {

// One "Node N, zone NAME" block. Counts are pages.
struct Zone {
  int node = 0;
  std::string name;  // DMA, DMA32, Normal, HighMem, Movable, Device
  uint64_t free = 0;
  uint64_t min = 0;
  uint64_t low = 0;
  uint64_t high = 0;
  std::optional<uint64_t> promo;  // WMARK_PROMO, printed since Linux 6.1 (memory tiering)
  uint64_t managed = 0;
};

// Parses a zoneinfo-format file. Only each zone's "pages free", min, low, high, promo and
// managed lines are read; the per-node stats, protection and pagesets lines are skipped. Throws
// core::Error (bad input) naming the path when it is missing, the path and line of a malformed
// zone header or of a read field without a number, and the zone when it lacks a field.
std::vector<Zone> read_zoneinfo_file(const std::string& path);

// <root>/proc/zoneinfo.
std::vector<Zone> read_zoneinfo(const std::string& root = "/");

}  // namespace tuna::linux_tier
