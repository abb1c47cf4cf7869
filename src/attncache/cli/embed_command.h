// `attncache embed` and `attncache similarity`: text lines in, embeddings out.
#pragma once

#include <CLI/CLI.hpp>

namespace attncache::cli {

void add_embed_command(CLI::App& app);
void add_similarity_command(CLI::App& app);

}  // namespace attncache::cli
