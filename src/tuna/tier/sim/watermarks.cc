#include "tuna/tier/sim/watermarks.h"

#include <algorithm>
#include <cmath>

namespace tuna::sim {

uint64_t default_min_free_kbytes(uint64_t lowmem_kbytes) {
  const auto root = static_cast<uint64_t>(std::sqrt(static_cast<long double>(lowmem_kbytes) * 16));
  return std::clamp<uint64_t>(root, 128, 262144);
}

Watermarks zone_watermarks(uint64_t managed_pages, uint64_t zone_min_kbytes,
                           uint64_t watermark_scale_factor) {
  Watermarks w;
  w.min = zone_min_kbytes / 4;  // kB → 4 KiB pages
  const uint64_t gap = std::max(w.min / 4, managed_pages * watermark_scale_factor / 10000);
  w.low = w.min + gap;
  w.high = w.low + gap;
  w.promo = w.high + gap;
  return w;
}

}  // namespace tuna::sim
