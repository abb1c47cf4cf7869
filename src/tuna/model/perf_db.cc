#include "tuna/model/perf_db.h"

#include <algorithm>
#include <cmath>
#include <filesystem>

#include "core/error.h"
#include "core/record_store.h"

namespace tuna {
namespace {

namespace fs = std::filesystem;
constexpr char kMagic[] = "TUNAPDB";
constexpr uint32_t kVersion = 1;
constexpr int kFields = 6;  // setting, ratio index, three metrics, slowdown

fs::path store_path(const std::string& dir) { return fs::path(dir) / "perf.tdb"; }
fs::path index_path(const std::string& dir) { return fs::path(dir) / "perf.faiss"; }

}  // namespace

nlohmann::json to_json(const WorkloadProfile& p) {
  return {{"version", kWorkloadProfileVersion},
          {"outside", p.outside},
          {"misses", p.misses},
          {"stall_per_miss_ns", p.stall_per_miss_ns},
          {"elapsed_ns", p.elapsed_ns},
          {"footprint_pages", p.footprint_pages}};
}

WorkloadProfile profile_from_json(const nlohmann::json& j) {
  if (j.value("version", 0) != kWorkloadProfileVersion) {
    throw nlohmann::json::other_error::create(
        501, "access profile of an older format; profile again", &j);
  }
  WorkloadProfile p;
  p.outside = j.at("outside").get<std::vector<double>>();
  p.misses = j.at("misses").get<double>();
  p.stall_per_miss_ns = j.at("stall_per_miss_ns").get<double>();
  p.elapsed_ns = j.at("elapsed_ns").get<double>();
  p.footprint_pages = j.at("footprint_pages").get<uint64_t>();
  if (p.outside.size() != 101) throw nlohmann::json::other_error::create(501, "outside[] must have 101 points", &j);
  return p;
}

void write_perf_db(const std::string& dir, const PerfDbContents& c) {
  const size_t n_settings = c.settings.size(), n_ratios = c.ratios.size();
  if (n_settings == 0 || n_ratios < 2) {
    core::throw_bad_input("a performance database needs settings and at least two ratios");
  }
  if (!c.profiles.empty() && c.profiles.size() != n_settings) {
    core::throw_bad_input("a profile per setting, or none: ", c.profiles.size(), " for ",
                          n_settings, " settings");
  }
  for (size_t i = 1; i < n_ratios; ++i) {
    if (!(c.ratios[i] > c.ratios[i - 1])) core::throw_bad_input("ratios must increase");
  }
  // Order runs by (ratio, setting) and check that each cell is there exactly once.
  std::vector<const ProfileRun*> cell(n_settings * n_ratios, nullptr);
  for (const ProfileRun& r : c.runs) {
    if (r.setting >= n_settings || r.ratio_index >= n_ratios) {
      core::throw_bad_input("profile run outside the grid (setting ", r.setting, ", ratio ",
                            r.ratio_index, ")");
    }
    const ProfileRun*& slot = cell[r.ratio_index * n_settings + r.setting];
    if (slot != nullptr) core::throw_bad_input("setting ", r.setting, " profiled twice at a ratio");
    slot = &r;
  }
  std::array<double, 3> sum{}, sum2{};
  std::vector<std::array<float, 3>> features;
  for (size_t i = 0; i < cell.size(); ++i) {
    if (cell[i] == nullptr) {
      core::throw_bad_input("the profile is incomplete: setting ", i % n_settings,
                            " has no run at ratio ", c.ratios[i / n_settings]);
    }
    features.push_back(feature_vector(cell[i]->metrics));
    for (int d = 0; d < 3; ++d) sum[d] += features.back()[d], sum2[d] += features.back()[d] * features.back()[d];
  }
  nlohmann::json mean = nlohmann::json::array(), scale = nlohmann::json::array();
  std::array<double, 3> m{}, s{};
  for (int d = 0; d < 3; ++d) {
    m[d] = sum[d] / cell.size();
    const double var = std::max(0.0, sum2[d] / cell.size() - m[d] * m[d]);
    s[d] = std::sqrt(var) > 1e-6 ? std::sqrt(var) : 1.0;
    mean.push_back(m[d]);
    scale.push_back(s[d]);
  }
  fs::create_directories(dir);
  std::vector<float> vectors;
  core::RecordStoreWriter writer(store_path(dir).string(), kMagic, kVersion);
  for (size_t i = 0; i < cell.size(); ++i) {
    const ProfileRun& r = *cell[i];
    const double fields[kFields] = {static_cast<double>(r.setting),
                                    static_cast<double>(r.ratio_index),
                                    r.metrics.migration_per_maccess,
                                    r.metrics.compute_per_access,
                                    r.metrics.misses_per_kaccess,
                                    r.slowdown};
    writer.add(r.ratio_index, std::as_bytes(std::span<const double>(fields)));
    for (int d = 0; d < 3; ++d) vectors.push_back(static_cast<float>((features[i][d] - m[d]) / s[d]));
  }
  core::NearestIndex index = core::NearestIndex::create("Flat", 3);
  index.build(vectors.data(), static_cast<int64_t>(cell.size()));
  index.save(index_path(dir).string());
  nlohmann::json profiles = nlohmann::json::array();
  for (const WorkloadProfile& p : c.profiles) profiles.push_back(to_json(p));
  writer.finish({{"platform", c.platform},
                 {"profiles", profiles},
                 {"settings", c.settings},
                 {"ratios", c.ratios},
                 {"feature_mean", mean},
                 {"feature_scale", scale},
                 {"metrics",
                  {"pages migrated (promoted + demoted) per million accesses",
                   "compute units per access", "LLC misses per thousand accesses"}}});
}

PerfDatabase PerfDatabase::open(const std::string& dir) {
  if (!fs::exists(store_path(dir))) {
    core::throw_bad_input(dir, " is not a Tuna performance database (no perf.tdb); make one with "
                          "`tuna profile --out ", dir, "`");
  }
  const core::RecordStore store = core::RecordStore::open(store_path(dir).string(), kMagic, kVersion);
  store.verify();
  PerfDatabase db;
  try {
    const nlohmann::json& meta = store.meta();
    db.platform_ = meta.at("platform");
    db.settings_ = meta.at("settings").get<std::vector<nlohmann::json>>();
    db.ratios_ = meta.at("ratios").get<std::vector<double>>();
    for (const auto& p : meta.value("profiles", nlohmann::json::array())) {
      db.profiles_.push_back(profile_from_json(p));
    }
    for (int d = 0; d < 3; ++d) {
      db.mean_[d] = meta.at("feature_mean").at(d).get<double>();
      db.scale_[d] = meta.at("feature_scale").at(d).get<double>();
    }
  } catch (const nlohmann::json::exception& e) {
    core::throw_bad_input(store_path(dir).string(), ": malformed metadata: ", e.what());
  }
  const size_t n_settings = db.settings_.size(), n_ratios = db.ratios_.size();
  if (store.count() != n_settings * n_ratios || n_ratios < 2) {
    core::throw_bad_input(store_path(dir).string(), ": ", store.count(), " runs for a grid of ",
                          n_settings, " settings × ", n_ratios, " ratios");
  }
  db.curve_.assign(n_settings * n_ratios, 0);
  for (size_t i = 0; i < store.count(); ++i) {
    const auto f = core::view_as<double>(store.record(i));
    if (f.size() != kFields) core::throw_bad_input(store_path(dir).string(), ": bad record ", i);
    ProfileRun r;
    r.setting = static_cast<uint32_t>(f[0]);
    r.ratio_index = static_cast<uint32_t>(f[1]);
    r.metrics = {f[2], f[3], f[4]};
    r.slowdown = f[5];
    if (r.setting != i % n_settings || r.ratio_index != i / n_settings) {
      core::throw_bad_input(store_path(dir).string(), ": record ", i, " is out of order");
    }
    db.curve_[r.setting * n_ratios + r.ratio_index] = r.slowdown;
    db.runs_.push_back(r);
  }
  db.index_ = std::make_unique<core::NearestIndex>(core::NearestIndex::load(index_path(dir).string()));
  if (db.index_->size() != static_cast<int64_t>(store.count()) || db.index_->dim() != 3) {
    core::throw_bad_input(index_path(dir).string(), " does not match perf.tdb (",
                          db.index_->size(), " vectors for ", store.count(), " runs)");
  }
  return db;
}

SlowdownModel calibrate(const PerfDatabase& db, const PlatformCosts& costs,
                        const std::vector<uint32_t>& exclude) {
  if (db.profiles().size() != db.setting_count()) {
    core::throw_bad_input("the performance database has no access profiles (made by an older "
                          "tuna); profile again");
  }
  std::vector<CalibrationPoint> points;
  for (const ProfileRun& r : db.runs()) {
    if (std::find(exclude.begin(), exclude.end(), r.setting) != exclude.end()) continue;
    points.push_back({slow_traffic_cost(db.profiles()[r.setting], costs,
                                        db.ratios()[r.ratio_index]),
                      r.slowdown});
  }
  return calibrate(points);
}

void PerfDatabase::check_platform(const nlohmann::json& platform) const {
  std::string differences;
  for (const auto& [key, value] : platform.items()) {
    if (!platform_.contains(key) || platform_.at(key) != value) {
      differences += core::cat(differences.empty() ? "" : ", ", key, " ",
                               platform_.contains(key) ? platform_.at(key).dump() : "(absent)",
                               " in the database, ", value.dump(), " here");
    }
  }
  if (!differences.empty()) {
    core::throw_bad_input("the performance database was profiled on another platform "
                          "configuration: ", differences);
  }
}

std::array<float, 3> PerfDatabase::standardized(const Metrics& m) const {
  std::array<float, 3> v = feature_vector(m);
  for (int d = 0; d < 3; ++d) v[d] = static_cast<float>((v[d] - mean_[d]) / scale_[d]);
  return v;
}

size_t PerfDatabase::nearest_ratio_index(double fast_ratio) const {
  size_t best = 0;
  for (size_t i = 1; i < ratios_.size(); ++i) {
    if (std::abs(ratios_[i] - fast_ratio) < std::abs(ratios_[best] - fast_ratio)) best = i;
  }
  return best;
}

std::vector<SettingMatch> PerfDatabase::nearest(const Metrics& m, double fast_ratio, int k,
                                                int64_t exclude) const {
  const auto n_settings = static_cast<int64_t>(settings_.size());
  const auto first = static_cast<int64_t>(nearest_ratio_index(fast_ratio)) * n_settings;
  const std::array<float, 3> q = standardized(m);
  std::vector<SettingMatch> out;
  for (const core::Neighbor& nb :
       index_->search(q.data(), k + (exclude >= 0 ? 1 : 0), first, first + n_settings)) {
    if (nb.id < 0 || nb.id - first == exclude) continue;
    if (static_cast<int>(out.size()) < k) {
      out.push_back({static_cast<uint32_t>(nb.id - first), nb.distance});
    }
  }
  return out;
}

double PerfDatabase::slowdown(uint32_t setting, double fast_ratio) const {
  const size_t n = ratios_.size();
  const double* c = &curve_.at(static_cast<size_t>(setting) * n);
  if (fast_ratio <= ratios_.front()) return c[0];
  if (fast_ratio >= ratios_.back()) return c[n - 1];
  size_t hi = 1;
  while (ratios_[hi] < fast_ratio) ++hi;
  const double t = (fast_ratio - ratios_[hi - 1]) / (ratios_[hi] - ratios_[hi - 1]);
  return c[hi - 1] + t * (c[hi] - c[hi - 1]);
}

}  // namespace tuna
