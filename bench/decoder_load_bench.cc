// Host time of loading a decoder for the GPU, no GPU needed: the CPU model from a GGUF file or
// a Hugging Face directory (fp32, the GPU model's fall-back), then the bf16 weight image that
// CudaLlamaModel::create uploads, laid out as it lays it out (measured, then written once).
//
//   decoder_load_bench MODEL [--repeat N]
//
// A checkpoint to try: bench/make_random_llama.py DIR (Llama-3.2-1B-shaped, random bf16).
#include <CLI/CLI.hpp>
#include <cstdio>

#include "attncache/model/cuda_forward.h"
#include "attncache/model/llama.h"
#include "core/error.h"
#include "core/stopwatch.h"

using attncache::cuda_forward::WeightImage;

int main(int argc, char** argv) {
  CLI::App app("Time loading a decoder for the GPU on the host (CPU model, then bf16 image).");
  std::string model;
  int repeat = 3;
  app.add_option("model", model, "GGUF file or Hugging Face directory")->required();
  app.add_option("--repeat", repeat, "loads to time")->check(CLI::Range(1, 100));
  CLI11_PARSE(app, argc, argv);
  try {
    for (int i = 0; i < repeat; ++i) {
      core::Stopwatch load_time;
      const auto host = attncache::LlamaModel::load(model);
      const double load_s = load_time.seconds();
      core::Stopwatch image_time;
      // The tensors CudaLlamaModel::create adds, in its order.
      auto lay_out = [&](WeightImage& image) {
        image.add_bf16(host->token_embedding());
        image.add_f32(host->output_norm());
        if (host->lm_head().data() != host->token_embedding().data()) {
          image.add_bf16(host->lm_head());
        }
        for (const auto& l : host->layers()) {
          image.add_f32(l.attn_norm);
          image.add_bf16(l.qkv_w);
          if (!l.qkv_b.empty()) image.add_bf16(l.qkv_b);
          image.add_bf16(l.o_w);
          image.add_f32(l.ffn_norm);
          image.add_bf16(l.gate_up_w);
          image.add_bf16(l.down_w);
        }
      };
      WeightImage measured;
      lay_out(measured);
      WeightImage image(measured.size());
      lay_out(image);
      std::printf("load %.2f s, bf16 image %.2f s (%.2f GB)\n", load_s, image_time.seconds(),
                  static_cast<double>(image.size()) / 1e9);
    }
    return 0;
  } catch (const core::Error& e) {
    std::fprintf(stderr, "decoder_load_bench: %s\n", e.what());
    return e.exit_code();
  }
}
