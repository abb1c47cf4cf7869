#include "attncache/kernels/cpu/ops.h"

#include <gtest/gtest.h>

#include <cmath>
#include <random>
#include <vector>

namespace attncache::cpu {
namespace {

TEST(Ops, ExpIsAccurateOverTheSoftmaxRange) {
  std::vector<float> x;
  for (float v = -87.0f; v <= 80.0f; v += 0.0137f) x.push_back(v);
  std::vector<float> y = x;
  exp_inplace(y.data(), y.size());
  double worst = 0;
  for (size_t i = 0; i < x.size(); ++i) {
    double ref = std::exp(static_cast<double>(x[i]));
    worst = std::max(worst, std::fabs(y[i] - ref) / ref);
  }
  EXPECT_LT(worst, 3e-7);
  float tiny = -200.0f;
  exp_inplace(&tiny, 1);
  EXPECT_GE(tiny, 0.0f);
  EXPECT_LT(tiny, 1e-37f);
}

TEST(Ops, BiasGeluMatchesErfForm) {
  std::vector<float> x, bias = {0.5f, -0.25f};
  for (float v = -8.0f; v <= 8.0f; v += 0.01f) x.push_back(v);
  if (x.size() % 2) x.pop_back();
  std::vector<float> y = x;
  bias_gelu(y.data(), bias.data(), static_cast<int>(y.size() / 2), 2);
  for (size_t i = 0; i < x.size(); ++i) {
    double v = static_cast<double>(x[i]) + bias[i % 2];
    double ref = 0.5 * v * (1.0 + std::erf(v / std::sqrt(2.0)));
    ASSERT_NEAR(y[i], ref, 2e-6 * std::max(1.0, std::fabs(v))) << v;
  }
}

TEST(Ops, ResidualLayerNormMatchesDoublePrecision) {
  const int rows = 5, cols = 384;
  std::mt19937 rng(1);
  std::normal_distribution<float> dist(0.0f, 2.0f);
  std::vector<float> x(rows * cols), res(rows * cols), bias(cols), g(cols), b(cols);
  for (auto* v : {&x, &res, &bias, &g, &b}) {
    for (float& f : *v) f = dist(rng);
  }
  std::vector<float> out(rows * cols);
  bias_residual_layernorm(x.data(), bias.data(), res.data(), g.data(), b.data(), 1e-12f, out.data(),
                          rows, cols);
  for (int r = 0; r < rows; ++r) {
    double mean = 0, var = 0;
    std::vector<double> v(cols);
    for (int c = 0; c < cols; ++c)
      mean += v[c] = double(x[r * cols + c]) + bias[c] + res[r * cols + c];
    mean /= cols;
    for (int c = 0; c < cols; ++c) var += (v[c] - mean) * (v[c] - mean);
    var /= cols;
    for (int c = 0; c < cols; ++c) {
      double ref = (v[c] - mean) / std::sqrt(var + 1e-12) * g[c] + b[c];
      ASSERT_NEAR(out[r * cols + c], ref, 1e-4);
    }
  }
}

TEST(Ops, LinearComputesInputTimesWeightTransposed) {
  const int m = 3, n = 4, k = 5;
  std::vector<float> a(m * k), w(n * k), c(m * n, 7.0f);
  for (int i = 0; i < m * k; ++i) a[i] = static_cast<float>(i % 7) - 3.0f;
  for (int i = 0; i < n * k; ++i) w[i] = static_cast<float>(i % 5) * 0.5f;
  linear(a.data(), w.data(), c.data(), m, n, k);
  for (int i = 0; i < m; ++i) {
    for (int j = 0; j < n; ++j) {
      float ref = 0;
      for (int t = 0; t < k; ++t) ref += a[i * k + t] * w[j * k + t];
      EXPECT_FLOAT_EQ(c[i * n + j], ref);
    }
  }
  std::vector<float> c2 = c;
  linear(a.data(), w.data(), c2.data(), m, n, k, /*accumulate=*/true);
  for (int i = 0; i < m * n; ++i) EXPECT_FLOAT_EQ(c2[i], 2 * c[i]);
}

}  // namespace
}  // namespace attncache::cpu
