// The attention-map memoization database: for each stored input, its token ids, its exact
// sentence embedding, the projector's input (the layer-0 attention input, N×d fp32) and every
// layer's attention probabilities (L×H×N×N at the input's own token count, or L×H packed lower
// triangles of N(N+1)/2 for a causal model; fp16, bf16, P8 (8-bit square-root companded), FP8,
// or for a causal model P4 (4-bit codes and a scale per row): attncache/kernels/stored_maps.h),
// plus
// the trained projector and a Faiss index with one vector per stored input.
//
// On disk, a directory:
//   db.json                manifest: format version, model fingerprint, settings, file names
//   maps-<build>.acm       core::RecordStore, one record per input, key = token count; inputs
//                          are sorted by token count so each length is one contiguous id range
//   projector-<build>.acp  the projector's weights (core::RecordStore)
//   index-<build>.faiss    the Faiss index (its size and CRC-32 are in the manifest)
// A build writes its three files under fresh names, then replaces db.json atomically, then
// deletes files no manifest names: a build killed at any point leaves the previous database
// (or none) intact.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <nlohmann/json.hpp>
#include <span>
#include <string>
#include <utility>
#include <vector>

#include "attncache/memo/projector.h"
#include "attncache/prefill_model.h"
#include "core/dtype.h"
#include "core/nearest_index.h"
#include "core/progress.h"
#include "core/record_store.h"

namespace attncache::memo {

struct MapEntry {
  int n_tokens = 0;
  std::span<const int32_t> ids;
  std::span<const float> embedding;  // d, the exact sentence embedding
  std::span<const float> features;   // N×d, the layer-0 attention input
  const std::byte* maps = nullptr;   // L layers of maps in the database's map dtype
};

// Label of a training pair for the projector: the mean over layers, heads and (sampled) query
// rows of the total variation distance ½‖P_a[i,:] − P_b[i,:]‖₁ between the two inputs' attention
// rows, plus length_weight·|N_a − N_b|. For inputs of different lengths the rows and columns are
// cut to the shorter length m and each cut row is renormalized to sum to one, so TV compares
// where each token's attention goes among the first m tokens. At most `max_rows` query rows per
// head are compared (evenly strided): the label is a mean over rows, and every row is costly.
struct PairLabel {
  float length_weight = 0.02f;
  int max_rows = 64;
};

// A map dtype by name: "F16", "BF16", "P8", "FP8" or "P4"; bad input naming `where` otherwise.
core::DType parse_map_dtype(const std::string& name, const std::string& where);

struct BuildOptions {
  int max_tokens = 0;      // truncation length; 0: the model's max_seq_length
  size_t max_entries = 0;  // 0: no limit
  core::DType map_dtype = core::DType::kF16;
  std::string index_spec = "Flat";
  size_t batch_map_bytes = size_t(512) << 20;  // fp32 maps held in memory per forward batch
  int max_batch = 32;
  PairLabel label;
  TrainOptions train;
  bool progress = false;
  // Where the maps are computed (DeviceEmbedder::embed_recording puts them on the GPU); unset:
  // model.embed(batch, &hook).
  RecordingForward forward;
};

struct BuildReport {
  size_t lines = 0, empty_lines = 0, duplicates = 0, truncated = 0, entries = 0;
  double collect_seconds = 0, train_seconds = 0, index_seconds = 0;
  // Parts of collect_seconds: the forward passes that record the maps (with a GPU's, copying
  // them back), and converting them to the stored dtype; the rest is writing.
  double forward_seconds = 0, convert_seconds = 0;
  double label_seconds = 0;  // the part of train_seconds spent labelling pairs
  TrainReport training;
  uint64_t bytes = 0;
};

class MapDatabase {
 public:
  static constexpr int kFormatVersion = 1;

  // Builds a database in `dir` (created if missing) from `texts`. Throws core::Error.
  static BuildReport build(PrefillModel& model, const std::vector<std::string>& texts,
                           const std::string& dir, const BuildOptions& options);

  // Opens `dir`; checks format version, that it was built for `fingerprint` (a model's
  // PrefillModel::fingerprint(); null: any) and the
  // structure of every file. verify_records also checks every record's CRC-32 (reads it all).
  static MapDatabase open(const std::string& dir, const nlohmann::json& fingerprint,
                          bool verify_records);

  size_t size() const { return maps_.count(); }
  MapEntry entry(size_t i) const;
  int n_tokens(size_t i) const { return static_cast<int>(maps_.key(i)); }
  // The ids [first, last) of the entries with `n` tokens (empty when there are none).
  std::pair<int64_t, int64_t> length_range(int n) const;
  int max_stored_tokens() const;
  int max_tokens() const { return manifest_.value("max_tokens", 0); }
  int layers() const { return layers_; }
  int heads() const { return heads_; }
  bool causal() const { return causal_; }
  int dim() const { return dim_; }
  core::DType map_dtype() const { return map_dtype_; }
  size_t layer_map_bytes(int n) const;  // one layer's maps of an n-token entry
  const Projector& projector() const { return projector_; }
  const core::NearestIndex& index() const { return index_; }
  core::NearestIndex& index() { return index_; }
  const nlohmann::json& manifest() const { return manifest_; }
  uint64_t bytes_on_disk() const { return bytes_on_disk_; }
  // The mapped file that holds every entry (entry(i).maps points into it).
  std::span<const std::byte> entries_file() const { return maps_.file(); }

 private:
  MapDatabase(Projector projector) : projector_(std::move(projector)) {}

  nlohmann::json manifest_;
  core::RecordStore maps_;
  Projector projector_;
  core::NearestIndex index_ = core::NearestIndex::create("Flat", 1);
  std::map<int, std::pair<int64_t, int64_t>> ranges_;
  int layers_ = 0, heads_ = 0, dim_ = 0;
  bool causal_ = false;
  core::DType map_dtype_ = core::DType::kF16;
  uint64_t bytes_on_disk_ = 0;
};

// The pair label above, for two entries of a model with `layers` × `heads` maps of `dtype`.
float pair_label(const MapEntry& a, const MapEntry& b, int layers, int heads, bool causal,
                 core::DType dtype, const PairLabel& options);

// pair_label of every pair (i < j, in row-major order) of each batch of entry ids, equal to it
// value for value. Each entry's rows are decoded once per batch and the pairs are labelled on the
// OpenMP threads. `progress` (may be null) advances by each batch's pairs.
std::vector<std::vector<float>> label_batches(const std::function<MapEntry(int)>& entry,
                                              const std::vector<std::vector<int>>& batches,
                                              int layers, int heads, bool causal, core::DType dtype,
                                              const PairLabel& options, core::Progress* progress);

}  // namespace attncache::memo
