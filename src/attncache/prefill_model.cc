#include "attncache/prefill_model.h"

#include <filesystem>

#include "attncache/decoder.h"
#include "attncache/embedder.h"
#include "attncache/model/model_config.h"

namespace attncache {
namespace fs = std::filesystem;

std::unique_ptr<PrefillModel> load_prefill_model(const std::string& name_or_path) {
  if (fs::is_regular_file(name_or_path)) return Decoder::load(name_or_path);
  const std::string dir = resolve_model_dir(name_or_path);
  if (fs::exists(fs::path(dir) / "config.json")) {
    return std::make_unique<Embedder>(Embedder::load(dir));
  }
  return Decoder::load(dir);
}

}  // namespace attncache
