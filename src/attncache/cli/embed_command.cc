#include "attncache/cli/embed_command.h"

#include <omp.h>

#include <algorithm>
#include <charconv>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <iostream>
#include <memory>
#include <tuple>

#include "attncache/device_embedder.h"
#include "attncache/embedder.h"
#include "core/atomic_file.h"
#include "core/error.h"
#include "core/progress.h"
#include "core/text_lines.h"

namespace attncache::cli {
namespace {

struct EmbedOptions {
  std::string model = "all-MiniLM-L6-v2";
  std::string input = "-";
  std::string output = "-";
  int batch = 32;
  int threads = 0;
  int max_length = 0;
  bool no_truncate = false;
  bool allow_empty = false;
  std::string device = "cpu";
};

void add_common_options(CLI::App* cmd, EmbedOptions* o) {
  cmd->add_option("-m,--model", o->model,
                  "model name (resolved to models/<name>/) or a model directory")
      ->capture_default_str();
  cmd->add_option("-i,--input", o->input, "text file, one text per line; '-' reads stdin")
      ->capture_default_str();
  cmd->add_option("-b,--batch", o->batch, "texts per forward pass")
      ->capture_default_str()
      ->check(CLI::Range(1, 4096));
  cmd->add_option("-t,--threads", o->threads, "worker threads (0: all cores)")
      ->capture_default_str()
      ->check(CLI::Range(0, 1024));
  cmd->add_option("--max-length", o->max_length,
                  "maximum tokens per text, [CLS]/[SEP] included (0: the model's "
                  "sentence-transformers max_seq_length)")
      ->capture_default_str()
      ->check(CLI::Range(0, 1 << 20));
  cmd->add_flag("--no-truncate", o->no_truncate,
                "fail on texts longer than --max-length instead of truncating them");
  cmd->add_flag("--allow-empty", o->allow_empty,
                "embed empty lines (as [CLS] [SEP]) instead of rejecting them");
  cmd->add_option("--device", o->device,
                  "cpu; cuda (the GPU encoder, bf16; exit 2 without a usable GPU); auto (the GPU "
                  "when usable, else the CPU). A GPU that fails mid-run hands the rest to the CPU")
      ->capture_default_str()
      ->check(CLI::IsMember({"cpu", "cuda", "auto"}));
}

// Tokenizes and embeds every line; returns [lines × dim].
std::vector<float> embed_lines(const EmbedOptions& o, Embedder& embedder,
                               const std::vector<std::string>& lines) {
  const int model_limit = embedder.config().bert.max_position_embeddings;
  int max_tokens = o.max_length > 0 ? o.max_length : embedder.config().max_tokens();
  if (max_tokens > model_limit) {
    core::throw_bad_input("--max-length ", max_tokens, " exceeds the model's ", model_limit,
                          " positions");
  }
  std::vector<std::vector<int32_t>> ids(lines.size());
  size_t truncated = 0;
  size_t first_truncated = 0;
  for (size_t i = 0; i < lines.size(); ++i) {
    if (lines[i].empty() && !o.allow_empty) {
      core::throw_bad_input("line ", i + 1, " is empty; remove it or pass --allow-empty");
    }
    Encoding enc;
    try {
      enc = embedder.tokenize(lines[i], max_tokens);
    } catch (const core::Error& e) {
      core::throw_bad_input("line ", i + 1, ": ", e.what());
    }
    if (enc.truncated) {
      if (o.no_truncate) {
        core::throw_bad_input("line ", i + 1, " is longer than ", max_tokens,
                              " tokens (--no-truncate)");
      }
      if (truncated++ == 0) first_truncated = i + 1;
    }
    ids[i] = std::move(enc.ids);
  }
  if (truncated > 0) {
    std::fprintf(stderr,
                 "note: %zu text(s) longer than %d tokens were truncated (first: line %zu)\n",
                 truncated, max_tokens, first_truncated);
  }
  DeviceEmbedder device(embedder, parse_device(o.device));
  if (device.where() != "cpu") std::fprintf(stderr, "embedding on %s\n", device.where().c_str());
  const int d = embedder.dim();
  std::vector<float> out(lines.size() * d);
  core::Progress progress("embed", lines.size(), lines.size() >= 1000);
  for (size_t begin = 0; begin < ids.size(); begin += static_cast<size_t>(o.batch)) {
    size_t end = std::min(ids.size(), begin + static_cast<size_t>(o.batch));
    std::vector<std::vector<int32_t>> batch(ids.begin() + begin, ids.begin() + end);
    std::vector<float> e = device.embed(batch);
    std::copy(e.begin(), e.end(), out.begin() + begin * d);
    progress.advance(end - begin);
  }
  progress.finish();
  return out;
}

void append_float(std::string* out, float v) {
  char buf[32];
  auto result = std::to_chars(buf, buf + sizeof buf, v);
  out->append(buf, result.ptr);
}

Embedder load(const EmbedOptions& o) {
  if (o.threads > 0) omp_set_num_threads(o.threads);
  return Embedder::load(resolve_model_dir(o.model));
}

void run_embed(const EmbedOptions& o) {
  std::vector<std::string> lines = core::read_lines(o.input);
  Embedder embedder = load(o);
  std::vector<float> e = embed_lines(o, embedder, lines);
  const int d = embedder.dim();
  std::unique_ptr<core::AtomicFileWriter> file;
  if (o.output != "-") file = std::make_unique<core::AtomicFileWriter>(o.output);
  std::string line;
  for (size_t i = 0; i < lines.size(); ++i) {
    line = "{\"index\": " + std::to_string(i) + ", \"embedding\": [";
    for (int k = 0; k < d; ++k) {
      if (k) line += ", ";
      append_float(&line, e[i * d + k]);
    }
    line += "]}\n";
    if (file) {
      file->write(line);
    } else {
      std::fwrite(line.data(), 1, line.size(), stdout);
    }
  }
  if (file) file->commit();
}

std::string label(const std::string& text, size_t width) {
  // Cut on a UTF-8 character boundary.
  if (text.size() <= width) return text;
  size_t cut = width - 1;
  while (cut > 0 && (static_cast<unsigned char>(text[cut]) & 0xC0) == 0x80) --cut;
  return text.substr(0, cut) + "…";
}

void run_similarity(const EmbedOptions& o) {
  std::vector<std::string> lines = core::read_lines(o.input);
  if (lines.size() > 20)
    core::throw_bad_input("similarity takes at most 20 texts (got ", lines.size(), ")");
  Embedder embedder = load(o);
  std::vector<float> e = embed_lines(o, embedder, lines);
  const int d = embedder.dim();
  const size_t n = lines.size();
  auto dot = [&](size_t i, size_t j) {
    double sum = 0;
    for (int k = 0; k < d; ++k) sum += static_cast<double>(e[i * d + k]) * e[j * d + k];
    return sum;
  };
  std::vector<double> cosine(n * n);
  for (size_t i = 0; i < n; ++i) {
    for (size_t j = 0; j < n; ++j) cosine[i * n + j] = dot(i, j) / std::sqrt(dot(i, i) * dot(j, j));
  }
  std::printf("Cosine similarity (%s, %zu texts)\n\n", o.model.c_str(), n);
  for (size_t i = 0; i < n; ++i) std::printf("  [%zu] %s\n", i, lines[i].c_str());
  std::printf("\n     ");
  for (size_t j = 0; j < n; ++j) std::printf("  [%2zu]", j);
  std::printf("\n");
  for (size_t i = 0; i < n; ++i) {
    std::printf("[%2zu] ", i);
    for (size_t j = 0; j < n; ++j) std::printf(" %5.2f", cosine[i * n + j]);
    std::printf("\n");
  }
  std::printf("\nMost similar pairs:\n");
  std::vector<std::tuple<double, size_t, size_t>> pairs;
  for (size_t i = 0; i < n; ++i) {
    for (size_t j = i + 1; j < n; ++j) pairs.emplace_back(cosine[i * n + j], i, j);
  }
  std::sort(pairs.rbegin(), pairs.rend());
  for (size_t p = 0; p < std::min<size_t>(3, pairs.size()); ++p) {
    auto [sim, i, j] = pairs[p];
    std::printf("  %.3f  %s  <->  %s\n", sim, label(lines[i], 40).c_str(),
                label(lines[j], 40).c_str());
  }
}

void run_tokenize(const std::string& model, const std::string& input, int max_length) {
  std::vector<std::string> lines = core::read_lines(input);
  WordPieceTokenizer tokenizer = WordPieceTokenizer::from_file(
      (std::filesystem::path(resolve_model_dir(model)) / "tokenizer.json").string());
  const size_t max_tokens = max_length > 0 ? static_cast<size_t>(max_length) : SIZE_MAX;
  std::string out;
  for (size_t i = 0; i < lines.size(); ++i) {
    Encoding enc;
    try {
      enc = tokenizer.encode(lines[i], max_tokens);
    } catch (const core::Error& e) {
      core::throw_bad_input("line ", i + 1, ": ", e.what());
    }
    out.clear();
    for (size_t k = 0; k < enc.ids.size(); ++k) {
      if (k) out += ' ';
      out += std::to_string(enc.ids[k]);
    }
    out += '\n';
    std::fwrite(out.data(), 1, out.size(), stdout);
  }
}

}  // namespace

void add_tokenize_command(CLI::App& app) {
  struct Options {
    std::string model = "all-MiniLM-L6-v2";
    std::string input = "-";
    int max_length = 0;
  };
  auto o = std::make_shared<Options>();
  CLI::App* cmd = app.add_subcommand(
      "tokenize", "Print the token ids of each line ([CLS] … [SEP] included), space-separated.");
  cmd->add_option("-m,--model", o->model, "model name or directory")->capture_default_str();
  cmd->add_option("-i,--input", o->input, "text file, one text per line; '-' reads stdin")
      ->capture_default_str();
  cmd->add_option("--max-length", o->max_length, "truncate to this many tokens (0: no limit)")
      ->capture_default_str()
      ->check(CLI::Range(0, 1 << 30));
  cmd->callback([o] { run_tokenize(o->model, o->input, o->max_length); });
}

void add_embed_command(CLI::App& app) {
  auto options = std::make_shared<EmbedOptions>();
  CLI::App* cmd = app.add_subcommand(
      "embed",
      "Embed texts (one per line) with a sentence-transformers BERT model; writes JSONL lines\n"
      "{\"index\": i, \"embedding\": [...]} in input order.");
  add_common_options(cmd, options.get());
  cmd->add_option("-o,--output", options->output,
                  "JSONL output file, written atomically; '-' writes stdout")
      ->capture_default_str();
  cmd->callback([options] { run_embed(*options); });
}

void add_similarity_command(CLI::App& app) {
  auto options = std::make_shared<EmbedOptions>();
  CLI::App* cmd = app.add_subcommand(
      "similarity", "Embed up to 20 texts (one per line) and print their cosine-similarity table.");
  add_common_options(cmd, options.get());
  cmd->callback([options] { run_similarity(*options); });
}

}  // namespace attncache::cli
