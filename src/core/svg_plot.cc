#include "core/svg_plot.h"

#include <algorithm>
#include <cmath>
#include <sstream>
#include <vector>

namespace core {
namespace {

std::string escape(const std::string& s) {
  std::string out;
  for (char c : s) {
    if (c == '<')
      out += "&lt;";
    else if (c == '>')
      out += "&gt;";
    else if (c == '&')
      out += "&amp;";
    else
      out += c;
  }
  return out;
}

// Ticks at multiples of a round step (1, 2 or 5 × 10^k) giving about five intervals; the range
// widens to the ticks around it.
std::vector<double> nice_ticks(double& lo, double& hi) {
  const double raw = (hi - lo) / 5;
  const double magnitude = std::pow(10, std::floor(std::log10(raw)));
  double step = magnitude;
  for (double m : {1.0, 2.0, 5.0, 10.0}) {
    step = m * magnitude;
    if (step >= raw) break;
  }
  lo = std::floor(lo / step + 1e-9) * step;
  hi = std::ceil(hi / step - 1e-9) * step;
  std::vector<double> ticks;
  for (double t = lo; t <= hi + step / 2; t += step) ticks.push_back(std::abs(t) < step / 1e6 ? 0 : t);
  return ticks;
}

std::string tick_label(double v) {
  std::ostringstream o;
  if (v == std::round(v) && std::abs(v) < 1e9) {
    o << static_cast<long long>(v);
  } else {
    o.precision(4);
    o << v;
  }
  return o.str();
}

}  // namespace

std::string render_svg(const LinePlot& plot) {
  const double W = 760, H = 440, L = 70, R = 190, T = 40, B = 50;
  double x0 = INFINITY, x1 = -INFINITY, y0 = INFINITY, y1 = -INFINITY;
  for (const auto& s : plot.series) {
    for (const auto& [x, y] : s.points) {
      if (!std::isfinite(x) || !std::isfinite(y)) continue;
      x0 = std::min(x0, x), x1 = std::max(x1, x), y0 = std::min(y0, y), y1 = std::max(y1, y);
    }
  }
  for (const auto& [label, y] : plot.y_marks) y0 = std::min(y0, y), y1 = std::max(y1, y);
  for (const auto& [label, x] : plot.x_marks) x0 = std::min(x0, x), x1 = std::max(x1, x);
  if (!std::isfinite(x0)) x0 = 0, x1 = 1, y0 = 0, y1 = 1;
  if (x1 <= x0) x1 = x0 + 1;
  if (y1 <= y0) y1 = y0 + 1;
  const std::vector<double> x_ticks = nice_ticks(x0, x1), y_ticks = nice_ticks(y0, y1);
  auto px = [&](double x) { return L + (x - x0) / (x1 - x0) * (W - L - R); };
  auto py = [&](double y) { return T + (y1 - y) / (y1 - y0) * (H - T - B); };
  std::ostringstream o;
  o.precision(4);
  o << "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"" << W << "\" height=\"" << H
    << "\" font-family=\"sans-serif\" font-size=\"11\">\n<rect width=\"100%\" height=\"100%\" "
       "fill=\"white\"/>\n<text x=\""
    << L << "\" y=\"22\" font-size=\"13\">" << escape(plot.title) << "</text>\n";
  for (double y : y_ticks) {
    o << "<line x1=\"" << L << "\" x2=\"" << W - R << "\" y1=\"" << py(y) << "\" y2=\"" << py(y)
      << "\" stroke=\"#e4e4e4\"/><text x=\"" << L - 6 << "\" y=\"" << py(y) + 4
      << "\" text-anchor=\"end\">" << tick_label(y) << "</text>\n";
  }
  for (double x : x_ticks) {
    o << "<text x=\"" << px(x) << "\" y=\"" << H - B + 16 << "\" text-anchor=\"middle\">"
      << tick_label(x) << "</text>\n";
  }
  o << "<text x=\"" << (L + W - R) / 2 << "\" y=\"" << H - 12 << "\" text-anchor=\"middle\">"
    << escape(plot.x_label) << "</text>\n<text transform=\"translate(16," << (T + H - B) / 2
    << ") rotate(-90)\" text-anchor=\"middle\">" << escape(plot.y_label) << "</text>\n";
  for (const auto& [label, y] : plot.y_marks) {
    o << "<line x1=\"" << L << "\" x2=\"" << W - R << "\" y1=\"" << py(y) << "\" y2=\"" << py(y)
      << "\" stroke=\"#888\" stroke-dasharray=\"4,3\"/><text x=\"" << W - R + 4 << "\" y=\""
      << py(y) + 4 << "\">" << escape(label) << "</text>\n";
  }
  for (const auto& [label, x] : plot.x_marks) {
    o << "<line x1=\"" << px(x) << "\" x2=\"" << px(x) << "\" y1=\"" << T << "\" y2=\"" << H - B
      << "\" stroke=\"#888\" stroke-dasharray=\"2,3\"/><text x=\"" << px(x) + 3 << "\" y=\""
      << T + 12 << "\">" << escape(label) << "</text>\n";
  }
  const char* colors[] = {"#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b"};
  for (size_t i = 0; i < plot.series.size(); ++i) {
    auto pts = plot.series[i].points;
    std::sort(pts.begin(), pts.end());
    const char* color = colors[i % 6];
    if (plot.series[i].lines) {
      o << "<polyline fill=\"none\" stroke=\"" << color << "\" stroke-width=\"1.8\" points=\"";
      for (const auto& [x, y] : pts) {
        if (std::isfinite(x) && std::isfinite(y)) o << px(x) << "," << py(y) << " ";
      }
      o << "\"/>\n";
    }
    for (const auto& [x, y] : pts) {
      if (std::isfinite(x) && std::isfinite(y)) {
        o << "<circle cx=\"" << px(x) << "\" cy=\"" << py(y) << "\" r=\"" << (plot.series[i].lines ? 2.5 : 4)
          << "\" fill=\"" << color
          << "\"/>\n";
      }
    }
    o << "<text x=\"" << W - R + 4 << "\" y=\"" << T + 30 + 16 * i << "\" fill=\"" << color << "\">"
      << escape(plot.series[i].name) << "</text>\n";
  }
  o << "</svg>\n";
  return o.str();
}

}  // namespace core
