// Nearest-record search: exact results, id-range restriction for every index kind, persistence
// and unreadable files.
#include "core/nearest_index.h"

#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <random>

#include "core/error.h"
#include "support/temp_dir.h"

namespace core {
namespace {

std::vector<float> random_vectors(int n, int dim, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::normal_distribution<float> g;
  std::vector<float> v(static_cast<size_t>(n) * dim);
  for (float& x : v) x = g(rng);
  return v;
}

// The exact nearest id in [first, last) by brute force.
int64_t brute_force(const std::vector<float>& v, int dim, const float* q, int64_t first,
                    int64_t last) {
  int64_t best = -1;
  float best_d = INFINITY;
  for (int64_t i = first; i < last; ++i) {
    float d = 0;
    for (int k = 0; k < dim; ++k) d += (v[i * dim + k] - q[k]) * (v[i * dim + k] - q[k]);
    if (d < best_d) best_d = d, best = i;
  }
  return best;
}

class IndexKinds : public testing::TestWithParam<const char*> {};

TEST_P(IndexKinds, FindsTheNearestInsideAnIdRange) {
  const int dim = 16, n = 2000;
  const auto v = random_vectors(n, dim, 1);
  NearestIndex index = NearestIndex::create(GetParam(), dim);
  index.build(v.data(), n);
  index.set_search_breadth(64);
  const auto queries = random_vectors(50, dim, 2);
  int agree = 0;
  for (int i = 0; i < 50; ++i) {
    const float* q = queries.data() + i * dim;
    const int64_t first = 300, last = 900;
    const auto found = index.search(q, 3, first, last);
    for (const auto& nb : found) {
      if (nb.id >= 0) {
        EXPECT_TRUE(nb.id >= first && nb.id < last) << nb.id;
      }
    }
    EXPECT_LE(found[0].distance, found[1].distance);
    agree += found[0].id == brute_force(v, dim, q, first, last);
  }
  if (std::string(GetParam()) == "Flat") {
    EXPECT_EQ(agree, 50);
  } else {
    EXPECT_GE(agree, 40) << "approximate search recall too low";
  }
}

INSTANTIATE_TEST_SUITE_P(Kinds, IndexKinds, testing::Values("Flat", "IVF16,Flat", "HNSW16"));

TEST(NearestIndex, SavesAndLoads) {
  testing_support::TempDir dir;
  const auto v = random_vectors(100, 8, 3);
  NearestIndex index = NearestIndex::create("Flat", 8);
  index.build(v.data(), 100);
  index.save(dir.path("i.faiss"));
  NearestIndex back = NearestIndex::load(dir.path("i.faiss"));
  EXPECT_EQ(back.size(), 100);
  EXPECT_EQ(back.search(v.data() + 8 * 42, 1, 0, 100)[0].id, 42);
}

TEST(NearestIndex, RejectsBadSpecsAndFiles) {
  EXPECT_THROW(NearestIndex::create("NoSuchIndex", 8), Error);
  testing_support::TempDir dir;
  std::ofstream(dir.path("junk.faiss")) << "not an index";
  EXPECT_THROW(NearestIndex::load(dir.path("junk.faiss")), Error);
  const auto v = random_vectors(10, 8, 4);
  NearestIndex ivf = NearestIndex::create("IVF64,Flat", 8);
  EXPECT_THROW(ivf.build(v.data(), 10), Error);  // more lists than vectors
}

}  // namespace
}  // namespace core
