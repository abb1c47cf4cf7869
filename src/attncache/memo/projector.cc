#include "attncache/memo/projector.h"

#include <algorithm>
#include <cmath>
#include <random>

#include "attncache/kernels/cpu/ops.h"
#include "core/error.h"
#include "core/record_store.h"

namespace attncache::memo {
namespace {

constexpr char kMagic[] = "ACPROJ";
constexpr uint32_t kVersion = 1;
constexpr float kEps = 1e-5f;  // PyTorch BatchNorm defaults
constexpr float kStatMomentum = 0.1f;

// y[m×out] = x[m×in] · wᵀ + b
void affine(const float* x, const std::vector<float>& w, const std::vector<float>& b, int m, int in,
            int out, float* y) {
  cpu::linear(x, w.data(), y, m, out, in);
  for (int i = 0; i < m; ++i) {
    for (int o = 0; o < out; ++o) y[static_cast<size_t>(i) * out + o] += b[o];
  }
}

// Gradients of y = x·wᵀ + b for a batch of m rows (x: m × in, w: out × in): adds dy's products
// to grad_w and grad_b and sets dx (m × in). The products run on the OpenMP threads, each value
// summed by one thread in the order a serial loop would use, so the result does not depend on
// the thread count.
void linear_backward(const float* dy, const float* x, const float* w, int m, int in, int out,
                     float* grad_w, float* grad_b, std::vector<float>& dx) {
  for (int i = 0; i < m; ++i) {
    for (int o = 0; o < out; ++o) grad_b[o] += dy[static_cast<size_t>(i) * out + o];
  }
#pragma omp parallel for schedule(static)
  for (int o = 0; o < out; ++o) {
    float* gw = grad_w + static_cast<size_t>(o) * in;
    for (int i = 0; i < m; ++i) {
      const float d = dy[static_cast<size_t>(i) * out + o];
      const float* xi = x + static_cast<size_t>(i) * in;
      for (int k = 0; k < in; ++k) gw[k] += d * xi[k];
    }
  }
  dx.resize(static_cast<size_t>(m) * in);
#pragma omp parallel for schedule(static)
  for (int i = 0; i < m; ++i) {
    float* dxi = dx.data() + static_cast<size_t>(i) * in;
    std::fill(dxi, dxi + in, 0.0f);
    for (int o = 0; o < out; ++o) {
      const float d = dy[static_cast<size_t>(i) * out + o];
      const float* wo = w + static_cast<size_t>(o) * in;
      for (int k = 0; k < in; ++k) dxi[k] += d * wo[k];
    }
  }
}

std::span<const std::byte> bytes_of(const std::vector<float>& v) {
  return std::as_bytes(std::span<const float>(v));
}

}  // namespace

Projector::Projector(int model_dim, uint64_t seed) : model_dim_(model_dim) {
  if (model_dim < 2 || model_dim % 2 != 0) {
    core::throw_bad_input("projector: model hidden size ", model_dim, " must be even");
  }
  std::mt19937_64 rng(seed);
  auto init_linear = [&](Linear& l, int in, int out) {
    const float bound = 1.0f / std::sqrt(static_cast<float>(in));
    std::uniform_real_distribution<float> u(-bound, bound);
    l.w.resize(static_cast<size_t>(out) * in);
    l.b.resize(out);
    for (float& x : l.w) x = u(rng);
    for (float& x : l.b) x = u(rng);
  };
  auto init_bn = [](BatchNorm& bn, int n) {
    bn.gamma.assign(n, 1.0f);
    bn.beta.assign(n, 0.0f);
    bn.mean.assign(n, 0.0f);
    bn.var.assign(n, 1.0f);
  };
  init_bn(bn0_, input_dim());
  init_linear(fc1_, input_dim(), kHidden);
  init_bn(bn1_, kHidden);
  init_linear(fc2_, kHidden, kOut);
}

void Projector::pool(const float* features, int n_tokens, float* out) const {
  const int d = model_dim_;
  const int cols = d / 2;
  for (int r = 0; r < kRows; ++r) {
    const int begin = r * n_tokens / kRows;
    const int end = std::max(begin + 1, ((r + 1) * n_tokens + kRows - 1) / kRows);
    float* o = out + static_cast<size_t>(r) * cols;
    std::fill(o, o + cols, -INFINITY);
    for (int t = begin; t < std::min(end, n_tokens); ++t) {
      const float* row = features + static_cast<size_t>(t) * d;
      for (int c = 0; c < cols; ++c) o[c] = std::max(o[c], std::max(row[2 * c], row[2 * c + 1]));
    }
  }
}

void Projector::project(const float* pooled, float* out) const {
  const int in = input_dim();
  std::vector<float> x(pooled, pooled + in), h(kHidden);
  for (int j = 0; j < in; ++j) {
    x[j] = (x[j] - bn0_.mean[j]) / std::sqrt(bn0_.var[j] + kEps) * bn0_.gamma[j] + bn0_.beta[j];
  }
  affine(x.data(), fc1_.w, fc1_.b, 1, in, kHidden, h.data());
  for (int j = 0; j < kHidden; ++j) {
    h[j] = (h[j] - bn1_.mean[j]) / std::sqrt(bn1_.var[j] + kEps) * bn1_.gamma[j] + bn1_.beta[j];
  }
  affine(h.data(), fc2_.w, fc2_.b, 1, kHidden, kOut, out);
}

namespace {

// BatchNorm over a batch in training mode: normalizes x in place into x̂ (kept for backward),
// writes γ·x̂ + β to y, and updates the running statistics as PyTorch does. Row by row, so each
// pass reads memory in order; each feature's sums still run over the rows in order.
void bn_train_forward(float* xhat, float* y, int m, int n, const std::vector<float>& gamma,
                      const std::vector<float>& beta, std::vector<float>& run_mean,
                      std::vector<float>& run_var, std::vector<float>& inv_std) {
  std::vector<double> mean(n, 0.0), var(n, 0.0);
  for (int i = 0; i < m; ++i) {
    const float* row = xhat + static_cast<size_t>(i) * n;
    for (int j = 0; j < n; ++j) mean[j] += row[j];
  }
  for (int j = 0; j < n; ++j) mean[j] /= m;
  for (int i = 0; i < m; ++i) {
    const float* row = xhat + static_cast<size_t>(i) * n;
    for (int j = 0; j < n; ++j) {
      const double dx = row[j] - mean[j];
      var[j] += dx * dx;
    }
  }
  inv_std.resize(n);
  for (int j = 0; j < n; ++j) {
    var[j] /= m;
    inv_std[j] = static_cast<float>(1.0 / std::sqrt(var[j] + kEps));
  }
  for (int i = 0; i < m; ++i) {
    float* row = xhat + static_cast<size_t>(i) * n;
    float* out = y + static_cast<size_t>(i) * n;
    for (int j = 0; j < n; ++j) {
      row[j] = static_cast<float>((row[j] - mean[j]) * inv_std[j]);
      out[j] = gamma[j] * row[j] + beta[j];
    }
  }
  for (int j = 0; j < n; ++j) {
    run_mean[j] = (1 - kStatMomentum) * run_mean[j] + kStatMomentum * static_cast<float>(mean[j]);
    run_var[j] = (1 - kStatMomentum) * run_var[j] +
                 kStatMomentum * static_cast<float>(var[j] * m / std::max(1, m - 1));
  }
}

// Gradients of BatchNorm (training mode): fills dgamma, dbeta and, when dx is set, dx. Row by
// row, as bn_train_forward.
void bn_backward(const float* dy, const float* xhat, int m, int n, const std::vector<float>& gamma,
                 const std::vector<float>& inv_std, float* dgamma, float* dbeta, float* dx) {
  std::vector<double> sum_dy(n, 0.0), sum_dy_xhat(n, 0.0);
  for (int i = 0; i < m; ++i) {
    const size_t row = static_cast<size_t>(i) * n;
    for (int j = 0; j < n; ++j) {
      sum_dy[j] += dy[row + j];
      sum_dy_xhat[j] += dy[row + j] * xhat[row + j];
    }
  }
  for (int j = 0; j < n; ++j) {
    dgamma[j] = static_cast<float>(sum_dy_xhat[j]);
    dbeta[j] = static_cast<float>(sum_dy[j]);
  }
  if (dx == nullptr) return;
  for (int i = 0; i < m; ++i) {
    const size_t row = static_cast<size_t>(i) * n;
    for (int j = 0; j < n; ++j) {
      dx[row + j] =
          static_cast<float>(gamma[j] * inv_std[j] / m *
                             (m * dy[row + j] - sum_dy[j] - xhat[row + j] * sum_dy_xhat[j]));
    }
  }
}

}  // namespace

TrainReport Projector::train(const std::vector<float>& pooled,
                             const std::vector<std::vector<int>>& batches,
                             const std::vector<std::vector<float>>& labels,
                             const TrainOptions& options) {
  if (labels.size() != batches.size()) core::throw_internal("one label list per batch");
  for (size_t b = 0; b < batches.size(); ++b) {
    const size_t n = batches[b].size();
    if (labels[b].size() != (n < 2 ? 0 : n * (n - 1) / 2)) {
      core::throw_internal("a label per pair of each batch");
    }
  }
  const int in = input_dim();
  // Parameters in a fixed order, with their gradients and momentum buffers.
  std::vector<std::vector<float>*> params = {&bn0_.gamma, &bn0_.beta, &fc1_.w, &fc1_.b,
                                             &bn1_.gamma, &bn1_.beta, &fc2_.w, &fc2_.b};
  std::vector<std::vector<float>> grads(params.size()), velocity(params.size());
  for (size_t p = 0; p < params.size(); ++p) {
    grads[p].resize(params[p]->size());
    velocity[p].assign(params[p]->size(), 0.0f);
  }
  TrainReport report;
  std::mt19937_64 rng(options.seed);
  std::vector<size_t> order(batches.size());
  for (size_t b = 0; b < order.size(); ++b) order[b] = b;
  std::vector<float> xhat0, a, h, xhat1, g, z, dz, dg, dh, da, inv0, inv1;
  const int trainable = static_cast<int>(std::count_if(
      batches.begin(), batches.end(), [](const std::vector<int>& b) { return b.size() >= 2; }));
  const int epochs =
      trainable == 0 ? 0
                     : std::max(options.epochs, (options.min_steps + trainable - 1) / trainable);
  for (int epoch = 0; epoch < epochs; ++epoch) {
    std::shuffle(order.begin(), order.end(), rng);
    double loss_sum = 0;
    long pair_count = 0;
    for (size_t b : order) {
      const std::vector<int>& items = batches[b];
      const int m = static_cast<int>(items.size());
      if (m < 2) continue;
      xhat0.resize(static_cast<size_t>(m) * in);
      a.resize(xhat0.size());
      for (int i = 0; i < m; ++i) {
        std::copy_n(pooled.data() + static_cast<size_t>(items[i]) * in, in,
                    xhat0.data() + static_cast<size_t>(i) * in);
      }
      bn_train_forward(xhat0.data(), a.data(), m, in, bn0_.gamma, bn0_.beta, bn0_.mean, bn0_.var,
                       inv0);
      xhat1.resize(static_cast<size_t>(m) * kHidden);
      g.resize(xhat1.size());
      affine(a.data(), fc1_.w, fc1_.b, m, in, kHidden, xhat1.data());
      bn_train_forward(xhat1.data(), g.data(), m, kHidden, bn1_.gamma, bn1_.beta, bn1_.mean,
                       bn1_.var, inv1);
      z.resize(static_cast<size_t>(m) * kOut);
      affine(g.data(), fc2_.w, fc2_.b, m, kHidden, kOut, z.data());

      // Loss: SmoothL1(‖z_i − z_j‖ − y_ij), mean over the batch's pairs.
      dz.assign(z.size(), 0.0f);
      const int pairs = m * (m - 1) / 2;
      int p = 0;
      for (int i = 0; i < m; ++i) {
        for (int j = i + 1; j < m; ++j, ++p) {
          const float* zi = z.data() + static_cast<size_t>(i) * kOut;
          const float* zj = z.data() + static_cast<size_t>(j) * kOut;
          double dist2 = 0;
          for (int k = 0; k < kOut; ++k) dist2 += (zi[k] - zj[k]) * (zi[k] - zj[k]);
          const double dist = std::sqrt(dist2);
          const double e = dist - labels[b][p];
          loss_sum += std::fabs(e) < 1 ? 0.5 * e * e : std::fabs(e) - 0.5;
          if (dist <= 0) continue;
          const double de = (std::fabs(e) < 1 ? e : (e > 0 ? 1 : -1)) / pairs / dist;
          for (int k = 0; k < kOut; ++k) {
            const float gk = static_cast<float>(de * (zi[k] - zj[k]));
            dz[static_cast<size_t>(i) * kOut + k] += gk;
            dz[static_cast<size_t>(j) * kOut + k] -= gk;
          }
        }
      }
      pair_count += pairs;
      report.pairs += pairs;
      ++report.batches;

      for (auto& gr : grads) std::fill(gr.begin(), gr.end(), 0.0f);
      linear_backward(dz.data(), g.data(), fc2_.w.data(), m, kHidden, kOut, grads[6].data(),
                      grads[7].data(), dg);
      dh.resize(dg.size());
      bn_backward(dg.data(), xhat1.data(), m, kHidden, bn1_.gamma, inv1, grads[4].data(),
                  grads[5].data(), dh.data());
      linear_backward(dh.data(), a.data(), fc1_.w.data(), m, in, kHidden, grads[2].data(),
                      grads[3].data(), da);
      bn_backward(da.data(), xhat0.data(), m, in, bn0_.gamma, inv0, grads[0].data(),
                  grads[1].data(), nullptr);
      // SGD with momentum, as torch.optim.SGD: v = μ·v + g; θ -= lr·v.
      for (size_t q = 0; q < params.size(); ++q) {
        std::vector<float>& theta = *params[q];
        for (size_t k = 0; k < theta.size(); ++k) {
          velocity[q][k] = options.momentum * velocity[q][k] + grads[q][k];
          theta[k] -= options.learning_rate * velocity[q][k];
        }
      }
    }
    report.epoch_loss.push_back(pair_count > 0 ? loss_sum / pair_count : 0.0);
  }
  return report;
}

void Projector::save(const std::string& path) const {
  core::RecordStoreWriter writer(path, kMagic, kVersion);
  for (const auto* v : {&bn0_.gamma, &bn0_.beta, &bn0_.mean, &bn0_.var, &fc1_.w, &fc1_.b,
                        &bn1_.gamma, &bn1_.beta, &bn1_.mean, &bn1_.var, &fc2_.w, &fc2_.b}) {
    writer.add(v->size(), bytes_of(*v));
  }
  writer.finish(
      {{"model_dim", model_dim_},
       {"rows", kRows},
       {"hidden", kHidden},
       {"out", kOut},
       {"layout", "bn0(gamma,beta,mean,var) fc1(w,b) bn1(gamma,beta,mean,var) fc2(w,b)"}});
}

Projector Projector::load(const std::string& path) {
  core::RecordStore store = core::RecordStore::open(path, kMagic, kVersion);
  store.verify();
  const auto& meta = store.meta();
  Projector p;
  if (!meta.contains("model_dim") || !meta["model_dim"].is_number_integer() ||
      meta.value("rows", 0) != kRows || meta.value("hidden", 0) != kHidden ||
      meta.value("out", 0) != kOut) {
    core::throw_bad_input(path, ": projector shape does not match this build (rows ", kRows,
                          ", hidden ", kHidden, ", out ", kOut, ")");
  }
  p.model_dim_ = meta["model_dim"].get<int>();
  if (p.model_dim_ < 2 || p.model_dim_ % 2 != 0 || p.model_dim_ > 65536) {
    core::throw_bad_input(path, ": invalid model_dim ", p.model_dim_);
  }
  const int in = p.input_dim();
  std::vector<float>* targets[] = {&p.bn0_.gamma, &p.bn0_.beta, &p.bn0_.mean,  &p.bn0_.var,
                                   &p.fc1_.w,     &p.fc1_.b,    &p.bn1_.gamma, &p.bn1_.beta,
                                   &p.bn1_.mean,  &p.bn1_.var,  &p.fc2_.w,     &p.fc2_.b};
  const size_t sizes[] = {
      size_t(in), size_t(in), size_t(in), size_t(in), size_t(in) * kHidden,   kHidden,
      kHidden,    kHidden,    kHidden,    kHidden,    size_t(kHidden) * kOut, kOut};
  if (store.count() != std::size(targets)) {
    core::throw_bad_input(path, ": expected ", std::size(targets), " tensors, found ",
                          store.count());
  }
  for (size_t i = 0; i < std::size(targets); ++i) {
    const auto values = core::view_as<float>(store.record(i));
    if (values.size() != sizes[i]) {
      core::throw_bad_input(path, ": tensor ", i, " has ", values.size(), " values, expected ",
                            sizes[i]);
    }
    targets[i]->assign(values.begin(), values.end());
  }
  return p;
}

}  // namespace attncache::memo
