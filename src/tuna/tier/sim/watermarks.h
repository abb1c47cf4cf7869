// The zone watermarks Linux derives from vm.min_free_kbytes and vm.watermark_scale_factor
// (mm/page_alloc.c: calculate_min_free_kbytes, __setup_per_zone_wmarks), for a node holding one
// zone. In pages.
#pragma once

#include <cstdint>

namespace tuna::sim {

struct Watermarks {
  uint64_t min = 0, low = 0, high = 0, promo = 0;
};

// Linux's default min_free_kbytes for `lowmem_kbytes` of memory: ⌊√(16·lowmem_kbytes)⌋ clamped
// to [128, 262144].
uint64_t default_min_free_kbytes(uint64_t lowmem_kbytes);

// Watermarks of a zone of `managed_pages` pages (4 KiB) that receives `zone_min_kbytes` of
// min_free_kbytes: min = that share; gap = max(min/4, managed·scale_factor/10000);
// low = min + gap, high = low + gap, promo = high + gap.
Watermarks zone_watermarks(uint64_t managed_pages, uint64_t zone_min_kbytes,
                           uint64_t watermark_scale_factor = 10);

}  // namespace tuna::sim
