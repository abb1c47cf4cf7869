#include "attncache/kernels/cpu/attention.h"

#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <random>
#include <vector>

#include "core/error.h"

namespace attncache::cpu {
namespace {

constexpr int kHeads = 3;
// Most tests use MiniLM's head size; the reference test covers every specialization.
int kHeadDim = 32;
int kHidden = kHeads * kHeadDim;

void set_head_dim(int dh) {
  kHeadDim = dh;
  kHidden = kHeads * dh;
}

struct Batch {
  std::vector<int> lengths;
  std::vector<AttentionSeq> seqs;
  std::vector<float> qkv;
  int total = 0;
};

// Lengths cover the kernel's edge cases: one token, partial row and column blocks, several blocks.
// Rows of qkv are `width` floats (0: 3·kHidden, q | k | v of kHeads heads each).
Batch make_batch(std::vector<int> lengths, unsigned seed = 7, int width = 0) {
  Batch b;
  b.lengths = std::move(lengths);
  for (int n : b.lengths) {
    AttentionSeq s;
    s.offset = b.total;
    s.length = n;
    b.seqs.push_back(s);
    b.total += n;
  }
  std::mt19937 rng(seed);
  std::normal_distribution<float> dist(0.0f, 1.5f);
  b.qkv.resize(static_cast<size_t>(b.total) * (width > 0 ? width : 3 * kHidden));
  for (float& v : b.qkv) v = dist(rng);
  return b;
}

// Straightforward double-precision attention: P = softmax(QKᵀ/√d), O = P·V.
void reference(const Batch& b, std::vector<double>* out, std::vector<std::vector<double>>* probs) {
  out->assign(static_cast<size_t>(b.total) * kHidden, 0.0);
  probs->clear();
  for (const AttentionSeq& s : b.seqs) {
    const int n = s.length;
    std::vector<double> p(static_cast<size_t>(kHeads) * n * n);
    for (int h = 0; h < kHeads; ++h) {
      for (int i = 0; i < n; ++i) {
        const float* q = &b.qkv[(s.offset + i) * 3 * kHidden + h * kHeadDim];
        double mx = -1e300;
        std::vector<double> row(n);
        for (int j = 0; j < n; ++j) {
          const float* k = &b.qkv[(s.offset + j) * 3 * kHidden + kHidden + h * kHeadDim];
          double dot = 0;
          for (int d = 0; d < kHeadDim; ++d) dot += double(q[d]) * k[d];
          row[j] = dot / std::sqrt(double(kHeadDim));
          mx = std::max(mx, row[j]);
        }
        double sum = 0;
        for (double& v : row) sum += v = std::exp(v - mx);
        for (int j = 0; j < n; ++j) {
          p[(size_t(h) * n + i) * n + j] = row[j] / sum;
          const float* v = &b.qkv[(s.offset + j) * 3 * kHidden + 2 * kHidden + h * kHeadDim];
          for (int d = 0; d < kHeadDim; ++d) {
            (*out)[(s.offset + i) * kHidden + h * kHeadDim + d] += row[j] / sum * v[d];
          }
        }
      }
    }
    probs->push_back(std::move(p));
  }
}

class AttentionHeadDim : public ::testing::TestWithParam<int> {
 protected:
  void SetUp() override { set_head_dim(GetParam()); }
  void TearDown() override { set_head_dim(32); }
};

TEST_P(AttentionHeadDim, FusedKernelMatchesReferenceOnMixedLengths) {
  Batch b = make_batch({1, 3, 7, 8, 31, 33, 63, 64, 65, 130});
  std::vector<double> ref;
  std::vector<std::vector<double>> ref_probs;
  reference(b, &ref, &ref_probs);
  std::vector<float> ctx(static_cast<size_t>(b.total) * kHidden);
  std::vector<std::vector<float>> recorded(b.seqs.size());
  for (size_t s = 0; s < b.seqs.size(); ++s) {
    recorded[s].resize(ref_probs[s].size());
    b.seqs[s].record = recorded[s].data();
  }
  attention(b.qkv.data(), ctx.data(), b.seqs.data(), static_cast<int>(b.seqs.size()), kHeads,
            kHeadDim);
  for (size_t i = 0; i < ctx.size(); ++i) ASSERT_NEAR(ctx[i], ref[i], 2e-5) << i;
  for (size_t s = 0; s < b.seqs.size(); ++s) {
    for (size_t i = 0; i < recorded[s].size(); ++i) {
      ASSERT_NEAR(recorded[s][i], ref_probs[s][i], 1e-6) << "seq " << s << " element " << i;
    }
  }
}

INSTANTIATE_TEST_SUITE_P(SupportedHeadSizes, AttentionHeadDim, ::testing::Values(16, 32, 64, 128));

TEST(Attention, ReusingOwnProbabilitiesReproducesTheExactPath) {
  Batch b = make_batch({5, 70});
  std::vector<float> exact(static_cast<size_t>(b.total) * kHidden);
  std::vector<std::vector<float>> probs(2);
  for (int s = 0; s < 2; ++s) {
    probs[s].resize(static_cast<size_t>(kHeads) * b.lengths[s] * b.lengths[s]);
    b.seqs[s].record = probs[s].data();
  }
  attention(b.qkv.data(), exact.data(), b.seqs.data(), 2, kHeads, kHeadDim);

  // Replace with the recorded maps, and corrupt Q and K so any recomputation would show.
  Batch reuse = b;
  for (int t = 0; t < reuse.total; ++t) {
    for (int c = 0; c < 2 * kHidden; ++c) reuse.qkv[t * 3 * kHidden + c] = 100.0f;
  }
  for (int s = 0; s < 2; ++s) {
    reuse.seqs[s].record = nullptr;
    reuse.seqs[s].stored = probs[s].data();
  }
  std::vector<float> reused(exact.size());
  attention(reuse.qkv.data(), reused.data(), reuse.seqs.data(), 2, kHeads, kHeadDim);
  for (size_t i = 0; i < exact.size(); ++i) ASSERT_FLOAT_EQ(reused[i], exact[i]);
}

TEST(Attention, ReuseHonoursDTypeAndHeadMask) {
  Batch b = make_batch({9});
  std::vector<float> exact(static_cast<size_t>(b.total) * kHidden);
  std::vector<float> probs(kHeads * 81);
  b.seqs[0].record = probs.data();
  attention(b.qkv.data(), exact.data(), b.seqs.data(), 1, kHeads, kHeadDim);

  // Uniform bf16 maps for head 1 only: 1/9 is not exact in bf16, so compare loosely there.
  std::vector<uint16_t> uniform(kHeads * 81, 0x3DE4);  // bf16(0.111328125)
  b.seqs[0].record = nullptr;
  b.seqs[0].stored = uniform.data();
  b.seqs[0].stored_dtype = core::DType::kBF16;
  b.seqs[0].stored_heads = 1u << 1;
  std::vector<float> mixed(exact.size());
  attention(b.qkv.data(), mixed.data(), b.seqs.data(), 1, kHeads, kHeadDim);
  for (int i = 0; i < 9; ++i) {
    for (int d = 0; d < kHeadDim; ++d) {
      // Heads 0 and 2 are computed exactly.
      EXPECT_FLOAT_EQ(mixed[i * kHidden + d], exact[i * kHidden + d]);
      EXPECT_FLOAT_EQ(mixed[i * kHidden + 2 * kHeadDim + d], exact[i * kHidden + 2 * kHeadDim + d]);
      // Head 1 averages V over all tokens with weight 0.111328125.
      double mean = 0;
      for (int j = 0; j < 9; ++j)
        mean += 0.111328125 * b.qkv[j * 3 * kHidden + 2 * kHidden + kHeadDim + d];
      EXPECT_NEAR(mixed[i * kHidden + kHeadDim + d], mean, 1e-5);
    }
  }
}

// Causal grouped-query attention: 6 query heads over 2 key/value heads, rows of (q | k | v).
struct GqaBatch : Batch {
  AttentionShape shape{6, 2, 32, true};
};

GqaBatch make_gqa_batch(std::vector<int> lengths, unsigned seed = 11) {
  GqaBatch b;
  static_cast<Batch&>(b) = make_batch(std::move(lengths), seed, b.shape.qkv_width());
  return b;
}

// Double-precision causal GQA; probabilities as packed lower triangles.
void gqa_reference(const GqaBatch& b, std::vector<double>* out,
                   std::vector<std::vector<double>>* probs) {
  const AttentionShape& sh = b.shape;
  const int dh = sh.head_dim, width = sh.qkv_width(), hidden = sh.num_heads * dh;
  const int group = sh.num_heads / sh.num_kv_heads;
  out->assign(static_cast<size_t>(b.total) * hidden, 0.0);
  probs->clear();
  for (const AttentionSeq& s : b.seqs) {
    const int n = s.length;
    std::vector<double> p(sh.num_heads * attention_map_size(n, true));
    for (int h = 0; h < sh.num_heads; ++h) {
      const int kvh = h / group;
      for (int i = 0; i < n; ++i) {
        const float* q = &b.qkv[(s.offset + i) * width + h * dh];
        std::vector<double> row(i + 1);
        double mx = -1e300, sum = 0;
        for (int j = 0; j <= i; ++j) {
          const float* k = &b.qkv[(s.offset + j) * width + hidden + kvh * dh];
          double dot = 0;
          for (int d = 0; d < dh; ++d) dot += double(q[d]) * k[d];
          mx = std::max(mx, row[j] = dot / std::sqrt(double(dh)));
        }
        for (double& v : row) sum += v = std::exp(v - mx);
        for (int j = 0; j <= i; ++j) {
          p[h * attention_map_size(n, true) + size_t(i) * (i + 1) / 2 + j] = row[j] / sum;
          const float* v =
              &b.qkv[(s.offset + j) * width + hidden + sh.num_kv_heads * dh + kvh * dh];
          for (int d = 0; d < dh; ++d)
            (*out)[(s.offset + i) * hidden + h * dh + d] += row[j] / sum * v[d];
        }
      }
    }
    probs->push_back(std::move(p));
  }
}

TEST(CausalAttention, GroupedQueryKernelMatchesReferenceAndRecordsTriangles) {
  GqaBatch b = make_gqa_batch({1, 2, 7, 8, 9, 33, 64, 100});
  std::vector<double> ref;
  std::vector<std::vector<double>> ref_probs;
  gqa_reference(b, &ref, &ref_probs);
  std::vector<std::vector<float>> recorded(b.seqs.size());
  for (size_t s = 0; s < b.seqs.size(); ++s) {
    recorded[s].resize(ref_probs[s].size());
    b.seqs[s].record = recorded[s].data();
  }
  std::vector<float> ctx(static_cast<size_t>(b.total) * b.shape.num_heads * b.shape.head_dim);
  attention(b.qkv.data(), ctx.data(), b.seqs.data(), static_cast<int>(b.seqs.size()), b.shape);
  for (size_t i = 0; i < ctx.size(); ++i) ASSERT_NEAR(ctx[i], ref[i], 2e-5) << i;
  for (size_t s = 0; s < b.seqs.size(); ++s) {
    for (size_t i = 0; i < recorded[s].size(); ++i) {
      ASSERT_NEAR(recorded[s][i], ref_probs[s][i], 1e-6) << "seq " << s << " element " << i;
    }
  }
}

TEST(CausalAttention, ReusingOwnTrianglesReproducesTheExactPath) {
  GqaBatch b = make_gqa_batch({5, 41});
  const int hidden = b.shape.num_heads * b.shape.head_dim;
  std::vector<std::vector<float>> probs(2);
  for (int s = 0; s < 2; ++s) {
    probs[s].resize(b.shape.num_heads * attention_map_size(b.lengths[s], true));
    b.seqs[s].record = probs[s].data();
  }
  std::vector<float> exact(static_cast<size_t>(b.total) * hidden);
  attention(b.qkv.data(), exact.data(), b.seqs.data(), 2, b.shape);
  GqaBatch reuse = b;
  for (int t = 0; t < reuse.total; ++t) {
    // Corrupt Q and K: any recomputation would show.
    for (int c = 0; c < hidden + b.shape.num_kv_heads * b.shape.head_dim; ++c) {
      reuse.qkv[t * b.shape.qkv_width() + c] = 100.0f;
    }
  }
  for (int s = 0; s < 2; ++s) {
    reuse.seqs[s].record = nullptr;
    reuse.seqs[s].stored = probs[s].data();
  }
  std::vector<float> reused(exact.size());
  attention(reuse.qkv.data(), reused.data(), reuse.seqs.data(), 2, reuse.shape);
  for (size_t i = 0; i < exact.size(); ++i) ASSERT_FLOAT_EQ(reused[i], exact[i]);
}

TEST(CausalAttention, ContinuingACachedPrefixEqualsTheWholeSequence) {
  const int n = 70, past = 37;
  GqaBatch whole = make_gqa_batch({n});
  const AttentionShape& sh = whole.shape;
  const int hidden = sh.num_heads * sh.head_dim, kv = sh.num_kv_heads * sh.head_dim;
  std::vector<float> full(static_cast<size_t>(n) * hidden);
  attention(whole.qkv.data(), full.data(), whole.seqs.data(), 1, sh);

  std::vector<float> past_k(static_cast<size_t>(past) * kv), past_v(past_k.size());
  for (int j = 0; j < past; ++j) {
    const float* row = &whole.qkv[j * sh.qkv_width()];
    std::copy(row + hidden, row + hidden + kv, &past_k[j * kv]);
    std::copy(row + hidden + kv, row + hidden + 2 * kv, &past_v[j * kv]);
  }
  AttentionSeq suffix;
  suffix.length = n - past;
  suffix.past_k = past_k.data();
  suffix.past_v = past_v.data();
  suffix.past_length = past;
  std::vector<float> cont(static_cast<size_t>(n - past) * hidden);
  attention(whole.qkv.data() + past * sh.qkv_width(), cont.data(), &suffix, 1, sh);
  for (size_t i = 0; i < cont.size(); ++i) ASSERT_NEAR(cont[i], full[past * hidden + i], 1e-6) << i;
}

TEST(CausalAttention, APrefixWithMapsOrWithoutCausalityIsRefused) {
  GqaBatch b = make_gqa_batch({4});
  std::vector<float> kv(64 * 4), ctx(4 * 6 * 32), rec(6 * 10);
  b.seqs[0].past_k = b.seqs[0].past_v = kv.data();
  b.seqs[0].past_length = 2;
  b.seqs[0].record = rec.data();
  EXPECT_THROW(attention(b.qkv.data(), ctx.data(), b.seqs.data(), 1, b.shape), core::Error);
  b.seqs[0].record = nullptr;
  AttentionShape bidirectional = b.shape;
  bidirectional.causal = false;
  EXPECT_THROW(attention(b.qkv.data(), ctx.data(), b.seqs.data(), 1, bidirectional), core::Error);
}

}  // namespace
}  // namespace attncache::cpu
