#include "core/nearest_index.h"

#include <faiss/IndexHNSW.h>
#include <faiss/IndexIVF.h>
#include <faiss/impl/AuxIndexStructures.h>
#include <faiss/impl/FaissException.h>
#include <faiss/impl/IDSelector.h>
#include <faiss/impl/io.h>
#include <faiss/index_factory.h>
#include <faiss/index_io.h>

#include <algorithm>

#include "core/atomic_file.h"
#include "core/error.h"

namespace core {

NearestIndex::NearestIndex(std::unique_ptr<faiss::Index> index) : index_(std::move(index)) {}
NearestIndex::NearestIndex(NearestIndex&&) noexcept = default;
NearestIndex& NearestIndex::operator=(NearestIndex&&) noexcept = default;
NearestIndex::~NearestIndex() = default;

NearestIndex NearestIndex::create(const std::string& spec, int dim) {
  try {
    return NearestIndex(
        std::unique_ptr<faiss::Index>(faiss::index_factory(dim, spec.c_str(), faiss::METRIC_L2)));
  } catch (const faiss::FaissException& e) {
    throw_bad_input("index kind '", spec, "' is not a valid Faiss factory string: ", e.what());
  }
}

NearestIndex NearestIndex::load(const std::string& path) {
  try {
    return NearestIndex(std::unique_ptr<faiss::Index>(faiss::read_index(path.c_str())));
  } catch (const faiss::FaissException& e) {
    throw_bad_input(path, ": not a readable Faiss index: ", e.what());
  }
}

int NearestIndex::dim() const { return static_cast<int>(index_->d); }
int64_t NearestIndex::size() const { return index_->ntotal; }

void NearestIndex::build(const float* vectors, int64_t n) {
  try {
    if (!index_->is_trained) {
      auto* ivf = dynamic_cast<faiss::IndexIVF*>(index_.get());
      if (ivf != nullptr && static_cast<int64_t>(ivf->nlist) > n) {
        throw_bad_input("the IVF index has ", ivf->nlist, " lists but only ", n,
                        " vectors to train on; use fewer lists or the exact index (Flat)");
      }
      index_->train(n, vectors);
    }
    index_->add(n, vectors);
  } catch (const faiss::FaissException& e) {
    throw_internal("Faiss could not build the index: ", e.what());
  }
}

std::vector<Neighbor> NearestIndex::search(const float* query, int k, int64_t first,
                                           int64_t last) const {
  std::vector<Neighbor> out(static_cast<size_t>(k));
  if (k <= 0 || first >= last) return out;
  std::vector<float> distances(static_cast<size_t>(k));
  std::vector<faiss::Index::idx_t> ids(static_cast<size_t>(k));
  faiss::IDSelectorRange range(first, last);
  const bool whole = first <= 0 && last >= index_->ntotal;
  // Defaults when not set: IVF probes about a tenth of its lists (at least 8), the released
  // AttnCache code left nprobe at 1; HNSW keeps 4·k candidates (at least 64).
  if (auto* ivf = dynamic_cast<const faiss::IndexIVF*>(index_.get())) {
    faiss::SearchParametersIVF params;
    params.sel = whole ? nullptr : &range;
    const int fallback = std::max<int>(8, static_cast<int>(ivf->nlist / 10));
    params.nprobe = std::min<size_t>(ivf->nlist, breadth_ > 0 ? breadth_ : fallback);
    index_->search(1, query, k, distances.data(), ids.data(), &params);
  } else if (dynamic_cast<const faiss::IndexHNSW*>(index_.get()) != nullptr) {
    faiss::SearchParametersHNSW params;
    params.sel = whole ? nullptr : &range;
    params.efSearch = breadth_ > 0 ? breadth_ : std::max(64, 4 * k);
    index_->search(1, query, k, distances.data(), ids.data(), &params);
  } else {
    faiss::SearchParameters params;
    params.sel = whole ? nullptr : &range;
    index_->search(1, query, k, distances.data(), ids.data(), &params);
  }
  for (int i = 0; i < k; ++i) out[i] = {ids[i], distances[i]};
  return out;
}

void NearestIndex::save(const std::string& path) const {
  AtomicFileWriter file(path);
  try {
    faiss::write_index(index_.get(), file.stream());
  } catch (const faiss::FaissException& e) {
    throw_internal("cannot write the index to ", path, ": ", e.what());
  }
  file.commit();
}

}  // namespace core
