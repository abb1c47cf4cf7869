// Times the byte-level BPE tokenizer on a text file, one line at a time, on one thread, and
// reports throughput. Driven by bench/tokenize_compare.py, which times llama.cpp and Hugging Face
// tokenizers on the same lines.
//
//   tokenize_bench --gguf FILE --corpus FILE [--min-seconds S] [--ids-out FILE]
//
// Prints one JSON object; --ids-out writes the ids of each line (space-separated, a line each).
#include <CLI/CLI.hpp>
#include <cstdio>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "attncache/model/bpe_tokenizer.h"
#include "core/error.h"
#include "core/stopwatch.h"

int main(int argc, char** argv) {
  CLI::App app("Time the BPE tokenizer of a GGUF model on a text file; prints JSON.");
  std::string gguf_path, corpus_path, ids_out;
  double min_seconds = 3.0;
  app.add_option("--gguf", gguf_path, "GGUF model file")->required();
  app.add_option("--corpus", corpus_path, "text, one input per line")->required();
  app.add_option("--min-seconds", min_seconds, "keep timing at least this long");
  app.add_option("--ids-out", ids_out, "write each line's ids here");
  CLI11_PARSE(app, argc, argv);
  try {
    std::ifstream in(corpus_path, std::ios::binary);
    if (!in) core::throw_bad_input("cannot open ", corpus_path);
    std::vector<std::string> lines;
    size_t bytes = 0;
    for (std::string line; std::getline(in, line);) {
      bytes += line.size();
      lines.push_back(std::move(line));
    }
    core::Stopwatch load;
    const auto tokenizer = attncache::BpeTokenizer::from_gguf(attncache::GgufFile::open(gguf_path));
    const double load_seconds = load.seconds();

    size_t tokens = 0;
    std::ofstream ids_file;
    if (!ids_out.empty()) ids_file.open(ids_out);
    for (const std::string& line : lines) {  // also warms up
      const std::vector<int32_t> ids = tokenizer.encode(line, false);
      tokens += ids.size();
      if (!ids_out.empty()) {
        for (size_t i = 0; i < ids.size(); ++i) ids_file << (i ? " " : "") << ids[i];
        ids_file << "\n";
      }
    }
    int passes = 0;
    core::Stopwatch watch;
    while (passes == 0 || watch.seconds() < min_seconds) {
      for (const std::string& line : lines) {
        const std::vector<int32_t> ids = tokenizer.encode(line, false);
        asm volatile("" : : "r"(ids.data()) : "memory");  // keep the work
      }
      ++passes;
    }
    const double seconds = watch.seconds() / passes;
    nlohmann::json out = {
        {"implementation", "attncache BpeTokenizer"},
        {"pre_tokenizer", tokenizer.pre_type()},
        {"lines", lines.size()},
        {"bytes", bytes},
        {"tokens", tokens},
        {"passes", passes},
        {"load_seconds", load_seconds},
        {"seconds_per_pass", seconds},
        {"mb_per_second", bytes / seconds / 1e6},
        {"tokens_per_second", tokens / seconds},
    };
    std::printf("%s\n", out.dump(2).c_str());
  } catch (const core::Error& e) {
    std::fprintf(stderr, "tokenize_bench: %s\n", e.what());
    return e.exit_code();
  }
  return 0;
}
