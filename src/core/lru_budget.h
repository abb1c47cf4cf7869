// Which keys stay resident within a byte budget: least recently used out, pinned keys never.
// Bookkeeping only (the caller owns the memory): a device cache asks it what to evict.
#pragma once

#include <cstddef>
#include <cstdint>
#include <list>
#include <unordered_map>
#include <vector>

#include "core/error.h"

namespace core {

class LruBudget {
 public:
  explicit LruBudget(size_t capacity) : capacity_(capacity) {}

  size_t capacity() const { return capacity_; }
  size_t used() const { return used_; }
  size_t size() const { return entries_.size(); }
  bool contains(int64_t key) const { return entries_.count(key) != 0; }

  // Marks `key` most recently used; false when it is not resident.
  bool touch(int64_t key) {
    auto it = entries_.find(key);
    if (it == entries_.end()) return false;
    order_.splice(order_.begin(), order_, it->second.position);
    return true;
  }

  // Makes `key` (of `bytes`) resident and most recently used, evicting least recently used
  // unpinned keys until it fits; returns the evicted keys, oldest first. Throws core::Error
  // (bad input) when it cannot fit: larger than the budget, or pinned keys hold the rest.
  std::vector<int64_t> admit(int64_t key, size_t bytes) {
    if (touch(key)) return {};
    if (bytes > capacity_) {
      throw_bad_input("an entry of ", bytes, " bytes does not fit a cache of ", capacity_);
    }
    size_t pinned = 0;
    for (const auto& [k, e] : entries_) pinned += e.pinned ? e.bytes : 0;
    if (pinned + bytes > capacity_) {  // refuse before evicting anything
      throw_bad_input("the cache of ", capacity_, " bytes holds ", pinned,
                      " bytes of entries in use; ", bytes, " more do not fit");
    }
    std::vector<int64_t> evicted;
    auto it = order_.end();  // scans from the oldest key towards the newest
    while (used_ + bytes > capacity_) {
      do --it;
      while (entries_.at(*it).pinned);
      const int64_t k = *it;
      used_ -= entries_.at(k).bytes;
      entries_.erase(k);
      it = order_.erase(it);
      evicted.push_back(k);
    }
    order_.push_front(key);
    entries_[key] = {bytes, false, order_.begin()};
    used_ += bytes;
    return evicted;
  }

  // Forgets `key` (if resident), pinned or not.
  void erase(int64_t key) {
    auto it = entries_.find(key);
    if (it == entries_.end()) return;
    used_ -= it->second.bytes;
    order_.erase(it->second.position);
    entries_.erase(it);
  }

  // Pinned keys are not evicted until unpin_all().
  void pin(int64_t key) { entries_.at(key).pinned = true; }
  void unpin_all() {
    for (auto& [key, e] : entries_) e.pinned = false;
  }

 private:
  struct Entry {
    size_t bytes = 0;
    bool pinned = false;
    std::list<int64_t>::iterator position;
  };
  size_t capacity_ = 0, used_ = 0;
  std::list<int64_t> order_;  // most recently used first
  std::unordered_map<int64_t, Entry> entries_;
};

}  // namespace core
