// The real all-MiniLM-L6-v2, loaded once per test binary, and the cosine the tests compare with.
#pragma once

#include <cmath>

#include "attncache/embedder.h"
#include "support/test_paths.h"

namespace testing_support {

inline attncache::Embedder& minilm() {
  static attncache::Embedder e = attncache::Embedder::load(testing_paths::model_dir());
  return e;
}

inline double cosine(const float* a, const float* b, int n) {
  double dot = 0, na = 0, nb = 0;
  for (int i = 0; i < n; ++i) {
    dot += double(a[i]) * b[i], na += double(a[i]) * a[i], nb += double(b[i]) * b[i];
  }
  return dot / std::sqrt(na * nb);
}

}  // namespace testing_support
