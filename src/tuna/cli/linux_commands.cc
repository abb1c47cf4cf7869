#include "tuna/cli/linux_commands.h"

#include <csignal>
#include <cstdio>
#include <memory>
#include <thread>

#include "core/error.h"
#include "tuna/linux/balloon_actuator.h"
#include "tuna/linux/telemetry.h"
#include "tuna/linux/watermark_actuator.h"

namespace tuna::cli {
namespace {

volatile std::sig_atomic_t g_stop = 0;
void request_stop(int) { g_stop = 1; }

struct LinuxCliOptions {
  std::string root = "/", actuator = "watermark";
  int node = 0, count = 5;
  double interval_s = 1, fast_mb = -1;
  bool dry_run = false, restore = false, hold = false;
};

void run_telemetry(const LinuxCliOptions& o) {
  if (!(o.interval_s > 0) || o.count < 1) core::throw_bad_input("--interval and --count must be > 0");
  const linux_tier::LinuxTelemetry telemetry(o.root);
  linux_tier::TelemetrySnapshot before = telemetry.snapshot();
  if (!before.missing_keys.empty()) {
    std::fprintf(stderr, "note: this kernel has no");
    for (const std::string& k : before.missing_keys) std::fprintf(stderr, " %s", k.c_str());
    std::fprintf(stderr, " (counted 0)\n");
  }
  std::printf("%8s %12s %12s %12s %12s %12s\n", "seconds", "promoted", "candidates", "demoted",
              "hint faults", "migrated");
  for (int i = 0; i < o.count; ++i) {
    std::this_thread::sleep_for(std::chrono::duration<double>(o.interval_s));
    const linux_tier::TelemetrySnapshot after = telemetry.snapshot();
    const TierCounters d = linux_tier::counters_between(before, after);
    std::printf("%8.2f %12llu %12llu %12llu %12llu %12llu\n", d.elapsed_ns / 1e9,
                (unsigned long long)d.pgpromote_success, (unsigned long long)d.pgpromote_candidate,
                (unsigned long long)(d.pgdemote_kswapd + d.pgdemote_direct),
                (unsigned long long)d.numa_hint_faults, (unsigned long long)d.pgmigrate_success);
    std::fflush(stdout);
    before = after;
  }
}

void run_apply(const LinuxCliOptions& o) {
  if (o.actuator == "watermark") {
    linux_tier::WatermarkActuator actuator(o.root, o.node);
    if (o.restore) {
      const std::string changes = actuator.restore(o.dry_run);
      std::printf("%s", changes.empty() ? "nothing to change\n" : changes.c_str());
      return;
    }
    if (o.fast_mb < 0) core::throw_bad_input("--fast-mb is required (or --restore)");
    const std::string changes =
        actuator.apply(static_cast<uint64_t>(o.fast_mb * (1 << 20)), o.dry_run);
    std::printf("%s%s", o.dry_run ? "dry run, nothing written:\n" : "",
                changes.empty() ? "nothing to change\n" : changes.c_str());
    return;
  }
  if (o.actuator != "balloon") {
    core::throw_bad_input("--actuator '", o.actuator, "' (watermark or balloon)");
  }
  if (o.fast_mb < 0) core::throw_bad_input("--fast-mb is required");
  linux_tier::BalloonActuator actuator(o.node, o.root);
  const std::string changes = actuator.apply(static_cast<uint64_t>(o.fast_mb * (1 << 20)), o.dry_run);
  std::printf("%s%s", o.dry_run ? "dry run, nothing pinned:\n" : "",
              changes.empty() ? "nothing to change\n" : changes.c_str());
  if (o.hold && !o.dry_run) {
    // The pin lasts as long as this process: hold it until told to stop.
    std::signal(SIGINT, request_stop);
    std::signal(SIGTERM, request_stop);
    std::printf("holding the balloon; SIGINT or SIGTERM releases it\n");
    std::fflush(stdout);
    while (!g_stop) std::this_thread::sleep_for(std::chrono::milliseconds(200));
  }
}

}  // namespace

void add_telemetry_command(CLI::App& app) {
  auto o = std::make_shared<LinuxCliOptions>();
  CLI::App* cmd = app.add_subcommand(
      "telemetry",
      "Print Tuna's page-migration counters from /proc/vmstat (promotions, candidates, "
      "demotions, NUMA hint faults, migrations) per interval. Read-only.");
  cmd->add_option("--root", o->root, "filesystem root holding proc/ (a fake tree for tests)")
      ->capture_default_str();
  cmd->add_option("--interval", o->interval_s, "seconds between samples")->capture_default_str();
  cmd->add_option("--count", o->count, "samples")->capture_default_str();
  cmd->callback([o] { run_telemetry(*o); });
}

void add_apply_command(CLI::App& app) {
  auto o = std::make_shared<LinuxCliOptions>();
  CLI::App* cmd = app.add_subcommand(
      "apply",
      "Limit the fast memory available on a Linux tiered machine: raise the watermarks of the "
      "fast node (vm.watermark_scale_factor, then vm.min_free_kbytes; needs root; --restore puts "
      "the values recorded at start back) or pin a balloon of the rest of the node "
      "(mmap + mbind + mlock; --hold keeps it). --dry-run prints what would change.");
  cmd->add_option("--actuator", o->actuator, "watermark or balloon")->capture_default_str();
  cmd->add_option("--node", o->node, "the fast NUMA node")->capture_default_str();
  cmd->add_option("--fast-mb", o->fast_mb, "fast memory to leave available, in MiB");
  cmd->add_option("--root", o->root, "filesystem root holding proc/ and sys/ (a fake tree for tests)")
      ->capture_default_str();
  cmd->add_flag("--dry-run", o->dry_run, "print what would change, change nothing");
  cmd->add_flag("--restore", o->restore, "watermark: put the recorded values back");
  cmd->add_flag("--hold", o->hold, "balloon: keep the pin until SIGINT or SIGTERM");
  cmd->callback([o] { run_apply(*o); });
}

}  // namespace tuna::cli
