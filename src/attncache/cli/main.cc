// attncache: prefill-only transformer inference with attention-map memoization.
#include <CLI/CLI.hpp>
#include <cstdio>
#include <exception>

#include "attncache/cli/embed_command.h"
#include "attncache/cli/memo_command.h"
#include "core/error.h"

int main(int argc, char** argv) {
  CLI::App app(
      "attncache: prefill-only transformer inference (embeddings) on the CPU, with hooks to\n"
      "record and reuse attention maps: `build` makes an attention-map database from a corpus,\n"
      "`eval` measures AttnCache (reuse of the nearest stored input's maps) on queries.\n\n"
      "Models are Hugging Face directories (config.json, model.safetensors, tokenizer.json,\n"
      "sentence-transformers pooling files); a bare name resolves to models/<name>/, which\n"
      "scripts/fetch-models.sh fills.\n\n"
      "Exit codes: 0 ok, 1 internal failure, 2 bad input or usage.");
  app.require_subcommand(1);
  attncache::cli::add_embed_command(app);
  attncache::cli::add_similarity_command(app);
  attncache::cli::add_tokenize_command(app);
  attncache::cli::add_build_command(app);
  attncache::cli::add_eval_command(app);
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    int code = app.exit(e);
    return code == 0 ? 0 : 2;
  } catch (const core::Error& e) {
    std::fprintf(stderr, "attncache: error: %s\n", e.what());
    return e.exit_code();
  } catch (const std::exception& e) {
    std::fprintf(stderr, "attncache: internal error: %s\n", e.what());
    return 1;
  }
  return 0;
}
