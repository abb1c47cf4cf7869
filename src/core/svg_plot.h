// A small line chart as standalone SVG, for the figures the tools write (no plotting library on
// the run path).
#pragma once

#include <string>
#include <utility>
#include <vector>

namespace core {

struct PlotSeries {
  std::string name;
  std::vector<std::pair<double, double>> points;  // (x, y), drawn in x order
  bool lines = true;                                // false: markers only (a scatter)
};

struct LinePlot {
  std::string title, x_label, y_label;
  std::vector<PlotSeries> series;
  std::vector<std::pair<std::string, double>> y_marks;  // labelled horizontal lines
  std::vector<std::pair<std::string, double>> x_marks;  // labelled vertical lines
};

std::string render_svg(const LinePlot& plot);

}  // namespace core
