#include "tuna/linux/zoneinfo.h"

#include <algorithm>
#include <array>
#include <set>
#include <string_view>

#include "core/error.h"
#include "tuna/linux/proc_text.h"

namespace tuna::linux_tier {
namespace {

constexpr std::array<std::string_view, 5> kRequired = {"pages free", "min", "low", "high",
                                                       "managed"};

void check_complete(const std::string& path, const Zone& zone,
                    const std::set<std::string_view>& seen) {
  for (const std::string_view key : kRequired) {
    if (!seen.contains(key)) {
      core::throw_bad_input(path, ": node ", zone.node, " zone ", zone.name, " has no '", key,
                            "' line");
    }
  }
}

}  // namespace

std::vector<Zone> read_zoneinfo_file(const std::string& path) {
  const std::vector<std::string> lines = read_proc_lines(path);
  std::vector<Zone> zones;
  std::set<std::string_view> seen;  // fields of the current zone
  for (size_t i = 0; i < lines.size(); ++i) {
    const std::vector<std::string_view> f = split_fields(lines[i]);
    if (f.empty()) continue;
    const auto malformed = [&](std::string_view expected) {
      core::throw_bad_input(path, ":", i + 1, ": expected ", expected, ", got '", lines[i], "'");
    };
    if (f[0] == "Node") {
      uint64_t node = 0;
      if (f.size() != 4 || f[1].size() < 2 || f[1].back() != ',' ||
          !parse_u64(f[1].substr(0, f[1].size() - 1), &node) || f[2] != "zone") {
        malformed("'Node N, zone NAME'");
      }
      if (!zones.empty()) check_complete(path, zones.back(), seen);
      zones.emplace_back();
      zones.back().node = static_cast<int>(node);
      zones.back().name = f[3];
      seen.clear();
      continue;
    }
    if (zones.empty()) malformed("a 'Node N, zone NAME' line first");
    // "pages free N" opens the watermark lines; the others read are "key N".
    const bool pages_free = f.size() >= 2 && f[0] == "pages" && f[1] == "free";
    const std::string_view key = pages_free ? "pages free" : f[0];
    const bool wanted =
        key == "promo" || std::find(kRequired.begin(), kRequired.end(), key) != kRequired.end();
    if (!wanted) continue;
    const size_t value_at = pages_free ? 2 : 1;
    uint64_t value = 0;
    if (f.size() != value_at + 1 || !parse_u64(f[value_at], &value)) {
      malformed(core::cat("'", key, " N'"));
    }
    Zone& zone = zones.back();
    if (key == "pages free") zone.free = value;
    if (key == "min") zone.min = value;
    if (key == "low") zone.low = value;
    if (key == "high") zone.high = value;
    if (key == "promo") zone.promo = value;
    if (key == "managed") zone.managed = value;
    seen.insert(key);
  }
  if (zones.empty()) core::throw_bad_input(path, ": no 'Node N, zone NAME' block");
  check_complete(path, zones.back(), seen);
  return zones;
}

std::vector<Zone> read_zoneinfo(const std::string& root) {
  return read_zoneinfo_file(under_root(root, "proc/zoneinfo"));
}

}  // namespace tuna::linux_tier
