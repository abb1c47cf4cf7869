// tuna: how much fast memory does a workload need on tiered memory? Runs workloads on the
// simulated tiered machine (`sim`), finds the true minimal size by sweeping (`oracle`), and
// sizes it as Tuna does from micro-benchmark profiles (`profile`, `advise`, `eval`).
#include <CLI/CLI.hpp>
#include <cstdio>
#include <exception>

#include "core/error.h"
#include "tuna/cli/linux_commands.h"
#include "tuna/cli/model_commands.h"
#include "tuna/cli/platform_commands.h"
#include "tuna/cli/tune_command.h"

int main(int argc, char** argv) {
  CLI::App app(
      "tuna: fast-memory sizing for tiered memory (fast DRAM + slow CXL-like memory, pages\n"
      "migrated by TPP): on a simulated tiered machine (sim, oracle, profile, advise, eval,\n"
      "accuracy, tune) and on Linux (telemetry, apply).\n\n"
      "Exit codes: 0 ok, 1 internal failure, 2 bad input or usage.");
  app.require_subcommand(1);
  tuna::cli::add_sim_command(app);
  tuna::cli::add_oracle_command(app);
  tuna::cli::add_profile_command(app);
  tuna::cli::add_advise_command(app);
  tuna::cli::add_eval_command(app);
  tuna::cli::add_accuracy_command(app);
  tuna::cli::add_tune_command(app);
  tuna::cli::add_telemetry_command(app);
  tuna::cli::add_apply_command(app);
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    const int code = app.exit(e);
    return code == 0 ? 0 : 2;
  } catch (const core::Error& e) {
    std::fprintf(stderr, "tuna: error: %s\n", e.what());
    return e.exit_code();
  } catch (const std::exception& e) {
    std::fprintf(stderr, "tuna: internal error: %s\n", e.what());
    return 1;
  }
  return 0;
}
