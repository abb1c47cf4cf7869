// Paths the tests need, fixed at configure time.
#pragma once

#include <cstdlib>
#include <string>

namespace testing_paths {

// $ATTNCACHE_SOURCE_DIR, when set, replaces the configure-time path: a test binary copied to
// another machine (the GPU tests run on a lent one) finds its data there.
inline std::string source_dir() {
  const char* moved = std::getenv("ATTNCACHE_SOURCE_DIR");
  return moved != nullptr && *moved != '\0' ? moved : ATTNCACHE_SOURCE_DIR;
}
inline std::string data_dir() { return source_dir() + "/tests/data"; }
// The real model directory that scripts/fetch-models.sh fills (tests fail, not skip, without it:
// scripts/test.sh always fetches it).
inline std::string model_dir(const std::string& name = "all-MiniLM-L6-v2") {
  return source_dir() + "/models/" + name;
}

}  // namespace testing_paths
