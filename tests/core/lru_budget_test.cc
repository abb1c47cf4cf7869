#include "core/lru_budget.h"

#include <gtest/gtest.h>

namespace core {
namespace {

using Keys = std::vector<int64_t>;

TEST(LruBudget, EvictsTheLeastRecentlyUsedToMakeRoom) {
  LruBudget lru(100);
  EXPECT_EQ(lru.admit(1, 40), Keys{});
  EXPECT_EQ(lru.admit(2, 40), Keys{});
  EXPECT_TRUE(lru.touch(1));  // 2 is now the oldest
  EXPECT_EQ(lru.admit(3, 40), Keys{2});
  EXPECT_EQ(lru.used(), 80u);
  EXPECT_FALSE(lru.contains(2));
  EXPECT_EQ(lru.admit(4, 100), (Keys{1, 3}));  // oldest first
  EXPECT_EQ(lru.size(), 1u);
  EXPECT_EQ(lru.admit(4, 100), Keys{});  // already resident: a hit
  EXPECT_FALSE(lru.touch(5));
}

TEST(LruBudget, PinnedKeysStayAndTooLittleRoomIsAClearError) {
  LruBudget lru(100);
  lru.admit(1, 30);
  lru.admit(2, 30);
  lru.admit(3, 30);
  lru.pin(1);                            // the oldest, but in use
  EXPECT_EQ(lru.admit(4, 40), Keys{2});  // 1 (30, pinned) + 3 (30) + 4 (40) = 100
  EXPECT_TRUE(lru.contains(1));
  lru.pin(4);
  try {
    lru.admit(5, 40);
    FAIL() << "evicted a pinned key";
  } catch (const Error& e) {
    EXPECT_EQ(e.kind(), ErrorKind::kBadInput);
    EXPECT_NE(std::string(e.what()).find("in use"), std::string::npos) << e.what();
  }
  EXPECT_EQ(lru.used(), 100u);  // refused before evicting anything
  EXPECT_TRUE(lru.contains(3));
  lru.unpin_all();
  EXPECT_EQ(lru.admit(5, 40), (Keys{1, 3}));
  EXPECT_THROW(lru.admit(6, 101), Error);
  lru.erase(5);
  EXPECT_FALSE(lru.contains(5));
  EXPECT_EQ(lru.used(), 40u);  // 4 is left
}

}  // namespace
}  // namespace core
