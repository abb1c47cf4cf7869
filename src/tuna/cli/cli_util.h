// Small helpers shared by the tuna subcommands.
#pragma once

#include <nlohmann/json.hpp>
#include <string>

#include "core/atomic_file.h"
#include "core/error.h"
#include "core/svg_plot.h"

namespace tuna::cli {

inline void write_json(const std::string& path, const nlohmann::json& j) {
  if (path.empty()) return;
  core::AtomicFileWriter out(path);
  out.write(j.dump(2) + "\n");
  out.commit();
}

inline void write_plot(const std::string& path, const core::LinePlot& chart) {
  if (path.empty()) return;
  core::AtomicFileWriter out(path);
  out.write(core::render_svg(chart));
  out.commit();
}

inline void check_ratio(double r, const char* what) {
  if (!(r >= 0.0 && r <= 1.0)) core::throw_bad_input(what, " ", r, " must lie in [0, 1]");
}

inline void check_target(double target) {
  if (!(target > 0.0 && target < 1.0)) {
    core::throw_bad_input("--target ", target, " must lie in (0, 1), e.g. 0.05 for 5%");
  }
}

}  // namespace tuna::cli
