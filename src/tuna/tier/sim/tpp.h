// TPP as upstream Linux implements it (numa_balancing = 2, demotion_enabled = 1), page by page,
// for a fast node and a slow (CPU-less) node, with Linux's parameter names:
//
// * Allocation (first touch) on the fast node while its free pages stay above the low
//   watermark, otherwise on the slow node (the zonelist fallback); falling below low wakes
//   kswapd.
// * kswapd demotes from the tail of the fast node's inactive LRU until free pages reach the
//   promo watermark (tiering mode's balance target); a tail page whose accessed bit is set is
//   activated instead (second chance). The active list is aged into the inactive list while
//   inactive·ratio < active, ratio = √(10·GB of the node) (at least 1), clearing accessed bits.
// * The NUMA scanner (task_numa_work) marks, every scan period, the next scan-size window of
//   slow-node pages PROT_NONE; the next access to a marked page is a hint fault. Its latency
//   (fault time − scan time) under the hot threshold makes the page a promotion candidate;
//   candidates are promoted within the promote rate limit and while the fast node stays above
//   its high watermark (else kswapd is woken to make room, and the fault does not promote).
//
// * The hot threshold adapts as numa_promotion_adjust_threshold does: once per scan-period-max,
//   if the candidates of that period exceeded 110% of what the rate limit allows, it drops by
//   1/8 of the sysctl value (not below that step); under 90%, it rises by the same step (up to
//   twice the sysctl value).
//
// Not modelled (yet): scan-period adaptation, THP, file pages. Times are simulated nanoseconds.
#pragma once

#include <cstdint>
#include <vector>

#include "core/huge_page_allocator.h"

#include "tuna/tier/platform.h"
#include "tuna/tier/sim/watermarks.h"

namespace tuna::sim {

struct TppParams {
  uint64_t fast_pages = 0;               // managed pages of the fast node
  uint64_t slow_pages = 0;               // managed pages of the slow node
  uint64_t min_free_kbytes = 0;          // vm.min_free_kbytes; 0: Linux's default for both nodes
  uint64_t watermark_scale_factor = 10;  // vm.watermark_scale_factor
  double numa_balancing_hot_threshold_ms = 1000;  // kernel.numa_balancing_hot_threshold_ms
  double numa_balancing_promote_rate_limit_MBps = 65536;
  double numa_balancing_scan_period_min_ms = 1000;
  double numa_balancing_scan_period_max_ms = 60000;  // also the hot-threshold adjust period
  uint64_t numa_balancing_scan_size_mb = 256;
  bool demotion_enabled = true;   // /sys/kernel/mm/numa/demotion_enabled
  bool promotion_enabled = true;  // kernel.numa_balancing = 2 (memory tiering)
};

enum class Node : uint8_t { kNone, kFast, kSlow };

struct AccessOutcome {
  Node node = Node::kNone;  // where the page lives after the access
  bool first_touch = false;
  bool hint_fault = false;
  bool promoted = false;
};

class TppPolicy {
 public:
  // `address_pages`: pages of the workload's address space (page numbers 0 … address_pages−1).
  TppPolicy(const TppParams& params, uint64_t address_pages);

  AccessOutcome access(uint64_t page, double now_ns);
  // The page is unmapped (munmap, free): its memory returns to its node.
  void unmap(uint64_t page);
  // Runs the background work due by `now_ns`: the NUMA scanner and kswapd.
  void tick(double now_ns);
  // kswapd, once woken (by an allocation or a promotion finding the fast node at its
  // watermarks): the simulator calls this right after the access that woke it, as the kernel
  // thread would run on another CPU within microseconds rather than at the next tick.
  void run_kswapd();
  // Resizes the fast node to `pages` managed pages: what no longer fits is demoted at once by
  // direct reclaim (the inactive tail first, referenced pages activated instead, as kswapd does),
  // min_free_kbytes and the watermarks are recomputed as memory hotplug does, and kswapd is woken
  // if free memory is under the low mark. A grown node fills by first touch and promotion.
  void set_fast_pages(uint64_t pages);

  Node node_of(uint64_t page) const { return static_cast<Node>(pages_[page].node); }
  uint64_t free_pages(Node node) const;
  uint64_t capacity(Node node) const {
    return node == Node::kFast ? params_.fast_pages : params_.slow_pages;
  }
  const Watermarks& fast_watermarks() const { return fast_wmarks_; }
  const TierCounters& counters() const { return counters_; }
  uint64_t active_pages(Node node) const { return lists_[list_id(node, true)].size; }
  uint64_t inactive_pages(Node node) const { return lists_[list_id(node, false)].size; }
  bool kswapd_awake() const { return kswapd_wake_; }
  double hot_threshold_ms() const { return threshold_ms_; }

 private:
  struct List {
    int64_t head = -1, tail = -1;  // head: most recently added
    uint64_t size = 0;
  };
  static int list_id(Node node, bool active) {
    return (node == Node::kFast ? 0 : 2) + (active ? 1 : 0);
  }
  void set_watermarks();
  // Demotes from the fast node's LRU, the kswapd way, until it holds at most `max_used` pages.
  void demote_coldest(uint64_t max_used, uint64_t* counter);
  void push_head(int list, uint64_t page);
  void unlink(uint64_t page);
  void place(uint64_t page, Node node, bool active);
  bool promote(uint64_t page, double now_ns);
  void adjust_threshold(double now_ns);
  void age_active_list(Node node);
  void numa_scan(double now_ns);

  TppParams params_;
  Watermarks fast_wmarks_, slow_wmarks_;
  uint64_t used_[3] = {0, 0, 0};
  // What every access touches, in one place (one host cache line per page lookup).
  struct PageState {
    double scan_time = -1;  // ≥ 0: marked PROT_NONE by the scanner at that time
    uint8_t node = 0;       // Node
    uint8_t referenced = 0;
    int8_t list = -1;  // LRU list, -1: on none
  };
  core::HugePageVector<PageState> pages_;
  core::HugePageVector<int64_t> prev_, next_;
  List lists_[4];
  bool kswapd_wake_ = false;
  double next_scan_ns_ = 0;
  uint64_t scan_cursor_ = 0;
  double rate_window_start_ns_ = 0;
  uint64_t rate_window_pages_ = 0;
  double threshold_ms_;  // the adapted hot threshold
  double threshold_period_start_ns_ = 0;
  uint64_t threshold_period_candidates_ = 0;  // pgpromote_candidate at the period's start
  TierCounters counters_;
};

}  // namespace tuna::sim
