// Nearest-record search over fixed-size float vectors, on Faiss: one abstract interface for both
// systems, the index kind picked by a Faiss factory string. Vectors get ids 0, 1, 2, … in the
// order they are added; a search may be restricted to a contiguous id range, which is how a
// caller that stores its records grouped by a key (token count, say) searches one group only.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

namespace faiss {
struct Index;
}

namespace core {

struct Neighbor {
  int64_t id = -1;        // -1: fewer than k vectors in range
  float distance = 0.0f;  // squared L2
};

class NearestIndex {
 public:
  // `spec`: "Flat" (exact, the default), "IVF<nlist>,Flat" or "HNSW<M>" (approximate), or any
  // Faiss factory string over L2. Throws core::Error (bad input) for a spec Faiss rejects.
  static NearestIndex create(const std::string& spec, int dim);
  // Reads an index written by save(). Throws core::Error (bad input) when it is unreadable.
  static NearestIndex load(const std::string& path);

  NearestIndex(NearestIndex&&) noexcept;
  NearestIndex& operator=(NearestIndex&&) noexcept;
  ~NearestIndex();

  int dim() const;
  int64_t size() const;
  // Trains (IVF) on `n` vectors and adds them; call once with all vectors.
  void build(const float* vectors, int64_t n);
  // Approximate indexes search this many lists (IVF nprobe) or candidates (HNSW efSearch).
  void set_search_breadth(int breadth) { breadth_ = breadth; }
  int search_breadth() const { return breadth_; }

  // The k nearest vectors to `query` among ids [first, last), nearest first.
  std::vector<Neighbor> search(const float* query, int k, int64_t first, int64_t last) const;
  // Writes the index atomically (temporary file + rename).
  void save(const std::string& path) const;

 private:
  explicit NearestIndex(std::unique_ptr<faiss::Index> index);
  std::unique_ptr<faiss::Index> index_;
  int breadth_ = 0;  // 0: the default chosen from the index size
};

}  // namespace core
