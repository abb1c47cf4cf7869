// Where a model's forward time goes, accumulated over calls while profiling is on; the same
// phases for the encoder and the decoders so that benchmarks and `attncache eval` read one shape.
#pragma once

#include <vector>

#include "core/stopwatch.h"

namespace attncache {

struct ForwardProfile {
  double qkv_seconds = 0;        // Q, K, V projections (V only for sequences reusing every head)
  double gemm_seconds = 0;       // the other projections
  double attention_seconds = 0;  // QKᵀ, softmax, P·V; for reused heads loading P and P·V
  double other_seconds = 0;      // embeddings, bias, activations, normalization, rotary
  double gemm_flops = 0;
  double attention_flops = 0;                   // QKᵀ and P·V
  std::vector<double> layer_attention_seconds;  // per layer: Q/K/V projections + attention
};

// Adds the time since the last mark to one ForwardProfile counter; a no-op unless `on`.
class PhaseTimer {
 public:
  PhaseTimer(bool on, ForwardProfile& profile) : on_(on), profile_(profile) {}
  // Returns the seconds added.
  double mark(double ForwardProfile::*counter) {
    if (!on_) return 0;
    const double s = watch_.seconds();
    profile_.*counter += s;
    watch_.reset();
    return s;
  }

 private:
  bool on_;
  ForwardProfile& profile_;
  core::Stopwatch watch_;
};

}  // namespace attncache
