// The feature projector of AttnCache: a small network mapping an input's layer-0 attention input
// (N×d, the embedding LayerNorm output) to a 128-dimensional vector whose L2 distances predict
// how different two inputs' attention maps are.
//
// Faithful to the paper's Siamese MLP: max-pooling to a fixed size → BatchNorm → Linear(→128) →
// BatchNorm1d → Linear(128→128), no nonlinearity, trained on pairs with SmoothL1 between the L2
// distance of the two projections and a label (see memo/map_database.h for the label), SGD with
// momentum, all pairs inside batches of 32.
//
// Pooling (ours; the paper pads every input to one length): the N×d input is max-pooled to a
// fixed kRows × d/2 grid. Columns: max over adjacent pairs (the column half of the paper's 2×2
// max-pool). Rows: adaptive max-pooling — row bin r takes the maximum over tokens
// [⌊r·N/kRows⌋, ⌈(r+1)·N/kRows⌉), so every length maps to the same shape and short inputs
// repeat tokens across bins.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace attncache::memo {

struct TrainOptions {
  int epochs = 3;
  // Ours: at least this many SGD steps, adding epochs when the database is small (the paper's 3
  // epochs over 90 inputs are 9 steps, which leaves the projector untrained). Labels are
  // computed once, so extra epochs cost little.
  int min_steps = 300;
  int batch = 32;
  float learning_rate = 0.1f;
  float momentum = 0.9f;
  uint64_t seed = 1;
};

struct TrainReport {
  std::vector<double> epoch_loss;  // mean SmoothL1 over the pairs of each epoch (one per epoch run)
  int batches = 0;
  int pairs = 0;
};

class Projector {
 public:
  static constexpr int kRows = 16;
  static constexpr int kHidden = 128;
  static constexpr int kOut = 128;

  // A freshly initialized projector for a model of hidden size `model_dim` (PyTorch's default
  // Linear initialization, drawn from `seed`).
  Projector(int model_dim, uint64_t seed);
  // Reads a projector written by save(). Throws core::Error (bad input) naming the problem.
  static Projector load(const std::string& path);
  void save(const std::string& path) const;

  int model_dim() const { return model_dim_; }
  int input_dim() const { return kRows * (model_dim_ / 2); }

  // Pools N×d features into input_dim() values.
  void pool(const float* features, int n_tokens, float* out) const;
  // Projects pooled inputs (inference: BatchNorm uses its running statistics).
  void project(const float* pooled, float* out) const;

  // Trains on `pooled` ([count × input_dim()]). `batches` lists the items of each batch; every
  // pair of positions p < q inside batch b is a training pair, its label in `labels[b]` in
  // row-major order (p = 0: q = 1, 2, …; then p = 1, …). Deterministic.
  TrainReport train(const std::vector<float>& pooled, const std::vector<std::vector<int>>& batches,
                    const std::vector<std::vector<float>>& labels, const TrainOptions& options);

 private:
  struct BatchNorm {
    std::vector<float> gamma, beta, mean, var;
  };
  struct Linear {
    std::vector<float> w, b;  // [out × in], [out]
  };
  Projector() = default;

  int model_dim_ = 0;
  BatchNorm bn0_, bn1_;
  Linear fc1_, fc2_;
};

}  // namespace attncache::memo
