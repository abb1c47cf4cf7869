// AttnCache's pieces on the real model: the projector (pooling, deterministic training that
// learns, persistence), the map database (build, reopen, length ranges) and the reuse path
// (an input's own stored maps reproduce the exact path; hits and misses mix in one batch;
// verification rejects maps that are not alike).
#include <gtest/gtest.h>

#include <cmath>
#include <functional>
#include <random>

#include "attncache/embedder.h"
#include "attncache/kernels/cpu/attention.h"
#include "attncache/memo/attn_cache.h"
#include "attncache/memo/gpu_evaluation.h"
#include "attncache/memo/map_database.h"
#include "attncache/memo/projector.h"
#include "core/dtype.h"
#include "core/error.h"
#include "core/progress.h"
#include "core/text_lines.h"
#include "support/real_model.h"
#include "support/temp_dir.h"
#include "support/test_paths.h"

namespace attncache::memo {
namespace {

using testing_support::cosine;
using testing_support::minilm;

TEST(Projector, PoolsAnyLengthToFixedBinsOfColumnPairMaxima) {
  Projector p(4, 1);  // d = 4: two column pairs
  for (int n : {1, 5, 16, 37}) {
    std::vector<float> f(static_cast<size_t>(n) * 4);
    for (int t = 0; t < n; ++t) {
      for (int c = 0; c < 4; ++c) f[t * 4 + c] = static_cast<float>(t * 10 + c);
    }
    std::vector<float> out(p.input_dim());
    p.pool(f.data(), n, out.data());
    for (int r = 0; r < Projector::kRows; ++r) {
      // Bin r covers tokens [⌊r·n/16⌋, ⌈(r+1)·n/16⌉): its maximum is the last token's value.
      const int last = std::max(r * n / 16 + 1, ((r + 1) * n + 15) / 16) - 1;
      EXPECT_EQ(out[r * 2 + 0], last * 10 + 1) << "n=" << n << " r=" << r;
      EXPECT_EQ(out[r * 2 + 1], last * 10 + 3) << "n=" << n << " r=" << r;
    }
  }
}

// Synthetic items whose label is the distance between hidden 2-D points: the projector must
// learn distances from pooled inputs that encode those points.
struct Synthetic {
  std::vector<float> pooled;
  std::vector<std::array<float, 2>> points;
  std::vector<std::vector<int>> batches;
};

Synthetic synthetic(const Projector& p, int items) {
  Synthetic s;
  std::mt19937_64 rng(7);
  std::uniform_real_distribution<float> u(0, 1);
  s.pooled.resize(static_cast<size_t>(items) * p.input_dim());
  for (int i = 0; i < items; ++i) {
    s.points.push_back({u(rng), u(rng)});
    for (int k = 0; k < p.input_dim(); ++k) {
      s.pooled[static_cast<size_t>(i) * p.input_dim() + k] =
          (k % 2 == 0 ? s.points[i][0] : s.points[i][1]) * (1 + k % 5) + 0.01f * u(rng);
    }
  }
  for (int i = 0; i < items; i += 32) {
    std::vector<int> b;
    for (int j = i; j < std::min(items, i + 32); ++j) b.push_back(j);
    s.batches.push_back(b);
  }
  return s;
}

// Every pair's label in each batch, in the order Projector::train reads them.
std::vector<std::vector<float>> labels_of(const std::vector<std::vector<int>>& batches,
                                          const std::function<float(int, int)>& label) {
  std::vector<std::vector<float>> labels(batches.size());
  for (size_t b = 0; b < batches.size(); ++b) {
    for (size_t i = 0; i < batches[b].size(); ++i) {
      for (size_t j = i + 1; j < batches[b].size(); ++j) {
        labels[b].push_back(label(batches[b][i], batches[b][j]));
      }
    }
  }
  return labels;
}

TEST(Projector, TrainingIsDeterministicAndLearnsTheLabels) {
  Projector a(8, 5), b(8, 5);
  const Synthetic s = synthetic(a, 256);
  auto label = [&](int i, int j) {
    return std::hypot(s.points[i][0] - s.points[j][0], s.points[i][1] - s.points[j][1]);
  };
  TrainOptions options;
  options.epochs = 30;
  options.learning_rate = 0.05f;
  const TrainReport ra = a.train(s.pooled, s.batches, labels_of(s.batches, label), options);
  const TrainReport rb = b.train(s.pooled, s.batches, labels_of(s.batches, label), options);
  EXPECT_EQ(ra.epoch_loss, rb.epoch_loss);
  EXPECT_LT(ra.epoch_loss.back(), 0.2 * ra.epoch_loss.front());
  // Predicted distances track the labels on pairs.
  std::vector<float> za(Projector::kOut), zb(Projector::kOut);
  double err = 0;
  for (int i = 0; i < 40; ++i) {
    a.project(s.pooled.data() + i * a.input_dim(), za.data());
    a.project(s.pooled.data() + (i + 100) * a.input_dim(), zb.data());
    double d2 = 0;
    for (int k = 0; k < Projector::kOut; ++k) d2 += (za[k] - zb[k]) * (za[k] - zb[k]);
    err += std::fabs(std::sqrt(d2) - label(i, i + 100));
  }
  EXPECT_LT(err / 40, 0.1);
}

TEST(Projector, SavesAndLoadsExactly) {
  testing_support::TempDir dir;
  Projector p(8, 3);
  const Synthetic s = synthetic(p, 64);
  p.train(s.pooled, s.batches,
          labels_of(s.batches, [](int i, int j) { return std::abs(i - j) * 0.01f; }), {});
  p.save(dir.path("p.acp"));
  Projector q = Projector::load(dir.path("p.acp"));
  std::vector<float> a(Projector::kOut), b(Projector::kOut);
  p.project(s.pooled.data(), a.data());
  q.project(s.pooled.data(), b.data());
  EXPECT_EQ(a, b);
}

// Entries with random maps (rows summing to one) of `dtype`, for the label tests.
struct SyntheticMaps {
  std::vector<std::vector<std::byte>> bytes;
  std::vector<MapEntry> entries;
};
SyntheticMaps synthetic_maps(const std::vector<int>& lengths, int maps, bool causal,
                             core::DType dtype) {
  SyntheticMaps s;
  std::mt19937 rng(11);
  std::uniform_real_distribution<float> u(0.01f, 1.0f);
  for (int n : lengths) {
    std::vector<float> values;
    for (int map = 0; map < maps; ++map) {
      for (int i = 0; i < n; ++i) {
        const int cols = causal ? i + 1 : n;
        std::vector<float> row(cols);
        float sum = 0;
        for (float& v : row) sum += (v = u(rng) * u(rng));
        for (float& v : row) values.push_back(v / sum);
      }
    }
    s.bytes.emplace_back(values.size() * core::dtype_size(dtype));
    core::convert_from_f32(dtype, values.data(), values.size(), s.bytes.back().data());
  }
  for (size_t e = 0; e < lengths.size(); ++e) {
    MapEntry entry;
    entry.n_tokens = lengths[e];
    entry.maps = s.bytes[e].data();
    s.entries.push_back(entry);
  }
  return s;
}

// The label's definition in double precision, row by row.
double reference_label(const MapEntry& a, const MapEntry& b, int maps, bool causal,
                       core::DType dtype, const PairLabel& options) {
  const int m = std::min(a.n_tokens, b.n_tokens);
  const int stride = std::max(1, (m + options.max_rows - 1) / options.max_rows);
  double tv_sum = 0;
  int rows = 0;
  for (int map = 0; map < maps; ++map) {
    for (int i = 0; i < m; i += stride, ++rows) {
      const int cols = causal ? i + 1 : m;
      std::vector<double> row[2];
      const MapEntry* both[2] = {&a, &b};
      for (int k = 0; k < 2; ++k) {
        const int n = both[k]->n_tokens;
        const size_t first = static_cast<size_t>(map) * cpu::attention_map_size(n, causal) +
                             cpu::attention_map_row(n, i, causal);
        std::vector<float> decoded(cols);
        core::convert_to_f32(dtype, both[k]->maps + first * core::dtype_size(dtype), cols,
                             decoded.data());
        double sum = 0;
        for (float v : decoded) sum += v;
        for (float v : decoded) row[k].push_back(v / sum);
      }
      double tv = 0;
      for (int j = 0; j < cols; ++j) tv += std::fabs(row[0][j] - row[1][j]);
      tv_sum += 0.5 * tv;
    }
  }
  return tv_sum / rows + options.length_weight * std::abs(a.n_tokens - b.n_tokens);
}

TEST(PairLabel, MatchesItsDefinitionAndTheBatchedLabelsMatchItExactly) {
  PairLabel options;
  options.max_rows = 5;  // rows strided from 10 tokens on
  for (const bool causal : {false, true}) {
    for (const core::DType dtype : {core::DType::kF16, core::DType::kP8}) {
      SCOPED_TRACE(std::string(causal ? "causal " : "bidirectional ") +
                   std::string(core::dtype_name(dtype)));
      const int layers = 2, heads = 3;
      const SyntheticMaps s =
          synthetic_maps({7, 7, 9, 12, 12, 3, 16}, layers * heads, causal, dtype);
      const std::vector<std::vector<int>> batches = {{0, 1, 2, 3}, {4, 5, 0, 6}, {1}};
      core::Progress progress("labels", 0, false);
      const auto labels = label_batches([&](int i) { return s.entries[i]; }, batches, layers, heads,
                                        causal, dtype, options, &progress);
      ASSERT_EQ(labels.size(), batches.size());
      for (size_t b = 0; b < batches.size(); ++b) {
        size_t p = 0;
        for (size_t i = 0; i < batches[b].size(); ++i) {
          for (size_t j = i + 1; j < batches[b].size(); ++j, ++p) {
            const MapEntry& x = s.entries[batches[b][i]];
            const MapEntry& y = s.entries[batches[b][j]];
            const float label = pair_label(x, y, layers, heads, causal, dtype, options);
            ASSERT_LT(p, labels[b].size());
            EXPECT_EQ(labels[b][p], label) << "batch " << b << ", pair " << i << "," << j;
            EXPECT_NEAR(label, reference_label(x, y, layers * heads, causal, dtype, options), 1e-5);
          }
        }
        EXPECT_EQ(p, labels[b].size());
      }
      // Identical maps are 0 apart; the length term alone separates different lengths.
      EXPECT_EQ(pair_label(s.entries[0], s.entries[0], layers, heads, causal, dtype, options),
                0.0f);
    }
  }
}

std::vector<std::string> corpus_lines(size_t first, size_t count) {
  const auto lines = core::read_lines(testing_paths::data_dir() + "/corpus.txt");
  return {lines.begin() + first, lines.begin() + first + count};
}

// One small database for the tests below (built once: about a second).
const std::string& small_db() {
  static testing_support::TempDir dir;
  static const std::string path = [] {
    BuildOptions options;
    options.max_tokens = 64;
    auto texts = corpus_lines(0, 48);
    texts.push_back(texts[3]);  // a duplicate: stored once
    texts.push_back("");        // an empty line: skipped
    const BuildReport r = MapDatabase::build(minilm(), texts, dir.path("db"), options);
    EXPECT_EQ(r.entries, 48u);
    EXPECT_EQ(r.duplicates, 1u);
    EXPECT_EQ(r.empty_lines, 1u);
    return dir.path("db");
  }();
  return path;
}

TEST(MapDatabase, StoresEveryInputSortedByLengthWithItsExactEmbedding) {
  MapDatabase db = MapDatabase::open(small_db(), minilm().fingerprint(), true);
  ASSERT_EQ(db.size(), 48u);
  EXPECT_EQ(db.layers(), 6);
  EXPECT_EQ(db.heads(), 12);
  for (size_t i = 1; i < db.size(); ++i) EXPECT_LE(db.n_tokens(i - 1), db.n_tokens(i));
  const MapEntry e = db.entry(17);
  const auto [first, last] = db.length_range(e.n_tokens);
  EXPECT_LE(first, 17);
  EXPECT_GT(last, 17);
  EXPECT_EQ(db.length_range(1000).first, db.length_range(1000).second);
  const std::vector<int32_t> ids(e.ids.begin(), e.ids.end());
  const std::vector<float> exact = minilm().embed({ids});
  EXPECT_GT(cosine(exact.data(), e.embedding.data(), 384), 0.999999);
  // Each stored map row is a probability distribution.
  std::vector<float> row(e.n_tokens);
  core::convert_to_f32(db.map_dtype(), e.maps, e.n_tokens, row.data());
  double sum = 0;
  for (float p : row) sum += p;
  EXPECT_NEAR(sum, 1.0, 2e-3);
}

// Where the maps are computed is the build's `forward` (the GPU, with `attncache build --device
// cuda`): what it returns is stored as the embeddings, what it leaves in the hook as the maps.
TEST(MapDatabase, StoresWhatItsForwardRecords) {
  testing_support::TempDir dir;
  BuildOptions options;
  options.max_tokens = 64;
  int calls = 0;
  options.forward = [&](const std::vector<std::vector<int32_t>>& batch, AttentionHook& hook) {
    ++calls;
    std::vector<float> out = minilm().embed(batch, &hook);
    for (float& x : out) x = -x;
    for (size_t s = 0; s < batch.size(); ++s) {
      hook.record(0, static_cast<int>(s), static_cast<int>(batch[s].size()))[0] = 0.25f;
    }
    return out;
  };
  MapDatabase::build(minilm(), corpus_lines(100, 6), dir.path("db"), options);
  EXPECT_EQ(calls, 1);
  MapDatabase db = MapDatabase::open(dir.path("db"), minilm().fingerprint(), true);
  ASSERT_EQ(db.size(), 6u);
  for (size_t i = 0; i < db.size(); ++i) {
    const MapEntry e = db.entry(i);
    const std::vector<float> exact = minilm().embed({{e.ids.begin(), e.ids.end()}});
    EXPECT_NEAR(e.embedding[0], -exact[0], 1e-6f) << i;
    float first = 0;
    core::convert_to_f32(db.map_dtype(), e.maps, 1, &first);
    EXPECT_EQ(first, 0.25f) << i;
  }
}

TEST(AttnCache, AStoredInputHitsItselfAndReproducesTheExactEmbedding) {
  MapDatabase db = MapDatabase::open(small_db(), nullptr, false);
  AttnCache cache(minilm(), db, 0.995);
  const MapEntry e = db.entry(30);
  const std::vector<int32_t> ids(e.ids.begin(), e.ids.end());
  const Lookup l = cache.lookup(ids);
  EXPECT_EQ(l.entry, 30);
  EXPECT_NEAR(l.distance, 0.0f, 1e-6);
  EXPECT_TRUE(l.hit);
  std::vector<Lookup> found;
  const std::vector<float> cached = cache.embed({ids}, &found);
  EXPECT_TRUE(found[0].hit);
  EXPECT_LT(found[0].layer0_tv, 1e-3);  // its own maps, up to fp16 rounding
  EXPECT_GT(cosine(cached.data(), e.embedding.data(), 384), 0.99999);
}

TEST(AttnCache, EightBitMapsReproduceTheExactEmbeddingOfTheirOwnInput) {
  for (const core::DType dtype : {core::DType::kP8, core::DType::kFP8}) {
    testing_support::TempDir dir;
    BuildOptions options;
    options.max_tokens = 64;
    options.map_dtype = dtype;
    MapDatabase::build(minilm(), corpus_lines(100, 12), dir.path("db"), options);
    MapDatabase db = MapDatabase::open(dir.path("db"), minilm().fingerprint(), true);
    EXPECT_EQ(db.map_dtype(), dtype);
    AttnCache cache(minilm(), db, 0.995);
    for (size_t i = 0; i < db.size(); ++i) {
      const MapEntry e = db.entry(i);
      std::vector<Lookup> found;
      const std::vector<float> cached = cache.embed({{e.ids.begin(), e.ids.end()}}, &found);
      EXPECT_TRUE(found[0].hit) << i;
      EXPECT_LT(found[0].layer0_tv, 1e-6) << i;  // compared after the same rounding
      EXPECT_GT(cosine(cached.data(), e.embedding.data(), 384),
                dtype == core::DType::kP8 ? 0.9995 : 0.999)
          << core::dtype_name(dtype) << " " << i;
    }
  }
}

TEST(AttnCache, HitsAndMissesMixInOneBatchAndMatchSeparateRuns) {
  MapDatabase db = MapDatabase::open(small_db(), nullptr, false);
  AttnCache cache(minilm(), db, 0.995, {}, {false, 0});
  std::vector<std::vector<int32_t>> batch;
  std::vector<int64_t> entries;
  for (int i : {5, 40, 12}) {
    const MapEntry e = db.entry(i);
    batch.emplace_back(e.ids.begin(), e.ids.end());
    entries.push_back(i);
  }
  batch.push_back(minilm().tokenize("A miss: no stored maps for this one.", 64).ids);
  entries.push_back(-1);
  entries[1] = -1;  // a stored input run exactly
  const std::vector<float> mixed = cache.embed_with(batch, entries);
  for (size_t s = 0; s < batch.size(); ++s) {
    const std::vector<float> alone = cache.embed_with({batch[s]}, {entries[s]});
    EXPECT_GT(cosine(mixed.data() + s * 384, alone.data(), 384), 0.999999) << s;
    const std::vector<float> exact = minilm().embed({batch[s]});
    EXPECT_GT(cosine(mixed.data() + s * 384, exact.data(), 384), 0.99999) << s;
  }
}

TEST(AttnCache, LengthRuleAndVerificationGuardReuse) {
  MapDatabase db = MapDatabase::open(small_db(), nullptr, false);
  AttnCache loose(minilm(), db, 0.0);  // every same-length candidate passes the projector rule
  // No stored input has this many tokens: no candidate at all.
  std::vector<int32_t> long_ids = minilm().tokenize(std::string(300, 'a') + " b", 64).ids;
  long_ids.resize(static_cast<size_t>(db.max_stored_tokens()) + 1, 1000);
  EXPECT_EQ(loose.lookup(long_ids).entry, -1);
  // A different input of a stored length: a candidate, but its layer-0 maps differ, so the
  // verified path runs it exactly.
  const MapEntry e = db.entry(20);
  std::vector<int32_t> other(e.ids.begin(), e.ids.end());
  std::reverse(other.begin() + 1, other.end() - 1);
  std::vector<Lookup> found;
  const std::vector<float> out = loose.embed({other}, &found);
  ASSERT_GE(found[0].entry, 0);
  EXPECT_GT(found[0].layer0_tv, 0.05f);
  EXPECT_FALSE(found[0].hit);
  EXPECT_GT(cosine(out.data(), minilm().embed({other}).data(), 384), 0.999999);
}

TEST(AttnCache, RejectsThresholdsOutOfRangeAndBadPolicies) {
  MapDatabase db = MapDatabase::open(small_db(), nullptr, false);
  EXPECT_THROW(AttnCache(minilm(), db, 1.5), core::Error);
  EXPECT_THROW(AttnCache(minilm(), db, -0.1), core::Error);
  EXPECT_THROW(AttnCache(minilm(), db, NAN), core::Error);
  EXPECT_EQ(ReusePolicy::parse_mask("0-2,5", 6, "--layers"), 0b100111u);
  EXPECT_THROW(ReusePolicy::parse_mask("0-9", 6, "--layers"), core::Error);
  EXPECT_THROW(ReusePolicy::parse_mask("x", 6, "--layers"), core::Error);
}

// AttnCache on the GPU hands batches to the CPU as DeviceEmbedder does for the exact path: a
// refused batch alone, everything after a failure; the CPU side is made once, on first use, and
// its own errors are passed on.
TEST(WithCpuFallback, RefusedBatchesRunOnTheCpuAndAFailureSwitchesForGood) {
  using Batch = std::vector<std::vector<int32_t>>;
  int gpu_calls = 0, cpu_made = 0;
  bool fail_next = false, failed = false;
  auto gpu = [&](const Batch& batch, std::vector<Lookup>* found) {
    ++gpu_calls;
    if (batch.size() == 3) core::throw_bad_input("too large for the GPU");
    if (fail_next) core::throw_internal("an illegal memory access");
    found->assign(batch.size(), Lookup{});
    return std::vector<float>(batch.size(), 1.0f);
  };
  auto make_cpu = [&]() -> GpuAttnCacheFn {
    ++cpu_made;
    return [](const Batch& batch, std::vector<Lookup>* found) {
      if (batch.size() == 5) core::throw_bad_input("the CPU refuses this one too");
      found->assign(batch.size(), Lookup{});
      return std::vector<float>(batch.size(), 2.0f);
    };
  };
  const GpuAttnCacheFn run = with_cpu_fallback(gpu, make_cpu, &failed);
  std::vector<Lookup> found;
  EXPECT_EQ(run(Batch(1), &found), std::vector<float>{1.0f});
  EXPECT_EQ(cpu_made, 0);
  EXPECT_EQ(run(Batch(3), &found), std::vector<float>(3, 2.0f));  // refused: this batch only
  EXPECT_EQ(found.size(), 3u);
  EXPECT_FALSE(failed);
  EXPECT_EQ(run(Batch(2), &found), std::vector<float>(2, 1.0f));
  fail_next = true;
  EXPECT_EQ(run(Batch(1), &found), std::vector<float>{2.0f});  // failed: the CPU from now on
  EXPECT_TRUE(failed);
  const int calls = gpu_calls;
  EXPECT_EQ(run(Batch(2), &found), std::vector<float>(2, 2.0f));
  EXPECT_EQ(gpu_calls, calls);
  EXPECT_EQ(cpu_made, 1);
  EXPECT_THROW(run(Batch(5), &found), core::Error);
}

}  // namespace
}  // namespace attncache::memo
