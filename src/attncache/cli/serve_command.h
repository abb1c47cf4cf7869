// `attncache serve`: the OpenAI-compatible HTTP server (src/attncache/serve/).
#pragma once

#include <CLI/CLI.hpp>

namespace attncache::cli {

void add_serve_command(CLI::App& app);

}  // namespace attncache::cli
