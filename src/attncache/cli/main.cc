// attncache: prefill-only transformer inference with attention-map memoization.
#include <CLI/CLI.hpp>
#include <cstdio>
#include <exception>

#include "attncache/cli/embed_command.h"
#include "attncache/cli/memo_command.h"
#include "attncache/cli/score_command.h"
#include "attncache/cli/serve_command.h"
#include "core/error.h"

int main(int argc, char** argv) {
  CLI::App app(
      "attncache: prefill-only transformer inference on the CPU (sentence embeddings with BERT\n"
      "encoders; multiple-choice and log-likelihood scoring with Llama-family decoders), with\n"
      "hooks to record and reuse attention maps: `build` makes an attention-map database from a\n"
      "corpus, `eval` measures AttnCache (reuse of the nearest stored input's maps) on queries,\n"
      "`score` runs decoder tasks with exact, prefix-KV and AttnCache paths side by side,\n"
      "`serve` answers OpenAI-style embeddings and scoring requests over HTTP.\n\n"
      "Encoders are Hugging Face directories (config.json, model.safetensors, tokenizer.json,\n"
      "sentence-transformers pooling files); decoders are GGUF files or Hugging Face Llama /\n"
      "Qwen2 directories (config.json, safetensors, tokenizer.json). A bare name resolves to\n"
      "models/<name>/, which scripts/fetch-models.sh fills.\n\n"
      "Exit codes: 0 ok, 1 internal failure, 2 bad input or usage.");
  app.require_subcommand(1);
  attncache::cli::add_embed_command(app);
  attncache::cli::add_similarity_command(app);
  attncache::cli::add_tokenize_command(app);
  attncache::cli::add_build_command(app);
  attncache::cli::add_eval_command(app);
  attncache::cli::add_score_command(app);
  attncache::cli::add_serve_command(app);
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
