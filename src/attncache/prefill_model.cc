#include "attncache/prefill_model.h"

#include <filesystem>

#include "attncache/decoder.h"
#include "attncache/embedder.h"
#include "attncache/model/model_config.h"
#include "core/error.h"
#include "core/json_file.h"

namespace attncache {
namespace fs = std::filesystem;

std::unique_ptr<PrefillModel> load_prefill_model(const std::string& name_or_path) {
  if (fs::is_regular_file(name_or_path)) return Decoder::load(name_or_path);
  const std::string dir = resolve_model_dir(name_or_path);
  const fs::path config = fs::path(dir) / "config.json";
  if (!fs::exists(config)) return Decoder::load(dir);  // a directory holding a .gguf
  const nlohmann::json json = core::read_json_file(config.string());
  const std::string type =
      json.is_object() && json.contains("model_type") && json["model_type"].is_string()
          ? json["model_type"].get<std::string>()
          : "";
  if (type == "bert") return std::make_unique<Embedder>(Embedder::load(dir));
  if (type == "llama" || type == "qwen2") return Decoder::load(dir);
  core::throw_bad_input(config.string(), ": model_type '", type,
                        "' is not supported (bert: a sentence embedder; llama, qwen2: a "
                        "decoder)");
}

}  // namespace attncache
