#include "tuna/linux/watermark_actuator.h"

#include <unistd.h>

#include <algorithm>
#include <climits>
#include <utility>

#include "core/error.h"
#include "tuna/linux/proc_text.h"

namespace tuna::linux_tier {
namespace {

constexpr uint64_t kSwapClusterMax = 32;  // SWAP_CLUSTER_MAX, the floor of a Movable zone's min
constexpr char kScaleFactorFile[] = "proc/sys/vm/watermark_scale_factor";
constexpr char kMinFreeFile[] = "proc/sys/vm/min_free_kbytes";

// Zones whose min is not a share of min_free_kbytes (is_highmem(zone) || ZONE_MOVABLE).
bool outside_lowmem(const Zone& zone) { return zone.name == "HighMem" || zone.name == "Movable"; }

uint64_t lowmem_pages(const std::vector<Zone>& zones) {
  uint64_t pages = 0;
  for (const Zone& zone : zones) {
    if (!outside_lowmem(zone)) pages += zone.managed;
  }
  return pages;
}

std::string mib(uint64_t bytes) { return core::cat(bytes >> 20, " MiB"); }

}  // namespace

std::vector<ZoneWatermarks> linux_watermarks(const std::vector<Zone>& zones,
                                             uint64_t min_free_kbytes,
                                             uint64_t watermark_scale_factor, uint64_t page_size) {
  const uint64_t lowmem = lowmem_pages(zones);
  if (lowmem == 0) core::throw_bad_input("zoneinfo has no lowmem zone with managed pages");
  const uint64_t pages_min = min_free_kbytes / (page_size / 1024);
  std::vector<ZoneWatermarks> marks;
  for (const Zone& zone : zones) {
    // unsigned __int128: pages_min · managed overflows 64 bits only past 2^32 pages each, but the
    // cost of being sure is nil.
    const auto share =
        static_cast<uint64_t>(static_cast<unsigned __int128>(pages_min) * zone.managed / lowmem);
    ZoneWatermarks m;
    m.min = outside_lowmem(zone) ? std::clamp<uint64_t>(zone.managed / 1024, kSwapClusterMax, 128)
                                 : share;
    const uint64_t gap = std::max(share / 4, zone.managed * watermark_scale_factor / 10000);
    m.low = m.min + gap;
    m.high = m.low + gap;
    m.promo = m.high + gap;
    marks.push_back(m);
  }
  return marks;
}

uint64_t usable_bytes(const std::vector<Zone>& zones, const std::vector<ZoneWatermarks>& marks,
                      int node, uint64_t page_size) {
  uint64_t pages = 0;
  for (size_t i = 0; i < zones.size(); ++i) {
    if (zones[i].node == node && zones[i].managed > marks[i].high) {
      pages += zones[i].managed - marks[i].high;
    }
  }
  return pages * page_size;
}

WatermarkPlan plan_watermarks(const std::vector<Zone>& zones, int fast_node,
                              uint64_t base_min_free_kbytes, uint64_t bytes, uint64_t page_size) {
  const bool has_memory = std::any_of(zones.begin(), zones.end(), [&](const Zone& zone) {
    return zone.node == fast_node && zone.managed > 0;
  });
  if (!has_memory) core::throw_bad_input("zoneinfo shows no managed pages on node ", fast_node);
  const auto usable = [&](uint64_t min_free_kbytes, uint64_t scale_factor) {
    return usable_bytes(zones, linux_watermarks(zones, min_free_kbytes, scale_factor, page_size),
                        fast_node, page_size);
  };
  // Smallest value in [lo, hi] leaving at most `limit` usable (usable never grows with either
  // sysctl); `hi` when none does.
  const auto smallest_fitting = [](uint64_t lo, uint64_t hi, uint64_t limit, auto usable_at) {
    while (lo < hi) {
      const uint64_t mid = lo + (hi - lo) / 2;
      if (usable_at(mid) <= limit) {
        hi = mid;
      } else {
        lo = mid + 1;
      }
    }
    return lo;
  };

  WatermarkPlan plan;
  plan.min_free_kbytes = base_min_free_kbytes;
  plan.watermark_scale_factor = smallest_fitting(
      kMinWatermarkScaleFactor, kMaxWatermarkScaleFactor, bytes,
      [&](uint64_t scale_factor) { return usable(base_min_free_kbytes, scale_factor); });
  plan.usable_bytes = usable(plan.min_free_kbytes, plan.watermark_scale_factor);
  if (plan.watermark_scale_factor == kMinWatermarkScaleFactor && plan.usable_bytes < bytes) {
    plan.clamped = core::cat("node ", fast_node, " has at most ", mib(plan.usable_bytes),
                             " above its high watermarks; asked ", mib(bytes));
    return plan;
  }
  if (plan.usable_bytes <= bytes) return plan;

  // min_free_kbytes reserves memory on every node, so a request for almost nothing must not
  // starve the slow node and the kernel: capped at half of all lowmem.
  const uint64_t cap = std::min<uint64_t>(
      std::max(lowmem_pages(zones) / 2 * (page_size / 1024), base_min_free_kbytes), INT_MAX);
  const auto usable_at_most_scale = [&](uint64_t min_free_kbytes) {
    return usable(min_free_kbytes, kMaxWatermarkScaleFactor);
  };
  // Where even the cap cannot get down to `bytes` (a fast node of Movable zones, whose min does
  // not follow min_free_kbytes), aim at what the cap gets, so that no reserve grows for nothing.
  const uint64_t reachable = std::max(bytes, usable_at_most_scale(cap));
  plan.min_free_kbytes =
      smallest_fitting(base_min_free_kbytes, cap, reachable, usable_at_most_scale);
  plan.usable_bytes = usable(plan.min_free_kbytes, plan.watermark_scale_factor);
  if (plan.usable_bytes > bytes) {
    plan.clamped =
        core::cat("node ", fast_node, " keeps at least ", mib(plan.usable_bytes),
                  " above its high watermarks (watermark_scale_factor ", kMaxWatermarkScaleFactor,
                  ", min_free_kbytes at most ", cap, ", half of all lowmem); asked ", mib(bytes));
  }
  return plan;
}

WatermarkActuator::WatermarkActuator(std::string root, int fast_node)
    : root_(std::move(root)),
      fast_node_(fast_node),
      original_scale_factor_(read_u64_file(under_root(root_, kScaleFactorFile))),
      original_min_free_kbytes_(read_u64_file(under_root(root_, kMinFreeFile))) {}

std::string WatermarkActuator::apply(uint64_t bytes, bool dry_run) {
  const std::vector<Zone> zones = read_zoneinfo(root_);
  const WatermarkPlan plan = plan_watermarks(zones, fast_node_, original_min_free_kbytes_, bytes,
                                             static_cast<uint64_t>(::sysconf(_SC_PAGESIZE)));
  std::string lines = set(plan.watermark_scale_factor, plan.min_free_kbytes, dry_run);
  if (plan.min_free_kbytes > original_min_free_kbytes_) {
    lines += "note: vm.min_free_kbytes is shared by every node; the others' reserves grow too\n";
  }
  if (!plan.clamped.empty()) lines += "note: " + plan.clamped + "\n";
  return lines;
}

std::string WatermarkActuator::restore(bool dry_run) {
  return set(original_scale_factor_, original_min_free_kbytes_, dry_run);
}

std::string WatermarkActuator::set(uint64_t scale_factor, uint64_t min_free_kbytes, bool dry_run) {
  const std::pair<const char*, uint64_t> settings[] = {{kScaleFactorFile, scale_factor},
                                                       {kMinFreeFile, min_free_kbytes}};
  std::string lines;
  for (const auto& [file, value] : settings) {
    const std::string path = under_root(root_, file);
    const uint64_t current = read_u64_file(path);
    if (current == value) continue;
    if (!dry_run) write_sysctl(path, value);
    // "proc/sys/vm/x" is the sysctl "vm.x".
    std::string sysctl = std::string(file).substr(9);
    std::replace(sysctl.begin(), sysctl.end(), '/', '.');
    lines += core::cat(sysctl, ": ", current, " -> ", value, "\n");
  }
  return lines;
}

}  // namespace tuna::linux_tier
