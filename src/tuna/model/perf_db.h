// Tuna's performance database: per profiled run of the micro-benchmark (a knob setting at a
// fast-memory ratio), the telemetry metrics observed and the slowdown measured against all-fast.
// A directory holding perf.tdb (a core record store: one record per run, the grid and the
// platform in its metadata) and perf.faiss (a Faiss index over the standardized metric vectors,
// runs ordered by ratio so that each ratio is one id range).
//
// A query gives the settings whose telemetry at the current fast-memory ratio is nearest to the
// workload's; their slowdown curves (slowdown at every profiled ratio) are the prediction.
#pragma once

#include <cstdint>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "core/nearest_index.h"
#include "tuna/model/histogram_model.h"
#include "tuna/model/metrics.h"

namespace tuna {

struct ProfileRun {
  uint32_t setting = 0;      // index into the settings
  uint32_t ratio_index = 0;  // index into the ratios
  Metrics metrics;
  double slowdown = 0;
};

struct PerfDbContents {
  nlohmann::json platform;                // machine_json of the profiled machine
  std::vector<nlohmann::json> settings;   // micro-benchmark knobs, one per setting
  std::vector<double> ratios;             // increasing, in [0, 1]
  std::vector<ProfileRun> runs;           // every setting × ratio exactly once
  std::vector<WorkloadProfile> profiles;  // per setting, observed all-fast (for our model)
};

// 4: the share of misses at LRU stack distances beyond each size (Mattson), allocations inside.
constexpr int kWorkloadProfileVersion = 4;
nlohmann::json to_json(const WorkloadProfile& p);
WorkloadProfile profile_from_json(const nlohmann::json& j);

// Writes the database into `dir` (created if needed), each file atomically. Throws core::Error
// (bad input) if the grid is incomplete.
void write_perf_db(const std::string& dir, const PerfDbContents& contents);

struct SettingMatch {
  uint32_t setting;
  float distance;  // squared, in standardized metric units
};

class PerfDatabase;
// Fits our slowdown model on every profiled run (settings in `exclude` left out, for
// leave-one-out). Throws core::Error (bad input) for a database without profiles.
SlowdownModel calibrate(const PerfDatabase& db, const PlatformCosts& costs,
                        const std::vector<uint32_t>& exclude = {});

class PerfDatabase {
 public:
  // Throws core::Error (bad input) naming the problem: no database there, a corrupt or
  // truncated file, another format version.
  static PerfDatabase open(const std::string& dir);

  // Throws core::Error (bad input) listing the settings that differ when the database was
  // profiled on another platform configuration than `platform`.
  void check_platform(const nlohmann::json& platform) const;

  const std::vector<double>& ratios() const { return ratios_; }
  size_t setting_count() const { return settings_.size(); }
  const nlohmann::json& setting(uint32_t s) const { return settings_.at(s); }
  size_t run_count() const { return runs_.size(); }
  const std::vector<ProfileRun>& runs() const { return runs_; }
  const nlohmann::json& platform() const { return platform_; }
  // Per setting, its access histogram observed at full fast memory.
  const std::vector<WorkloadProfile>& profiles() const { return profiles_; }

  // The k settings whose metrics at the profiled ratio nearest `fast_ratio` are nearest `m`,
  // leaving out setting `exclude` (for leave-one-out; -1: none).
  std::vector<SettingMatch> nearest(const Metrics& m, double fast_ratio, int k,
                                    int64_t exclude = -1) const;
  // Setting s's measured slowdown at `fast_ratio`, interpolated linearly between profiled ratios.
  double slowdown(uint32_t setting, double fast_ratio) const;
  size_t nearest_ratio_index(double fast_ratio) const;

 private:
  PerfDatabase() = default;
  std::array<float, 3> standardized(const Metrics& m) const;

  nlohmann::json platform_;
  std::vector<nlohmann::json> settings_;
  std::vector<double> ratios_;
  std::vector<ProfileRun> runs_;      // ordered by (ratio, setting): id = ratio·settings + setting
  std::vector<double> curve_;          // slowdown[setting · ratios + ratio]
  std::vector<WorkloadProfile> profiles_;
  std::array<double, 3> mean_{}, scale_{};
  std::unique_ptr<core::NearestIndex> index_;
};

}  // namespace tuna
