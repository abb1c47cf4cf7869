// `attncache score`: prefill-only tasks with a decoder. `score mmlu` answers multiple-choice
// questions (exact, with the k-shot header's keys and values reused, and with AttnCache);
// `score text` computes the log-likelihood of each line.
#pragma once

#include <CLI/CLI.hpp>

namespace attncache::cli {

void add_score_command(CLI::App& app);

}  // namespace attncache::cli
