#include "tuna/workloads/btree.h"

#include <cmath>
#include <random>

#include "core/error.h"

namespace tuna {
namespace {

constexpr int kFanout = 16;
// A node: count, is_leaf, then kFanout keys, then kFanout + 1 children (or values in leaves).
constexpr int kCount = 0, kLeaf = 1, kKeys = 2, kChildren = kKeys + kFanout;
constexpr int kNodeWords = kChildren + kFanout + 1;

int64_t value_of(uint64_t key) { return static_cast<int64_t>(key * 2 + 1); }
uint64_t key_of_record(uint64_t i) { return i * 3 + 7; }  // sparse keys: misses are possible

uint64_t fnv1a(uint64_t x) {
  uint64_t h = 0xcbf29ce484222325ull;
  for (int i = 0; i < 8; ++i) {
    h ^= (x >> (8 * i)) & 0xff;
    h *= 0x100000001b3ull;
  }
  return h;
}

}  // namespace

BTree::BTree(const BTreeOptions& o) : options_(o) {
  if (o.records < 2 || o.records > (1ull << 30)) core::throw_bad_input("btree: records 2..2^30");
  if (!(o.zipf_theta > 0 && o.zipf_theta < 1)) core::throw_bad_input("btree: theta in (0, 1)");
  // Bulk load: leaves of up to kFanout keys, then parents over them until one root.
  std::vector<int64_t> level;  // node ids of the current level
  std::vector<uint64_t> level_min;
  for (uint64_t i = 0; i < o.records; i += kFanout) {
    const int64_t id = static_cast<int64_t>(nodes_.size() / kNodeWords);
    nodes_.resize(nodes_.size() + kNodeWords, 0);
    int64_t* node = &nodes_[id * kNodeWords];
    const int count = static_cast<int>(std::min<uint64_t>(kFanout, o.records - i));
    node[kCount] = count;
    node[kLeaf] = 1;
    for (int j = 0; j < count; ++j) {
      node[kKeys + j] = static_cast<int64_t>(key_of_record(i + j));
      node[kChildren + j] = value_of(key_of_record(i + j));
    }
    level.push_back(id);
    level_min.push_back(key_of_record(i));
  }
  while (level.size() > 1) {
    std::vector<int64_t> parents;
    std::vector<uint64_t> parents_min;
    for (size_t i = 0; i < level.size(); i += kFanout + 1) {
      const int64_t id = static_cast<int64_t>(nodes_.size() / kNodeWords);
      nodes_.resize(nodes_.size() + kNodeWords, 0);
      int64_t* node = &nodes_[id * kNodeWords];
      const size_t children = std::min<size_t>(kFanout + 1, level.size() - i);
      node[kCount] = static_cast<int64_t>(children) - 1;  // separator keys
      for (size_t c = 0; c < children; ++c) {
        node[kChildren + c] = level[i + c];
        if (c > 0) node[kKeys + c - 1] = static_cast<int64_t>(level_min[i + c]);
      }
      parents.push_back(id);
      parents_min.push_back(level_min[i]);
    }
    level.swap(parents);
    level_min.swap(parents_min);
  }
  root_ = level[0];
  // YCSB's ZipfianGenerator constants over the record ranks.
  for (uint64_t i = 1; i <= o.records; ++i)
    zetan_ += 1.0 / std::pow(static_cast<double>(i), o.zipf_theta);
  const double zeta2 = 1.0 + 1.0 / std::pow(2.0, o.zipf_theta);
  alpha_ = 1.0 / (1.0 - o.zipf_theta);
  eta_ = (1 - std::pow(2.0 / o.records, 1 - o.zipf_theta)) / (1 - zeta2 / zetan_);
}

uint64_t BTree::request_key(uint64_t k) const {
  std::mt19937_64 rng(options_.seed * 0x9e3779b97f4a7c15ull + k);
  const double u = std::uniform_real_distribution<double>(0, 1)(rng);
  const double uz = u * zetan_;
  uint64_t rank;
  if (uz < 1.0)
    rank = 0;
  else if (uz < 1.0 + std::pow(0.5, options_.zipf_theta))
    rank = 1;
  else
    rank = static_cast<uint64_t>(options_.records * std::pow(eta_ * u - eta_ + 1, alpha_));
  rank = std::min(rank, options_.records - 1);
  return key_of_record(fnv1a(rank) % options_.records);
}

uint64_t BTree::footprint_bytes() const {
  return nodes_.size() * 8 + options_.requests * 8 + 4 * 4096;
}

void BTree::run(sim::MemorySystem& memory) {
  SimArray<int64_t> nodes(memory, nodes_.size());
  SimArray<int64_t> out(memory, options_.requests);
  for (size_t i = 0; i < nodes_.size(); ++i) nodes.set(i, nodes_[i]);
  for (uint64_t k = 0; k < options_.requests; ++k) {
    const auto key = static_cast<int64_t>(request_key(k));
    int64_t node = root_;
    int64_t value = -1;
    for (;;) {
      const size_t base = static_cast<size_t>(node) * kNodeWords;
      const int64_t count = nodes.get(base + kCount, true);
      const bool leaf = nodes.get(base + kLeaf) != 0;
      int j = 0;  // first key greater than the search key (linear scan, as B+-trees often do)
      while (j < count && nodes.get(base + kKeys + j) <= key) ++j;
      memory.compute(2 * (j + 1));
      if (leaf) {
        if (j > 0 && nodes.get(base + kKeys + j - 1) == key)
          value = nodes.get(base + kChildren + j - 1);
        break;
      }
      node = nodes.get(base + kChildren + j);
    }
    out.set(k, value);
  }
  found_ = out.values();
}

std::string BTree::check(const std::vector<int64_t>& found) const {
  if (found.size() != options_.requests) return "btree: the kernel has not run";
  for (uint64_t k = 0; k < options_.requests; ++k) {
    if (found[k] != value_of(request_key(k))) {
      return core::cat("btree: request ", k, " found ", found[k], ", expected ",
                       value_of(request_key(k)));
    }
  }
  return "";
}

}  // namespace tuna
