// Limits the fast memory a workload may use by raising the fast node's watermarks: memory below a
// zone's high watermark is what kswapd keeps free, so under TPP the workload's pages live in the
// rest and the excess is demoted to the slow node. The knobs are the two sysctls Linux derives
// every zone's watermarks from (mm/page_alloc.c, __setup_per_zone_wmarks):
//   pages_min  = min_free_kbytes / page size in kB, shared by all lowmem zones of all nodes
//   zone min   = pages_min · managed / Σ lowmem managed   (HighMem, Movable: managed/1024 in
//                [32, 128], their share still sets the gap)
//   gap        = max(share / 4, managed · watermark_scale_factor / 10000)
//   low = min + gap, high = min + 2·gap, promo = min + 3·gap
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "tuna/linux/zoneinfo.h"
#include "tuna/tier/platform.h"

namespace tuna::linux_tier {

// vm.watermark_scale_factor's range in Linux (sysctl extra1/extra2).
constexpr uint64_t kMinWatermarkScaleFactor = 1;
constexpr uint64_t kMaxWatermarkScaleFactor = 3000;

struct ZoneWatermarks {
  uint64_t min = 0, low = 0, high = 0, promo = 0;  // pages
};

// The watermarks Linux sets on each of `zones` (every zone of every node: they share
// min_free_kbytes) for the two sysctls. Throws core::Error (bad input) when no zone is lowmem.
std::vector<ZoneWatermarks> linux_watermarks(const std::vector<Zone>& zones,
                                             uint64_t min_free_kbytes,
                                             uint64_t watermark_scale_factor, uint64_t page_size);

// Bytes of `node`'s zones above their high watermarks: what a workload can hold there before
// kswapd demotes.
uint64_t usable_bytes(const std::vector<Zone>& zones, const std::vector<ZoneWatermarks>& marks,
                      int node, uint64_t page_size);

struct WatermarkPlan {
  uint64_t watermark_scale_factor = 0;
  uint64_t min_free_kbytes = 0;
  uint64_t usable_bytes = 0;  // fast node's memory above its high watermarks under the plan
  std::string clamped;        // why the plan misses the request; empty when it meets it
};

// The sysctls that leave `fast_node` about `bytes` (never more, within one scale-factor step)
// above its high watermarks: the smallest watermark_scale_factor in [1, 3000] with
// min_free_kbytes at `base_min_free_kbytes`; where 3000 is not enough, the smallest
// min_free_kbytes above the base, capped at half of all lowmem. min_free_kbytes never goes below
// the base, which the kernel or the operator chose for atomic allocations. Throws core::Error
// (bad input) when `fast_node` has no managed pages in `zones`.
WatermarkPlan plan_watermarks(const std::vector<Zone>& zones, int fast_node,
                              uint64_t base_min_free_kbytes, uint64_t bytes, uint64_t page_size);

// Writes <root>/proc/sys/vm/watermark_scale_factor and min_free_kbytes (root needed on a real
// machine), planning from <root>/proc/zoneinfo and the min_free_kbytes found at construction.
class WatermarkActuator : public FastMemoryActuator {
 public:
  // Records the current values of both sysctls for restore(). Throws core::Error (bad input)
  // naming a missing or malformed file.
  WatermarkActuator(std::string root, int fast_node);

  std::string name() const override { return "watermark"; }
  // Lines "vm.watermark_scale_factor: 10 -> 1234" for each sysctl that changes, and a "note:"
  // line when the request cannot be met.
  std::string apply(uint64_t bytes, bool dry_run) override;
  // Puts back the values recorded at construction; lines as apply().
  std::string restore(bool dry_run = false);

  uint64_t original_watermark_scale_factor() const { return original_scale_factor_; }
  uint64_t original_min_free_kbytes() const { return original_min_free_kbytes_; }

 private:
  // Writes (unless `dry_run`) the sysctls that differ from the current ones, scale factor first,
  // and returns a line per change.
  std::string set(uint64_t scale_factor, uint64_t min_free_kbytes, bool dry_run);

  std::string root_;
  int fast_node_;
  uint64_t original_scale_factor_;
  uint64_t original_min_free_kbytes_;
};

}  // namespace tuna::linux_tier
