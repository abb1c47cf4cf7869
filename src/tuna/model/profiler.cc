#include "tuna/model/profiler.h"

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <map>
#include <mutex>

#include "core/error.h"
#include "core/parallel.h"
#include "core/progress.h"
#include "tuna/model/perf_db.h"

namespace tuna {
namespace {

namespace fs = std::filesystem;

void expand(const nlohmann::json& base, const std::vector<std::pair<std::string, nlohmann::json>>& axes,
            size_t axis, std::vector<MicrobenchOptions>* out) {
  if (axis == axes.size()) {
    out->push_back(microbench_from_json(base));
    return;
  }
  for (const nlohmann::json& value : axes[axis].second) {
    nlohmann::json knobs = base;
    knobs[axes[axis].first] = value;
    expand(knobs, axes, axis + 1, out);
  }
}

struct Journal {
  uint64_t valid_bytes = 0;                              // the whole lines read
  std::map<uint32_t, double> all_fast_ns;                // by setting
  std::map<uint32_t, WorkloadProfile> profiles;          // by setting, from the all-fast run
  std::map<std::pair<uint32_t, uint32_t>, ProfileRun> runs;  // by (setting, ratio index)
};

// Reads the runs an earlier call journaled; the last line may be cut short by an interruption.
Journal read_journal(const fs::path& path, const nlohmann::json& header) {
  Journal j;
  std::ifstream in(path);
  std::string line;
  std::vector<std::string> lines;
  while (std::getline(in, line)) lines.push_back(line);
  for (size_t i = 0; i < lines.size(); ++i) {
    nlohmann::json entry;
    try {
      entry = nlohmann::json::parse(lines[i]);
    } catch (const nlohmann::json::exception&) {
      if (i + 1 == lines.size()) break;  // an interrupted write
      core::throw_bad_input(path.string(), ": line ", i + 1, " is corrupt");
    }
    j.valid_bytes += lines[i].size() + 1;
    try {
      if (i == 0) {
        if (entry != header) {
          core::throw_bad_input(path.string(), " was written for another grid or platform; "
                                "use another --out directory or delete the journal");
        }
      } else if (entry.contains("all_fast_ns")) {
        // Access profiles of an older format (or none, from before they were recorded): rerun.
        if (!entry.contains("profile") ||
            entry.at("profile").value("version", 0) != kWorkloadProfileVersion) {
          continue;
        }
        const auto s = entry.at("setting").get<uint32_t>();
        j.all_fast_ns[s] = entry.at("all_fast_ns").get<double>();
        j.profiles[s] = profile_from_json(entry.at("profile"));
      } else {
        ProfileRun r;
        r.setting = entry.at("setting").get<uint32_t>();
        r.ratio_index = entry.at("ratio_index").get<uint32_t>();
        const auto& m = entry.at("metrics");
        r.metrics = {m.at(0).get<double>(), m.at(1).get<double>(), m.at(2).get<double>()};
        r.slowdown = entry.at("slowdown").get<double>();
        j.runs[{r.setting, r.ratio_index}] = r;
      }
    } catch (const nlohmann::json::exception& e) {
      core::throw_bad_input(path.string(), ": line ", i + 1, ": ", e.what());
    }
  }
  return j;
}

}  // namespace

ProfileGrid default_grid() {
  nlohmann::json base = to_json(MicrobenchOptions{});
  nlohmann::json grid = {
      {"base", base},
      {"axes",
       {{"hot_bytes", {4 << 20, 16 << 20, 32 << 20}},
        {"hot_fraction", {0.6, 0.9, 0.99}},
        {"compute_per_access", {0, 16}},
        {"dependent_fraction", {0.0, 0.5}},
        {"hot_moves", {0, 4}}}},
      {"ratios", {0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0}}};
  return grid_from_json(grid);
}

ProfileGrid grid_from_json(const nlohmann::json& j) {
  ProfileGrid grid;
  try {
    nlohmann::json base = to_json(MicrobenchOptions{});
    const nlohmann::json user_base = j.value("base", nlohmann::json::object());
    for (const auto& [knob, value] : user_base.items()) {
      if (!base.contains(knob)) core::throw_bad_input("grid: unknown knob '", knob, "'");
      base[knob] = value;
    }
    std::vector<std::pair<std::string, nlohmann::json>> axes;
    const nlohmann::json axis_list = j.value("axes", nlohmann::json::object());
    for (const auto& [knob, values] : axis_list.items()) {
      if (!base.contains(knob)) core::throw_bad_input("grid: unknown knob '", knob, "'");
      if (!values.is_array() || values.empty()) {
        core::throw_bad_input("grid: axis '", knob, "' must be a non-empty array");
      }
      axes.emplace_back(knob, values);
    }
    expand(base, axes, 0, &grid.settings);
    grid.ratios = j.at("ratios").get<std::vector<double>>();
  } catch (const nlohmann::json::exception& e) {
    core::throw_bad_input("grid: ", e.what());
  }
  if (grid.ratios.size() < 2) core::throw_bad_input("grid: at least two ratios");
  for (size_t i = 0; i < grid.ratios.size(); ++i) {
    if (!(grid.ratios[i] >= 0 && grid.ratios[i] <= 1) || (i > 0 && !(grid.ratios[i] > grid.ratios[i - 1]))) {
      core::throw_bad_input("grid: ratios must increase within [0, 1]");
    }
  }
  return grid;
}

nlohmann::json to_json(const ProfileGrid& grid) {
  nlohmann::json settings = nlohmann::json::array();
  for (const MicrobenchOptions& s : grid.settings) settings.push_back(to_json(s));
  return {{"settings", settings}, {"ratios", grid.ratios}};
}

void profile(const std::string& dir, const ProfileGrid& grid, const MachineOptions& machine,
             int jobs, bool show_progress) {
  fs::create_directories(dir);
  const fs::path journal_path = fs::path(dir) / "journal.jsonl";
  const nlohmann::json header = {{"platform", machine_json(machine)}, {"grid", to_json(grid)}};
  Journal done;
  if (fs::exists(journal_path)) {
    done = read_journal(journal_path, header);
    // Drop a line cut short by an interruption; end a whole last line that lost its newline.
    if (done.valid_bytes > fs::file_size(journal_path)) {
      std::ofstream(journal_path, std::ios::app) << '\n';
    } else {
      fs::resize_file(journal_path, done.valid_bytes);
    }
  }
  std::ofstream journal(journal_path, std::ios::app);
  if (!journal) core::throw_bad_input("cannot write ", journal_path.string());
  auto log = [&](const nlohmann::json& entry) {
    journal << entry.dump() << '\n';
    journal.flush();  // a later call resumes from here
  };
  if (done.all_fast_ns.empty() && done.runs.empty()) {
    // A fresh journal (or one cut short inside its header line).
    journal.close();
    journal.open(journal_path, std::ios::trunc);
    log(header);
  }
  const auto n_ratios = static_cast<uint32_t>(grid.ratios.size());
  const auto n_settings = static_cast<uint32_t>(grid.settings.size());
  core::Progress progress("profile", n_settings * (n_ratios + 1), show_progress);
  std::mutex mutex;  // guards done, the journal and the progress bar
  // One setting at a time per worker: its all-fast reference, then its ratios. Every run is
  // deterministic, so the database does not depend on the number of workers.
  auto profile_setting = [&](uint32_t s) {
    auto run_at = [&](sim::Policy policy, double ratio) {
      Microbench bench(grid.settings[s]);
      return run_workload(bench, machine, policy, ratio).counters;
    };
    double all_fast_ns;
    {
      std::lock_guard<std::mutex> lock(mutex);
      auto it = done.all_fast_ns.find(s);
      all_fast_ns = it != done.all_fast_ns.end() ? it->second : -1;
    }
    if (all_fast_ns < 0) {
      Microbench bench(grid.settings[s]);
      const RunResult ref = run_workload(bench, machine, sim::Policy::kAllFast, 1.0, true);
      all_fast_ns = ref.counters.elapsed_ns;
      const WorkloadProfile& profile = ref.profile;
      std::lock_guard<std::mutex> lock(mutex);
      done.all_fast_ns[s] = all_fast_ns;
      done.profiles[s] = profile;
      log({{"setting", s}, {"all_fast_ns", all_fast_ns}, {"profile", to_json(profile)}});
    }
    {
      std::lock_guard<std::mutex> lock(mutex);
      progress.advance(1);
    }
    for (uint32_t r = 0; r < n_ratios; ++r) {
      bool have;
      {
        std::lock_guard<std::mutex> lock(mutex);
        have = done.runs.count({s, r}) > 0;
      }
      if (!have) {
        const TierCounters c = run_at(sim::Policy::kTpp, grid.ratios[r]);
        const ProfileRun run{s, r, metrics_of(c), c.elapsed_ns / all_fast_ns - 1};
        const Metrics& m = run.metrics;
        std::lock_guard<std::mutex> lock(mutex);
        log({{"setting", s},
             {"ratio_index", r},
             {"metrics", {m.migration_per_maccess, m.compute_per_access, m.misses_per_kaccess}},
             {"slowdown", run.slowdown}});
        done.runs[{s, r}] = run;
      }
      std::lock_guard<std::mutex> lock(mutex);
      progress.advance(1);
    }
  };
  core::parallel_for(n_settings, jobs, [&](size_t s) { profile_setting(static_cast<uint32_t>(s)); });
  progress.finish();
  PerfDbContents db{machine_json(machine), {}, grid.ratios, {}, {}};
  for (const MicrobenchOptions& setting : grid.settings) db.settings.push_back(to_json(setting));
  for (const auto& [setting, profile] : done.profiles) db.profiles.push_back(profile);
  for (const auto& [key, run] : done.runs) db.runs.push_back(run);
  write_perf_db(dir, db);
}

}  // namespace tuna
