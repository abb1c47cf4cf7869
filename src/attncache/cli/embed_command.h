// Commands that take text lines: `attncache embed` and `similarity` (embeddings out) and
// `tokenize` (token ids out).
#pragma once

#include <CLI/CLI.hpp>

namespace attncache::cli {

void add_embed_command(CLI::App& app);
void add_similarity_command(CLI::App& app);
void add_tokenize_command(CLI::App& app);

}  // namespace attncache::cli
