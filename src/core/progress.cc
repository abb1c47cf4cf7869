#include "core/progress.h"

#include <unistd.h>

#include <algorithm>

namespace core {

using Clock = std::chrono::steady_clock;

Progress::Progress(std::string label, size_t total, bool enabled, std::FILE* out)
    : label_(std::move(label)),
      total_(total),
      enabled_(enabled),
      tty_(::isatty(::fileno(out)) != 0),
      out_(out),
      start_(Clock::now()),
      last_draw_(start_) {}

Progress::~Progress() { finish(); }

void Progress::advance(size_t n) {
  done_ += n;
  if (!enabled_) return;
  auto now = Clock::now();
  auto interval = tty_ ? std::chrono::milliseconds(100) : std::chrono::milliseconds(5000);
  if (now - last_draw_ >= interval) {
    last_draw_ = now;
    draw(false);
  }
}

void Progress::finish() {
  if (!enabled_ || finished_) return;
  finished_ = true;
  draw(true);
}

void Progress::draw(bool final_line) {
  double elapsed = std::chrono::duration<double>(Clock::now() - start_).count();
  double rate = elapsed > 0 ? static_cast<double>(done_) / elapsed : 0.0;
  double frac = total_ > 0 ? std::min(1.0, static_cast<double>(done_) / total_) : 1.0;
  double eta = rate > 0 ? static_cast<double>(total_ - std::min(done_, total_)) / rate : 0.0;
  if (tty_) {
    constexpr int kWidth = 30;
    int filled = static_cast<int>(frac * kWidth);
    std::string bar(filled, '#');
    bar.append(kWidth - filled, '.');
    std::fprintf(out_, "\r%s [%s] %zu/%zu %.1f/s ETA %.0fs ", label_.c_str(), bar.c_str(), done_,
                 total_, rate, eta);
    if (final_line) std::fprintf(out_, "\n");
  } else {
    std::fprintf(out_, "%s: %zu/%zu (%.0f%%) %.1f/s ETA %.0fs\n", label_.c_str(), done_, total_,
                 frac * 100.0, rate, eta);
  }
  std::fflush(out_);
}

}  // namespace core
