// TPP's mechanics against hand-computed expectations: Linux's watermark formulas, first-touch
// placement, kswapd demotion of cold pages to the promo watermark, the hot threshold, the
// promotion rate limit and the high-watermark check on promotion.
#include "tuna/tier/sim/tpp.h"

#include <gtest/gtest.h>

#include "core/error.h"

namespace tuna::sim {
namespace {

constexpr double kMs = 1e6;

TEST(Watermarks, FollowLinuxFormulas) {
  // 16 GiB: min_free_kbytes = √(16 · 16777216) = 16384.
  EXPECT_EQ(default_min_free_kbytes(16ull << 20), 16384u);
  EXPECT_EQ(default_min_free_kbytes(100), 128u);            // clamped below
  EXPECT_EQ(default_min_free_kbytes(1ull << 40), 262144u);  // clamped above
  // 16 GiB zone with all of it: min 4096 pages; gap max(1024, 4194304·10/10000 = 4194).
  const Watermarks w = zone_watermarks(4194304, 16384);
  EXPECT_EQ(w.min, 4096u);
  EXPECT_EQ(w.low, 4096u + 4194);
  EXPECT_EQ(w.high, 4096u + 2 * 4194);
  EXPECT_EQ(w.promo, 4096u + 3 * 4194);
  // A small zone: the gap is min/4.
  const Watermarks s = zone_watermarks(1000, 80);
  EXPECT_EQ(s.min, 20u);
  EXPECT_EQ(s.low, 25u);
  EXPECT_EQ(s.high, 30u);
  EXPECT_EQ(s.promo, 35u);
}

// Two 1000-page nodes sharing min_free_kbytes = 160: the fast node gets 80 kB = 20 pages, so
// min 20, low 25, high 30, promo 35.
TppParams small_params() {
  TppParams p;
  p.fast_pages = 1000;
  p.slow_pages = 1000;
  p.min_free_kbytes = 160;
  return p;
}

TEST(Tpp, FirstTouchFillsTheFastNodeDownToItsLowWatermark) {
  TppPolicy tpp(small_params(), 1500);
  EXPECT_EQ(tpp.fast_watermarks().low, 25u);
  for (uint64_t p = 0; p < 1500; ++p) tpp.access(p, 0);
  EXPECT_EQ(tpp.free_pages(Node::kFast), 25u);  // 975 pages placed while free > low
  EXPECT_EQ(tpp.node_of(974), Node::kFast);
  EXPECT_EQ(tpp.node_of(975), Node::kSlow);
  EXPECT_EQ(tpp.free_pages(Node::kSlow), 1000u - 525);
  EXPECT_TRUE(tpp.kswapd_awake());
}

TEST(Tpp, KswapdDemotesColdPagesUpToThePromoWatermark) {
  TppPolicy tpp(small_params(), 1000);
  for (uint64_t p = 0; p < 975; ++p) tpp.access(p, 0);
  tpp.tick(1);
  EXPECT_EQ(tpp.free_pages(Node::kFast), 35u);
  EXPECT_EQ(tpp.counters().pgdemote_kswapd, 10u);
  EXPECT_FALSE(tpp.kswapd_awake());
  // Pages 100… stay hot; new allocations push the node below low again: kswapd must demote
  // only pages that were not touched since.
  for (uint64_t p = 100; p < 975; ++p) tpp.access(p, 2);
  for (uint64_t p = 975; p < 1000; ++p) tpp.access(p, 3);
  tpp.tick(4);
  EXPECT_EQ(tpp.free_pages(Node::kFast), 35u);
  for (uint64_t p = 100; p < 975; ++p) EXPECT_EQ(tpp.node_of(p), Node::kFast) << p;
  EXPECT_EQ(tpp.counters().pgdemote_kswapd, 20u);
  EXPECT_EQ(tpp.counters().pgmigrate_success, 20u);
}

TEST(Tpp, HintFaultsUnderTheHotThresholdPromote) {
  TppParams params = small_params();
  TppPolicy tpp(params, 1200);
  for (uint64_t p = 0; p < 1200; ++p) tpp.access(p, 0);  // 975 fast, 225 slow
  tpp.tick(0);                                           // demote 10: free 35 > high 30
  const uint64_t slow_page = 1100;
  ASSERT_EQ(tpp.node_of(slow_page), Node::kSlow);
  tpp.tick(1 * kMs);  // the scanner's first pass marks every slow page (256 MB window)
  // 500 ms after the scan: hot.
  AccessOutcome a = tpp.access(slow_page, 501 * kMs);
  EXPECT_TRUE(a.hint_fault);
  EXPECT_TRUE(a.promoted);
  EXPECT_EQ(tpp.node_of(slow_page), Node::kFast);
  // 1500 ms after the scan: a hint fault, but not a candidate.
  AccessOutcome b = tpp.access(1101, 1501 * kMs);
  EXPECT_TRUE(b.hint_fault);
  EXPECT_FALSE(b.promoted);
  EXPECT_EQ(tpp.counters().numa_hint_faults, 2u);
  EXPECT_EQ(tpp.counters().pgpromote_candidate, 1u);
  EXPECT_EQ(tpp.counters().pgpromote_success, 1u);
  EXPECT_EQ(tpp.counters().numa_pages_migrated, 1u);
  // The fault cleared the mark: the next access is no fault.
  EXPECT_FALSE(tpp.access(1101, 1600 * kMs).hint_fault);
}

TEST(Tpp, AMarkedPageKeepsItsFirstScanTime) {
  // change_pte_range skips PTEs that are already PROT_NONE: a page the scanner marked at 1 ms
  // and passed again at 1001 ms and 2001 ms still measures its latency from 1 ms.
  TppPolicy tpp(small_params(), 1200);
  for (uint64_t p = 0; p < 1200; ++p) tpp.access(p, 0);
  tpp.tick(0);
  tpp.tick(1 * kMs);
  tpp.tick(1001 * kMs);
  tpp.tick(2001 * kMs);
  const AccessOutcome a = tpp.access(1100, 2100 * kMs);  // 99 ms after the last pass
  EXPECT_TRUE(a.hint_fault);
  EXPECT_FALSE(a.promoted);  // 2099 ms since its marking: cold
  EXPECT_EQ(tpp.counters().pgpromote_candidate, 0u);
}

TEST(Tpp, PromotionStopsAtTheHighWatermarkAndWakesKswapd) {
  TppPolicy tpp(small_params(), 1200);
  for (uint64_t p = 0; p < 1200; ++p) tpp.access(p, 0);
  tpp.tick(0);  // free 35
  tpp.tick(1 * kMs);
  int promoted = 0;
  for (uint64_t p = 1000; p < 1010; ++p) promoted += tpp.access(p, 2 * kMs).promoted;
  // Free goes 35 → 31: a promotion needs free > high + 1 = 31.
  EXPECT_EQ(promoted, 4);
  EXPECT_EQ(tpp.free_pages(Node::kFast), 31u);
  EXPECT_TRUE(tpp.kswapd_awake());
  EXPECT_EQ(tpp.counters().pgpromote_candidate, 10u);
}

TEST(Tpp, PromotionRateLimitCapsPagesPerSecond) {
  TppParams params = small_params();
  params.fast_pages = 4000;
  params.slow_pages = 4000;
  params.numa_balancing_promote_rate_limit_MBps = 1;  // 256 pages per second
  TppPolicy tpp(params, 6000);
  for (uint64_t p = 0; p < 6000; ++p) tpp.access(p, 0);
  for (uint64_t p = 0; p < 3000; ++p) tpp.unmap(p);  // free most of the fast node
  uint64_t slow = 0;
  for (uint64_t p = 3000; p < 6000; ++p) slow += tpp.node_of(p) == Node::kSlow;
  ASSERT_GT(slow, 1000u);
  tpp.tick(1 * kMs);
  uint64_t promoted = 0;
  for (uint64_t p = 3000; p < 6000; ++p) promoted += tpp.access(p, 2 * kMs).promoted;
  EXPECT_EQ(tpp.counters().pgpromote_candidate, slow);
  EXPECT_EQ(promoted, 256u);
  // A new one-second window admits more.
  tpp.tick(1500 * kMs);
  uint64_t later = 0;
  for (uint64_t p = 3000; p < 6000; ++p) later += tpp.access(p, 1600 * kMs).promoted;
  EXPECT_EQ(later, 256u);
}

TEST(Tpp, HotThresholdAdaptsToTheCandidateRate) {
  // Rate limit 1 MB/s = 256 pages/s; adjust period 100 ms → reference 25.6 candidates/period.
  TppParams params = small_params();
  params.fast_pages = 4000;
  params.slow_pages = 4000;
  params.numa_balancing_promote_rate_limit_MBps = 1;
  params.numa_balancing_scan_period_max_ms = 100;
  params.numa_balancing_scan_period_min_ms = 1;
  TppPolicy tpp(params, 6000);
  for (uint64_t p = 0; p < 6000; ++p) tpp.access(p, 0);
  EXPECT_EQ(tpp.hot_threshold_ms(), 1000);
  // A period with far more candidates than the reference: the threshold drops by 1000·2/16.
  tpp.tick(1 * kMs);
  for (uint64_t p = 4000; p < 6000; ++p) tpp.access(p, 2 * kMs);
  tpp.tick(150 * kMs);
  tpp.access(5999, 200 * kMs);  // a hint fault after the period ends triggers the adjustment
  EXPECT_EQ(tpp.hot_threshold_ms(), 875);
  // A quiet period: it rises again by one step.
  tpp.tick(400 * kMs);
  tpp.access(5998, 450 * kMs);
  EXPECT_EQ(tpp.hot_threshold_ms(), 1000);
}

TEST(Tpp, ShrinkingTheFastNodeMovesItsColdestPagesAndRecomputesWatermarks) {
  TppPolicy tpp(small_params(), 1000);
  for (uint64_t p = 0; p < 900; ++p) tpp.access(p, 0);  // inactive LRU: 899 at the head, 0 at the tail
  for (uint64_t p = 0; p < 100; ++p) tpp.access(p, 1);  // referenced again, but still coldest
  tpp.set_fast_pages(500);
  EXPECT_EQ(tpp.capacity(Node::kFast), 500u);
  // 400 forced out by the resize, oldest first; then kswapd (woken: free 0 < low) makes room up
  // to the new promo watermark, sparing the referenced pages by second chance where it can.
  EXPECT_EQ(tpp.counters().pgdemote_direct, 400u);
  EXPECT_EQ(tpp.node_of(0), Node::kSlow);
  EXPECT_EQ(tpp.node_of(899), Node::kFast);
  // 500 pages of 1500 managed: min_free_kbytes 160 gives this node 53 kB = 13 pages.
  EXPECT_EQ(tpp.fast_watermarks().min, 13u);
  EXPECT_TRUE(tpp.kswapd_awake());
  tpp.run_kswapd();
  EXPECT_GE(tpp.free_pages(Node::kFast), tpp.fast_watermarks().promo);
  // Growing leaves pages where they are; first touch and promotion fill the new room.
  const uint64_t used = 500 - tpp.free_pages(Node::kFast);
  tpp.set_fast_pages(2000);
  EXPECT_EQ(tpp.free_pages(Node::kFast), 2000 - used);
  tpp.access(950, 2);
  EXPECT_EQ(tpp.node_of(950), Node::kFast);
  // The slow node cannot take what does not fit.
  TppParams tight = small_params();
  tight.slow_pages = 10;
  TppPolicy full(tight, 1000);
  for (uint64_t p = 0; p < 900; ++p) full.access(p, 0);
  EXPECT_THROW(full.set_fast_pages(100), core::Error);
}

TEST(Tpp, RejectsEmptyTiers) {
  TppParams p;
  p.fast_pages = 0;
  p.slow_pages = 0;
  EXPECT_THROW(TppPolicy(p, 10), core::Error);
  // No fast memory at all is a valid configuration: everything lands on the slow tier.
  p.slow_pages = 100;
  TppPolicy all_slow(p, 10);
  EXPECT_EQ(all_slow.access(3, 0).node, Node::kSlow);
  all_slow.tick(1e9);
  EXPECT_EQ(all_slow.counters().pgdemote_kswapd, 0u);
}

}  // namespace
}  // namespace tuna::sim
