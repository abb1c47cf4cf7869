#include "tuna/tier/sim/tpp.h"

#include <algorithm>
#include <cmath>

#include "core/error.h"

namespace tuna::sim {
namespace {

constexpr uint64_t kPageBytes = 4096;
constexpr uint64_t kSwapClusterMax = 32;  // pages moved per LRU aging batch (SWAP_CLUSTER_MAX)
constexpr double kNsPerMs = 1e6;

// Linux's inactive_is_low: the inactive list should be at least active / ratio, ratio = √(10·GB).
uint64_t inactive_ratio(uint64_t node_pages) {
  const uint64_t gb = node_pages * kPageBytes >> 30;
  return gb > 0 ? static_cast<uint64_t>(std::sqrt(10.0 * gb)) : 1;
}

}  // namespace

TppPolicy::TppPolicy(const TppParams& params, uint64_t address_pages)
    : params_(params),
      pages_(address_pages),
      prev_(address_pages, -1),
      next_(address_pages, -1),
      threshold_ms_(params.numa_balancing_hot_threshold_ms) {
  if (params.fast_pages + params.slow_pages == 0) {
    core::throw_bad_input("the tiers have no memory at all");
  }
  set_watermarks();
}

void TppPolicy::set_watermarks() {
  const uint64_t total = params_.fast_pages + params_.slow_pages;
  const uint64_t min_kb = params_.min_free_kbytes > 0
                              ? params_.min_free_kbytes
                              : default_min_free_kbytes(total * kPageBytes / 1024);
  // min_free_kbytes is shared among zones in proportion to their managed pages.
  fast_wmarks_ = zone_watermarks(params_.fast_pages, min_kb * params_.fast_pages / total,
                                 params_.watermark_scale_factor);
  slow_wmarks_ = zone_watermarks(params_.slow_pages, min_kb * params_.slow_pages / total,
                                 params_.watermark_scale_factor);
}

void TppPolicy::set_fast_pages(uint64_t pages) {
  if (pages + params_.slow_pages == 0) core::throw_bad_input("the tiers have no memory at all");
  const auto fast = static_cast<int>(Node::kFast);
  if (used_[fast] - std::min(used_[fast], pages) > free_pages(Node::kSlow)) {
    core::throw_bad_input("cannot shrink the fast node to ", pages,
                          " pages: the slow node has no room for the rest");
  }
  // What no longer fits is reclaimed at once, as a balloon inflating on the node makes direct
  // reclaim do: from the inactive tail, referenced pages getting their second chance.
  demote_coldest(pages, &counters_.pgdemote_direct);
  if (used_[fast] > pages) core::throw_internal("direct reclaim left the fast node over its size");
  params_.fast_pages = pages;
  set_watermarks();  // memory hotplug recomputes min_free_kbytes and every zone's watermarks
  if (free_pages(Node::kFast) < fast_wmarks_.low) kswapd_wake_ = true;
}

uint64_t TppPolicy::free_pages(Node node) const {
  const uint64_t capacity = node == Node::kFast ? params_.fast_pages : params_.slow_pages;
  return capacity - used_[static_cast<int>(node)];
}

void TppPolicy::push_head(int list, uint64_t page) {
  List& l = lists_[list];
  prev_[page] = -1;
  next_[page] = l.head;
  if (l.head >= 0) prev_[l.head] = static_cast<int64_t>(page);
  l.head = static_cast<int64_t>(page);
  if (l.tail < 0) l.tail = static_cast<int64_t>(page);
  pages_[page].list = static_cast<int8_t>(list);
  ++l.size;
}

void TppPolicy::unlink(uint64_t page) {
  if (pages_[page].list < 0) return;
  List& l = lists_[pages_[page].list];
  if (prev_[page] >= 0)
    next_[prev_[page]] = next_[page];
  else
    l.head = next_[page];
  if (next_[page] >= 0)
    prev_[next_[page]] = prev_[page];
  else
    l.tail = prev_[page];
  pages_[page].list = -1;
  --l.size;
}

void TppPolicy::place(uint64_t page, Node node, bool active) {
  unlink(page);
  if (pages_[page].node != 0) --used_[pages_[page].node];
  pages_[page].node = static_cast<uint8_t>(node);
  ++used_[static_cast<int>(node)];
  push_head(list_id(node, active), page);
}

AccessOutcome TppPolicy::access(uint64_t page, double now_ns) {
  if (page >= pages_.size()) {
    core::throw_internal("page ", page, " is outside the address space of ", pages_.size());
  }
  AccessOutcome out;
  if (pages_[page].node == 0) {
    // First touch: the fast node while it stays above its low watermark, else the fallback.
    Node target = Node::kSlow;
    if (free_pages(Node::kFast) > fast_wmarks_.low) {
      target = Node::kFast;
    } else if (free_pages(Node::kSlow) == 0) {
      if (free_pages(Node::kFast) == 0) core::throw_bad_input("out of memory: both tiers full");
      target = Node::kFast;
    }
    place(page, target, false);
    if (free_pages(Node::kFast) <= fast_wmarks_.low) kswapd_wake_ = true;
    pages_[page].referenced = 1;
    out.first_touch = true;
    out.node = target;
    return out;
  }
  pages_[page].referenced = 1;
  if (pages_[page].scan_time >= 0) {
    ++counters_.numa_hint_faults;
    const double latency = now_ns - pages_[page].scan_time;
    pages_[page].scan_time = -1;
    out.hint_fault = true;
    if (params_.promotion_enabled) adjust_threshold(now_ns);
    if (params_.promotion_enabled && node_of(page) == Node::kSlow &&
        latency < threshold_ms_ * kNsPerMs) {
      ++counters_.pgpromote_candidate;
      out.promoted = promote(page, now_ns);
    }
  }
  out.node = node_of(page);
  return out;
}

void TppPolicy::unmap(uint64_t page) {
  if (page >= pages_.size() || pages_[page].node == 0) return;
  unlink(page);
  --used_[pages_[page].node];
  pages_[page].node = 0;
  pages_[page].referenced = 0;
  pages_[page].scan_time = -1;
}

void TppPolicy::adjust_threshold(double now_ns) {
  const double period_ms = params_.numa_balancing_scan_period_max_ms;
  if (now_ns - threshold_period_start_ns_ <= period_ms * kNsPerMs) return;
  threshold_period_start_ns_ = now_ns;
  const double rate_pages = params_.numa_balancing_promote_rate_limit_MBps * (1 << 20) / kPageBytes;
  const double reference = rate_pages * period_ms / 1000;
  const double candidates =
      static_cast<double>(counters_.pgpromote_candidate - threshold_period_candidates_);
  const double sysctl = params_.numa_balancing_hot_threshold_ms;
  const double unit = sysctl * 2 / 16;  // NUMA_MIGRATION_ADJUST_STEPS
  if (candidates > reference * 11 / 10) {
    threshold_ms_ = std::max(threshold_ms_ - unit, unit);
  } else if (candidates < reference * 9 / 10) {
    threshold_ms_ = std::min(threshold_ms_ + unit, sysctl * 2);
  }
  threshold_period_candidates_ = counters_.pgpromote_candidate;
}

bool TppPolicy::promote(uint64_t page, double now_ns) {
  // numa_promotion_rate_limit: pages per one-second window.
  if (now_ns - rate_window_start_ns_ >= 1e9) {
    rate_window_start_ns_ = now_ns;
    rate_window_pages_ = 0;
  }
  const double limit_pages =
      params_.numa_balancing_promote_rate_limit_MBps * (1 << 20) / static_cast<double>(kPageBytes);
  if (static_cast<double>(rate_window_pages_ + 1) > limit_pages) return false;
  // migrate_balanced_pgdat: the fast node must stay above its high watermark; otherwise kswapd
  // is woken to make room (up to the promo watermark) and this fault does not promote.
  if (free_pages(Node::kFast) <= fast_wmarks_.high + 1) {
    kswapd_wake_ = true;
    return false;
  }
  place(page, Node::kFast, true);
  ++rate_window_pages_;
  ++counters_.pgpromote_success;
  ++counters_.numa_pages_migrated;
  ++counters_.pgmigrate_success;
  return true;
}

void TppPolicy::age_active_list(Node node) {
  List& active = lists_[list_id(node, true)];
  for (uint64_t i = 0; i < kSwapClusterMax && active.tail >= 0; ++i) {
    const auto page = static_cast<uint64_t>(active.tail);
    pages_[page].referenced = 0;  // page_referenced() clears the accessed bits it finds
    unlink(page);
    push_head(list_id(node, false), page);
  }
}

void TppPolicy::demote_coldest(uint64_t max_used, uint64_t* counter) {
  const uint64_t ratio = inactive_ratio(params_.fast_pages);
  List& inactive = lists_[list_id(Node::kFast, false)];
  const List& active = lists_[list_id(Node::kFast, true)];
  const auto fast = static_cast<int>(Node::kFast);
  while (used_[fast] > max_used && free_pages(Node::kSlow) > 0) {
    if (inactive.size * ratio < active.size || inactive.tail < 0) age_active_list(Node::kFast);
    if (inactive.tail < 0) break;
    const auto page = static_cast<uint64_t>(inactive.tail);
    if (pages_[page].referenced) {
      pages_[page].referenced = 0;  // second chance: activate
      unlink(page);
      push_head(list_id(Node::kFast, true), page);
      continue;
    }
    place(page, Node::kSlow, false);
    ++*counter;
    ++counters_.pgmigrate_success;
  }
}

void TppPolicy::run_kswapd() {
  kswapd_wake_ = false;
  if (!params_.demotion_enabled) return;  // reclaim would swap; not modelled
  const uint64_t target = params_.promotion_enabled ? fast_wmarks_.promo : fast_wmarks_.high;
  demote_coldest(params_.fast_pages > target ? params_.fast_pages - target : 0,
                 &counters_.pgdemote_kswapd);
}

void TppPolicy::numa_scan(double now_ns) {
  // task_numa_work: mark the next scan-size window of the address space PROT_NONE; in tiering
  // mode only slow-node pages are marked (fast pages have nowhere better to go).
  const uint64_t pages = pages_.size();
  if (pages == 0) return;
  const uint64_t window =
      std::min<uint64_t>(pages, params_.numa_balancing_scan_size_mb * (1 << 20) / kPageBytes);
  for (uint64_t i = 0; i < window; ++i) {
    const uint64_t page = (scan_cursor_ + i) % pages;
    // change_pte_range skips PTEs already PROT_NONE: a page keeps the time of its first marking,
    // so the hint-fault latency of a rarely used page spans every scan it slept through.
    PageState& p = pages_[page];
    if (p.node == static_cast<uint8_t>(Node::kSlow) && p.scan_time < 0) p.scan_time = now_ns;
  }
  scan_cursor_ = (scan_cursor_ + window) % pages;
}

void TppPolicy::tick(double now_ns) {
  if (params_.promotion_enabled && now_ns >= next_scan_ns_) {
    numa_scan(now_ns);
    next_scan_ns_ = now_ns + params_.numa_balancing_scan_period_min_ms * kNsPerMs;
  }
  if (free_pages(Node::kFast) < fast_wmarks_.low) kswapd_wake_ = true;
  if (kswapd_wake_) run_kswapd();
}

}  // namespace tuna::sim
