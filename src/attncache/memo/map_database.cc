#include "attncache/memo/map_database.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <filesystem>
#include <memory>
#include <random>
#include <unordered_set>

#include "attncache/kernels/stored_maps.h"
#include "attncache/model/attention_hook.h"
#include "core/atomic_file.h"
#include "core/error.h"
#include "core/json_file.h"
#include "core/mapped_file.h"
#include "core/progress.h"
#include "core/stopwatch.h"

namespace attncache::memo {
namespace fs = std::filesystem;
namespace {

constexpr char kMapsMagic[] = "ACMAPS";
constexpr uint32_t kMapsVersion = 1;
constexpr char kFormatName[] = "attncache-memo-db";

size_t align64(size_t x) { return (x + 63) / 64 * 64; }

// Byte offsets of the pieces of one entry's record (each piece 64-byte aligned).
struct EntryLayout {
  size_t ids = 0, embedding, features, maps, total;
  EntryLayout(int n, int d, int layers, int heads, bool causal, core::DType dtype) {
    embedding = align64(4 * static_cast<size_t>(n));
    features = align64(embedding + 4 * static_cast<size_t>(d));
    maps = align64(features + 4 * static_cast<size_t>(n) * d);
    total = maps + static_cast<size_t>(layers) * stored_layer_bytes(n, heads, causal, dtype);
  }
};

MapEntry view_entry(std::span<const std::byte> record, int n, int d, int layers, int heads,
                    bool causal, core::DType dtype) {
  const EntryLayout layout(n, d, layers, heads, causal, dtype);
  MapEntry e;
  e.n_tokens = n;
  e.ids = {reinterpret_cast<const int32_t*>(record.data()), static_cast<size_t>(n)};
  e.embedding = {reinterpret_cast<const float*>(record.data() + layout.embedding),
                 static_cast<size_t>(d)};
  e.features = {reinterpret_cast<const float*>(record.data() + layout.features),
                static_cast<size_t>(n) * d};
  e.maps = record.data() + layout.maps;
  return e;
}

// Collects every layer's fp32 maps of every sequence of a batch and converts them to the stored
// dtype, in two buffers kept from batch to batch: the forward writes every value, so neither is
// ever cleared (allocating and zero-filling fresh buffers per batch was about 6% of a local CPU
// build's perf samples).
class RecordingHook : public AttentionHook {
 public:
  RecordingHook(const PrefillModel& model, core::DType dtype)
      : model_(model), layers_(model.num_layers()), dtype_(dtype) {}
  void start(const std::vector<std::vector<int32_t>>& batch) {
    offsets_.assign(1, 0);
    byte_offsets_.assign(1, 0);
    lengths_.clear();
    for (const auto& ids : batch) {
      const int n = static_cast<int>(ids.size());
      const size_t values = model_.layer_map_values(n);
      const size_t bytes = stored_layer_bytes(n, model_.num_heads(), model_.causal(), dtype_);
      for (int l = 0; l < layers_; ++l) {
        offsets_.push_back(offsets_.back() + values);
        byte_offsets_.push_back(byte_offsets_.back() + bytes);
        lengths_.push_back(n);
      }
    }
    if (offsets_.back() > capacity_) {
      capacity_ = offsets_.back();
      recorded_ = std::make_unique_for_overwrite<float[]>(capacity_);
    }
    if (byte_offsets_.back() > byte_capacity_) {
      byte_capacity_ = byte_offsets_.back();
      converted_ = std::make_unique_for_overwrite<std::byte[]>(byte_capacity_);
    }
  }
  float* record(int layer, int seq, int) override {
    return recorded_.get() + offsets_[static_cast<size_t>(seq) * layers_ + layer];
  }
  // Converts every recorded map on the OpenMP threads.
  void convert() {
    const size_t maps = offsets_.size() - 1;
#pragma omp parallel for schedule(dynamic)
    for (size_t i = 0; i < maps; ++i) {
      store_layer(dtype_, recorded_.get() + offsets_[i], lengths_[i], model_.num_heads(),
                  model_.causal(), converted_.get() + byte_offsets_[i]);
    }
  }
  // Sequence `seq`'s converted maps, layer after layer.
  std::span<const std::byte> converted(int seq) const {
    const size_t first = byte_offsets_[static_cast<size_t>(seq) * layers_];
    const size_t last = byte_offsets_[static_cast<size_t>(seq + 1) * layers_];
    return {converted_.get() + first, last - first};
  }

 private:
  const PrefillModel& model_;
  int layers_;
  core::DType dtype_;
  // Of each (sequence, layer)'s maps: where they start, in fp32 values recorded and in bytes
  // stored, and the sequence's tokens.
  std::vector<size_t> offsets_, byte_offsets_;
  std::vector<int> lengths_;
  std::unique_ptr<float[]> recorded_;
  std::unique_ptr<std::byte[]> converted_;
  size_t capacity_ = 0, byte_capacity_ = 0;
};

std::string new_build_id() {
  std::random_device device;
  const uint64_t bits =
      (static_cast<uint64_t>(device()) << 32) ^ device() ^
      static_cast<uint64_t>(std::chrono::steady_clock::now().time_since_epoch().count());
  char buf[17];
  std::snprintf(buf, sizeof buf, "%016llx", static_cast<unsigned long long>(bits));
  return buf;
}

uint32_t file_crc32(const std::string& path) {
  core::MappedFile f = core::MappedFile::open(path);
  return core::crc32(f.data(), f.size());
}

// Removes database files that the manifest does not name (left by a replaced or killed build).
void remove_stale_files(const fs::path& dir, const nlohmann::json& files) {
  std::unordered_set<std::string> keep;
  for (const auto& [key, name] : files.items()) keep.insert(name.get<std::string>());
  for (const auto& item : fs::directory_iterator(dir)) {
    const std::string name = item.path().filename().string();
    const bool ours = name.rfind("maps-", 0) == 0 || name.rfind("projector-", 0) == 0 ||
                      name.rfind("index-", 0) == 0 || name.rfind("db.json.tmp.", 0) == 0;
    if (ours && keep.count(name) == 0) {
      std::error_code ec;
      fs::remove(item.path(), ec);
    }
  }
}

}  // namespace

core::DType parse_map_dtype(const std::string& name, const std::string& where) {
  if (name == "F16") return core::DType::kF16;
  if (name == "BF16") return core::DType::kBF16;
  if (name == "P8") return core::DType::kP8;
  if (name == "FP8") return core::DType::kFP8;
  if (name == "P4") return core::DType::kP4;
  core::throw_bad_input(where, ": unknown map dtype '", name, "'");
}

namespace {

// The rows a pair label compares at the shorter length m: every stride-th query row below m, each
// cut to the columns both inputs share (causal: its own i + 1, which both have in full).
struct LabelRows {
  int m, stride, count;
  bool causal;
  size_t per_map = 0;  // values of one (layer, head) in an entry's view
  LabelRows(int m, bool causal, int max_rows)
      : m(m), stride(std::max(1, (m + max_rows - 1) / max_rows)), causal(causal) {
    count = (m + stride - 1) / stride;
    for (int i = 0; i < m; i += stride) per_map += cols(i);
  }
  int cols(int i) const { return causal ? i + 1 : m; }
};

// How an entry's maps are stored.
struct MapsLayout {
  int heads;
  bool causal;
  core::DType dtype;
};

// Row i of one map (layer · heads + head) of `e`, its first `cols` values decoded to fp32 and
// renormalized to sum to one.
void normalized_row(const MapEntry& e, const MapsLayout& layout, int map, int i, int cols,
                    float* out) {
  const int n = e.n_tokens, layer = map / layout.heads;
  stored_map_row(e.maps + layer * stored_layer_bytes(n, layout.heads, layout.causal, layout.dtype),
                 layout.dtype, n, layout.causal, map % layout.heads, i, cols, out);
  float sum = 0;
  for (int j = 0; j < cols; ++j) sum += out[j];
  const float inv = sum > 0 ? 1 / sum : 0;
  for (int j = 0; j < cols; ++j) out[j] *= inv;
}

// ½‖a − b‖₁ of two rows.
float row_tv(const float* a, const float* b, int cols) {
  // Eight partial sums, so the compiler can keep them in one vector register.
  float part[8] = {};
  int j = 0;
  for (; j + 8 <= cols; j += 8) {
    for (int k = 0; k < 8; ++k) part[k] += std::fabs(a[j + k] - b[j + k]);
  }
  for (; j < cols; ++j) part[j % 8] += std::fabs(a[j] - b[j]);
  float tv = 0;
  for (float p : part) tv += p;
  return 0.5f * tv;
}

// An entry's rows at `rows.m`, map after map: every row of its view (all its rows, decoded
// once) when it has one, else each row decoded into `buffer` when asked for.
class LabelSide {
 public:
  LabelSide(const MapEntry& e, const float* view, const MapsLayout& layout,
            std::vector<float>& buffer)
      : entry_(e), view_(view), layout_(layout), buffer_(buffer) {}
  // The next row in view order: row i of `map`.
  const float* next(int map, int i, int cols) {
    if (view_) {
      const float* row = view_;
      view_ += cols;
      return row;
    }
    buffer_.resize(std::max<size_t>(buffer_.size(), cols));
    normalized_row(entry_, layout_, map, i, cols, buffer_.data());
    return buffer_.data();
  }

 private:
  const MapEntry& entry_;
  const float* view_;
  MapsLayout layout_;
  std::vector<float>& buffer_;
};

// An entry's view at its own length (m = its token count).
void label_view(const MapEntry& e, const LabelRows& rows, int maps, const MapsLayout& layout,
                float* out) {
  for (int map = 0; map < maps; ++map) {
    for (int i = 0; i < rows.m; i += rows.stride) {
      normalized_row(e, layout, map, i, rows.cols(i), out);
      out += rows.cols(i);
    }
  }
}

float label_of(LabelSide a, LabelSide b, const LabelRows& rows, int maps, int n_a, int n_b,
               const PairLabel& options) {
  double tv_sum = 0;
  for (int map = 0; map < maps; ++map) {
    for (int i = 0; i < rows.m; i += rows.stride) {
      const int cols = rows.cols(i);
      const float* ra = a.next(map, i, cols);
      tv_sum += row_tv(ra, b.next(map, i, cols), cols);
    }
  }
  const long compared = static_cast<long>(maps) * rows.count;
  return static_cast<float>(tv_sum / std::max(1L, compared)) +
         options.length_weight * static_cast<float>(std::abs(n_a - n_b));
}

// A batch whose entries' views would take more memory than this is labelled row by row.
constexpr size_t kLabelViewBytes = size_t(1) << 30;

}  // namespace

float pair_label(const MapEntry& a, const MapEntry& b, int layers, int heads, bool causal,
                 core::DType dtype, const PairLabel& options) {
  const LabelRows rows(std::min(a.n_tokens, b.n_tokens), causal, options.max_rows);
  std::vector<float> buffer_a, buffer_b;
  const MapsLayout layout{heads, causal, dtype};
  return label_of(LabelSide(a, nullptr, layout, buffer_a), LabelSide(b, nullptr, layout, buffer_b),
                  rows, layers * heads, a.n_tokens, b.n_tokens, options);
}

std::vector<std::vector<float>> label_batches(const std::function<MapEntry(int)>& entry,
                                              const std::vector<std::vector<int>>& batches,
                                              int layers, int heads, bool causal, core::DType dtype,
                                              const PairLabel& options, core::Progress* progress) {
  const int maps = layers * heads;
  const MapsLayout layout{heads, causal, dtype};
  std::vector<std::vector<float>> labels(batches.size());
  std::vector<float> views;
  for (size_t b = 0; b < batches.size(); ++b) {
    const int count = static_cast<int>(batches[b].size());
    std::vector<std::pair<int, int>> pairs;
    for (int i = 0; i < count; ++i) {
      for (int j = i + 1; j < count; ++j) pairs.emplace_back(i, j);
    }
    labels[b].resize(pairs.size());
    std::vector<MapEntry> entries(count);
    std::vector<LabelRows> own;  // each entry's rows at its own length
    std::vector<size_t> view_offset(count + 1, 0);
    for (int i = 0; i < count; ++i) {
      entries[i] = entry(batches[b][i]);
      own.emplace_back(entries[i].n_tokens, causal, options.max_rows);
      view_offset[i + 1] = view_offset[i] + own[i].per_map * maps;
    }
    // The shorter entry of a pair compares all its view's rows; the longer one's rows at the
    // shorter length are its own only when the lengths are equal (mostly, in length-sorted
    // batches), and are decoded pair by pair otherwise.
    const bool use_views = view_offset[count] * sizeof(float) <= kLabelViewBytes;
    if (use_views) {
      views.resize(view_offset[count]);
#pragma omp parallel for schedule(dynamic)
      for (int i = 0; i < count; ++i) {
        label_view(entries[i], own[i], maps, layout, views.data() + view_offset[i]);
      }
    }
#pragma omp parallel for schedule(dynamic)
    for (size_t p = 0; p < pairs.size(); ++p) {
      const auto [i, j] = pairs[p];
      const MapEntry &x = entries[i], &y = entries[j];
      const int m = std::min(x.n_tokens, y.n_tokens);
      auto view = [&](int k) {
        return use_views && entries[k].n_tokens == m ? views.data() + view_offset[k] : nullptr;
      };
      thread_local std::vector<float> buffer_x, buffer_y;
      const LabelRows& rows = own[x.n_tokens == m ? i : j];
      labels[b][p] =
          label_of(LabelSide(x, view(i), layout, buffer_x), LabelSide(y, view(j), layout, buffer_y),
                   rows, maps, x.n_tokens, y.n_tokens, options);
    }
    if (progress) progress->advance(pairs.size());
  }
  return labels;
}

BuildReport MapDatabase::build(PrefillModel& model, const std::vector<std::string>& texts,
                               const std::string& dir, const BuildOptions& options) {
  const int d = model.hidden_size(), layers = model.num_layers(), heads = model.num_heads();
  const bool causal = model.causal();
  if (model.dim() != d) {
    core::throw_internal("the database stores embeddings as wide as the hidden states");
  }
  if (options.map_dtype != core::DType::kF16 && options.map_dtype != core::DType::kBF16 &&
      options.map_dtype != core::DType::kP8 && options.map_dtype != core::DType::kFP8 &&
      options.map_dtype != core::DType::kP4) {
    core::throw_bad_input("maps are stored as F16, BF16, P8, FP8 or (decoders) P4");
  }
  if (options.map_dtype == core::DType::kP4 && !causal) {
    core::throw_bad_input(
        "P4 maps are for causal decoders only; this model's attention is "
        "bidirectional (store F16, BF16, P8 or FP8)");
  }
  const int max_tokens = options.max_tokens > 0 ? options.max_tokens : model.max_tokens();
  BuildReport report;
  report.lines = texts.size();

  // Tokenize, drop empty lines and exact duplicates (same token ids), sort by length.
  struct Item {
    std::vector<int32_t> ids;
    size_t line;
  };
  std::vector<Item> items;
  std::unordered_set<std::string> seen;
  for (size_t i = 0; i < texts.size(); ++i) {
    if (options.max_entries > 0 && items.size() >= options.max_entries) break;
    if (texts[i].find_first_not_of(" \t\r") == std::string::npos) {
      ++report.empty_lines;
      continue;
    }
    Encoding enc;
    try {
      enc = model.tokenize(texts[i], max_tokens);
    } catch (const core::Error& e) {
      core::throw_bad_input("corpus line ", i + 1, ": ", e.what());
    }
    if (enc.truncated) ++report.truncated;
    std::string key(reinterpret_cast<const char*>(enc.ids.data()), enc.ids.size() * 4);
    if (!seen.insert(key).second) {
      ++report.duplicates;
      continue;
    }
    items.push_back({std::move(enc.ids), i});
  }
  if (items.empty()) core::throw_bad_input("the corpus has no non-empty lines to store");
  std::stable_sort(items.begin(), items.end(),
                   [](const Item& a, const Item& b) { return a.ids.size() < b.ids.size(); });
  report.entries = items.size();

  std::error_code ec;
  fs::create_directories(dir, ec);
  if (ec || !fs::is_directory(dir)) {
    core::throw_bad_input("cannot create the database directory ", dir,
                          ec ? ": " + ec.message() : ": a file of that name exists");
  }
  const std::string id = new_build_id();
  const nlohmann::json files = {{"maps", "maps-" + id + ".acm"},
                                {"projector", "projector-" + id + ".acp"},
                                {"index", "index-" + id + ".faiss"}};
  const std::string maps_path = (fs::path(dir) / files["maps"].get<std::string>()).string();

  // 1. Collect maps, features and embeddings.
  core::Stopwatch watch;
  {
    core::RecordStoreWriter writer(maps_path, kMapsMagic, kMapsVersion);
    core::Progress progress("collecting attention maps", items.size(), options.progress);
    RecordingHook hook(model, options.map_dtype);
    std::vector<float> features;
    nlohmann::json lines = nlohmann::json::array();
    for (size_t b0 = 0; b0 < items.size();) {
      std::vector<std::vector<int32_t>> batch;
      size_t bytes = 0;
      size_t b1 = b0;
      while (b1 < items.size() && static_cast<int>(batch.size()) < options.max_batch) {
        const size_t need =
            layers * model.layer_map_values(static_cast<int>(items[b1].ids.size())) * 4;
        if (!batch.empty() && bytes + need > options.batch_map_bytes) break;
        bytes += need;
        batch.push_back(items[b1++].ids);
      }
      hook.start(batch);
      core::Stopwatch forward_watch;
      const std::vector<float> embeddings =
          options.forward ? options.forward(batch, hook) : model.embed(batch, &hook);
      report.forward_seconds += forward_watch.seconds();
      core::Stopwatch convert_watch;
      hook.convert();
      report.convert_seconds += convert_watch.seconds();
      for (size_t s = 0; s < batch.size(); ++s) {
        const int n = static_cast<int>(batch[s].size());
        features.resize(static_cast<size_t>(n) * d);
        model.layer0_input(batch[s], features.data());
        const std::span<const std::byte> pieces[] = {
            std::as_bytes(std::span<const int32_t>(batch[s])),
            std::as_bytes(std::span<const float>(embeddings.data() + s * d, d)),
            std::as_bytes(std::span<const float>(features)), hook.converted(static_cast<int>(s))};
        writer.add(static_cast<uint64_t>(n), pieces);
        lines.push_back(items[b0 + s].line + 1);
      }
      progress.advance(batch.size());
      b0 = b1;
    }
    progress.finish();
    writer.finish({{"layers", layers},
                   {"heads", heads},
                   {"causal", causal},
                   {"dim", d},
                   {"map_dtype", std::string(core::dtype_name(options.map_dtype))},
                   {"source_lines", lines}});
  }
  report.collect_seconds = watch.seconds();

  // 2. Train the projector on pairs of stored entries.
  watch.reset();
  core::RecordStore store = core::RecordStore::open(maps_path, kMapsMagic, kMapsVersion);
  auto entry = [&](int i) {
    return view_entry(store.record(i), static_cast<int>(store.key(i)), d, layers, heads, causal,
                      options.map_dtype);
  };
  Projector projector(d, options.train.seed);
  const int in = projector.input_dim();
  std::vector<float> pooled(items.size() * in);
  for (size_t i = 0; i < items.size(); ++i) {
    const MapEntry e = entry(static_cast<int>(i));
    projector.pool(e.features.data(), e.n_tokens, pooled.data() + i * in);
  }
  // Batches of consecutive entries in length order, shuffled within each length: mostly
  // same-length pairs (the only ones the length rule ever compares), some neighbouring lengths.
  std::vector<int> order(items.size());
  for (size_t i = 0; i < order.size(); ++i) order[i] = static_cast<int>(i);
  std::mt19937_64 rng(options.train.seed);
  for (size_t i0 = 0; i0 < order.size();) {
    size_t i1 = i0;
    while (i1 < order.size() && items[i1].ids.size() == items[i0].ids.size()) ++i1;
    std::shuffle(order.begin() + i0, order.begin() + i1, rng);
    i0 = i1;
  }
  std::vector<std::vector<int>> batches;
  for (size_t i = 0; i < order.size(); i += options.train.batch) {
    batches.emplace_back(order.begin() + i,
                         order.begin() + std::min(order.size(), i + options.train.batch));
  }
  {
    size_t total_pairs = 0;
    for (const auto& b : batches) total_pairs += b.size() * (b.size() - 1) / 2;
    // Labels are nearly all of the training time.
    core::Progress progress("labelling projector pairs", total_pairs, options.progress);
    const auto labels = label_batches(entry, batches, layers, heads, causal, options.map_dtype,
                                      options.label, &progress);
    progress.finish();
    report.label_seconds = watch.seconds();
    report.training = projector.train(pooled, batches, labels, options.train);
  }
  projector.save((fs::path(dir) / files["projector"].get<std::string>()).string());
  report.train_seconds = watch.seconds();

  // 3. Index one projection per entry.
  watch.reset();
  std::vector<float> projections(items.size() * Projector::kOut);
  for (size_t i = 0; i < items.size(); ++i) {
    projector.project(pooled.data() + i * in, projections.data() + i * Projector::kOut);
  }
  core::NearestIndex index = core::NearestIndex::create(options.index_spec, Projector::kOut);
  index.build(projections.data(), static_cast<int64_t>(items.size()));
  const std::string index_path = (fs::path(dir) / files["index"].get<std::string>()).string();
  index.save(index_path);
  report.index_seconds = watch.seconds();

  // 4. Publish: the manifest names the new files; then the old ones go.
  nlohmann::json manifest = {
      {"format", kFormatName},
      {"version", kFormatVersion},
      {"fingerprint", model.fingerprint()},
      {"max_tokens", max_tokens},
      {"entries", items.size()},
      {"layers", layers},
      {"heads", heads},
      {"causal", causal},
      {"dim", d},
      {"map_dtype", std::string(core::dtype_name(options.map_dtype))},
      {"files", files},
      {"index",
       {{"spec", options.index_spec},
        {"bytes", fs::file_size(index_path)},
        {"crc32", file_crc32(index_path)}}},
      {"label",
       {{"length_weight", options.label.length_weight}, {"max_rows", options.label.max_rows}}},
      {"training",
       {{"epochs", report.training.epoch_loss.size()},
        {"min_steps", options.train.min_steps},
        {"batch", options.train.batch},
        {"learning_rate", options.train.learning_rate},
        {"momentum", options.train.momentum},
        {"seed", options.train.seed},
        {"epoch_loss", report.training.epoch_loss}}},
      {"corpus",
       {{"lines", report.lines},
        {"empty_lines", report.empty_lines},
        {"duplicates", report.duplicates},
        {"truncated", report.truncated}}}};
  core::AtomicFileWriter out((fs::path(dir) / "db.json").string());
  out.write(manifest.dump(2) + "\n");
  out.commit();
  remove_stale_files(dir, files);
  for (const auto& [key, name] : files.items()) {
    report.bytes += fs::file_size(fs::path(dir) / name.get<std::string>());
  }
  return report;
}

MapDatabase MapDatabase::open(const std::string& dir, const nlohmann::json& fingerprint,
                              bool verify_records) {
  const fs::path manifest_path = fs::path(dir) / "db.json";
  if (!fs::is_directory(dir)) core::throw_bad_input("database ", dir, " does not exist");
  if (!fs::exists(manifest_path)) {
    core::throw_bad_input(dir,
                          " is not an AttnCache database (no db.json); build one with "
                          "`attncache build`");
  }
  const nlohmann::json m = core::read_json_file(manifest_path.string());
  const std::string where = manifest_path.string();
  if (!m.is_object() || m.value("format", "") != kFormatName) {
    core::throw_bad_input(where, ": not an AttnCache database manifest");
  }
  if (!m.contains("version") || !m["version"].is_number_integer() ||
      m["version"].get<int>() != kFormatVersion) {
    core::throw_bad_input(where, ": database format version ",
                          m.value("version", nlohmann::json()).dump(),
                          ", but this build reads version ", kFormatVersion,
                          "; rebuild the database with this build");
  }
  try {
    if (!fingerprint.is_null() && m.at("fingerprint") != fingerprint) {
      std::string differs;
      for (const auto& [key, value] : fingerprint.items()) {
        if (!m["fingerprint"].contains(key) || m["fingerprint"][key] != value) {
          differs += (differs.empty() ? "" : ", ") + key + " (database " +
                     m["fingerprint"].value(key, nlohmann::json()).dump() + ", model " +
                     value.dump() + ")";
        }
      }
      core::throw_bad_input(dir, " was built for a different model: ", differs);
    }
    const auto& files = m.at("files");
    auto file = [&](const char* key) {
      return (fs::path(dir) / files.at(key).get<std::string>()).string();
    };
    MapDatabase db(Projector::load(file("projector")));
    db.manifest_ = m;
    db.layers_ = m.at("layers").get<int>();
    db.heads_ = m.at("heads").get<int>();
    db.causal_ = m.value("causal", false);
    db.dim_ = m.at("dim").get<int>();
    db.map_dtype_ = parse_map_dtype(m.at("map_dtype").get<std::string>(), where);
    if (db.map_dtype_ == core::DType::kP4 && !db.causal_) {
      core::throw_bad_input(where, ": P4 maps in a database of bidirectional maps");
    }
    db.maps_ = core::RecordStore::open(file("maps"), kMapsMagic, kMapsVersion);
    const size_t entries = m.at("entries").get<size_t>();
    if (db.maps_.count() != entries) {
      core::throw_bad_input(file("maps"), ": holds ", db.maps_.count(), " entries, db.json says ",
                            entries);
    }
    if (entries == 0) core::throw_bad_input(dir, ": the database is empty");
    if (db.projector_.model_dim() != db.dim_) {
      core::throw_bad_input(file("projector"), ": built for hidden size ",
                            db.projector_.model_dim(), ", database has ", db.dim_);
    }
    int previous = 0;
    for (size_t i = 0; i < entries; ++i) {
      const int n = db.n_tokens(i);
      const EntryLayout layout(n, db.dim_, db.layers_, db.heads_, db.causal_, db.map_dtype_);
      if (n < previous || n <= 0 || db.maps_.record(i).size() != layout.total) {
        core::throw_bad_input(file("maps"), ": entry ", i, " is malformed");
      }
      previous = n;
      auto& range = db.ranges_[n];
      if (range.second == 0) range.first = static_cast<int64_t>(i);
      range.second = static_cast<int64_t>(i) + 1;
    }
    if (verify_records) db.maps_.verify();
    const std::string index_path = file("index");
    if (!fs::exists(index_path) || fs::file_size(index_path) != m.at("index").at("bytes") ||
        file_crc32(index_path) != m.at("index").at("crc32").get<uint32_t>()) {
      core::throw_bad_input(index_path,
                            ": missing, truncated or corrupt (size or CRC-32 does "
                            "not match db.json)");
    }
    db.index_ = core::NearestIndex::load(index_path);
    if (db.index_.size() != static_cast<int64_t>(entries) || db.index_.dim() != Projector::kOut) {
      core::throw_bad_input(index_path, ": index does not match the database");
    }
    db.bytes_on_disk_ = fs::file_size(manifest_path);
    for (const auto& [key, name] : files.items()) {
      db.bytes_on_disk_ += fs::file_size(fs::path(dir) / name.get<std::string>());
    }
    return db;
  } catch (const nlohmann::json::exception& e) {
    core::throw_bad_input(where, ": malformed manifest: ", e.what());
  } catch (const fs::filesystem_error& e) {
    core::throw_bad_input(dir, ": ", e.what());
  }
}

MapEntry MapDatabase::entry(size_t i) const {
  return view_entry(maps_.record(i), n_tokens(i), dim_, layers_, heads_, causal_, map_dtype_);
}

std::pair<int64_t, int64_t> MapDatabase::length_range(int n) const {
  auto it = ranges_.find(n);
  return it == ranges_.end() ? std::pair<int64_t, int64_t>{0, 0} : it->second;
}

int MapDatabase::max_stored_tokens() const { return ranges_.empty() ? 0 : ranges_.rbegin()->first; }

size_t MapDatabase::layer_map_bytes(int n) const {
  return stored_layer_bytes(n, heads_, causal_, map_dtype_);
}

}  // namespace attncache::memo
