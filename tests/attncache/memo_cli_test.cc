// `attncache build` and `attncache eval` as a user runs them: the report's fields, and every
// kind of bad database or query input giving a clear message and exit code 2; a build killed
// with SIGKILL leaving the previous database intact.
#include <gtest/gtest.h>
#include <signal.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <thread>

#include "attncache/device_embedder.h"
#include "core/text_lines.h"
#include "support/run_cli.h"
#include "support/temp_dir.h"
#include "support/test_paths.h"

namespace attncache {
namespace {

namespace fs = std::filesystem;
using testing_support::CliResult;
using testing_support::run_cli;

void write_lines(const std::string& path, size_t first, size_t count) {
  const auto lines = core::read_lines(testing_paths::data_dir() + "/corpus.txt");
  std::ofstream out(path);
  for (size_t i = first; i < first + count; ++i) out << lines[i] << "\n";
}

class MemoCliTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    dir_ = new testing_support::TempDir();
    write_lines(dir_->path("corpus.txt"), 0, 40);
    // Queries: held-out lines plus exact repeats of stored ones.
    write_lines(dir_->path("queries.txt"), 40, 12);
    write_lines(dir_->path("repeats.txt"), 0, 4);
    std::ofstream(dir_->path("queries.txt"), std::ios::app)
        << std::ifstream(dir_->path("repeats.txt")).rdbuf();
    const CliResult r = build(dir_->path("db"));
    ASSERT_EQ(r.exit_code, 0) << r.output;
  }
  static void TearDownTestSuite() { delete dir_; }

  static CliResult build(const std::string& db, const std::string& corpus = "",
                         const std::string& extra = "") {
    return run_cli("build --model " + testing_paths::model_dir() + " --corpus " +
                   (corpus.empty() ? dir_->path("corpus.txt") : corpus) + " --db " + db +
                   " --max-length 64 " + extra);
  }
  static CliResult eval(const std::string& db, const std::string& extra = "") {
    return run_cli("eval --model " + testing_paths::model_dir() + " --db " + db + " --queries " +
                   dir_->path("queries.txt") + " " + extra);
  }
  // A copy of the built database to damage.
  std::string copy_db() {
    const std::string copy = dir_->path("copy-" + std::to_string(++copies_));
    fs::copy(dir_->path("db"), copy);
    return copy;
  }
  static std::string file_in(const std::string& db, const std::string& prefix) {
    for (const auto& f : fs::directory_iterator(db)) {
      if (f.path().filename().string().rfind(prefix, 0) == 0) return f.path().string();
    }
    return "";
  }
  void expect_bad_input(const CliResult& r, const std::string& message) {
    EXPECT_EQ(r.exit_code, 2) << r.output;
    EXPECT_NE(r.output.find(message), std::string::npos) << r.output;
    EXPECT_EQ(r.output.find("internal error"), std::string::npos) << r.output;
  }

  static testing_support::TempDir* dir_;
  static int copies_;
};
testing_support::TempDir* MemoCliTest::dir_ = nullptr;
int MemoCliTest::copies_ = 0;

TEST_F(MemoCliTest, EvalReportsEveryField) {
  const CliResult r = eval(dir_->path("db"), "--json " + dir_->path("report.json"));
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_NE(r.output.find("hit rate"), std::string::npos);
  const nlohmann::json j = nlohmann::json::parse(std::ifstream(dir_->path("report.json")));
  EXPECT_EQ(j["queries"], 16);
  // The four exact repeats of stored inputs hit (their own maps) and keep full fidelity.
  EXPECT_GE(j["hits"].get<int>(), 4);
  EXPECT_GT(j["fidelity"]["cosine_on_hits"]["min"].get<double>(), 0.99);
  EXPECT_DOUBLE_EQ(j["exact_result_cache_hit_rate"].get<double>(), 4.0 / 16);
  for (const char* path :
       {"exact", "attncache", "exact_result_cache", "exact_result_cache_then_attncache"}) {
    EXPECT_GT(j["timing"][path]["seconds"].get<double>(), 0) << path;
  }
  EXPECT_GT(j["per_hit"]["attention_speedup"].get<double>(), 0);
  EXPECT_GT(j["per_hit_batch1"]["end_to_end_speedup"].get<double>(), 0);
  EXPECT_GT(j["database"]["bytes_per_entry"].get<double>(), 0);
  EXPECT_FALSE(j["sweep"].empty());
  EXPECT_EQ(j["fidelity"]["recall_at_k"], 10);
}

TEST_F(MemoCliTest, DatabaseOfAnotherModelIsRejected) {
  // The same architecture with one weight changed: a different fingerprint.
  const std::string model = dir_->path("other-model");
  fs::copy(testing_paths::model_dir(), model, fs::copy_options::recursive);
  {
    std::fstream f(model + "/model.safetensors", std::ios::in | std::ios::out | std::ios::binary);
    f.seekp(-4, std::ios::end);
    f.put('\x3f');
  }
  const CliResult r = run_cli("eval --model " + model + " --db " + dir_->path("db") +
                              " --queries " + dir_->path("queries.txt"));
  expect_bad_input(r, "built for a different model: weights_crc32");
}

TEST_F(MemoCliTest, TruncatedOrCorruptDatabasesAreRejected) {
  std::string db = copy_db();
  fs::resize_file(file_in(db, "maps-"), fs::file_size(file_in(db, "maps-")) / 2);
  expect_bad_input(eval(db), "truncated");

  db = copy_db();
  {
    std::fstream f(file_in(db, "maps-"), std::ios::in | std::ios::out | std::ios::binary);
    f.seekp(4096);
    f.put('\x7f');
  }
  expect_bad_input(eval(db), "is corrupt (checksum mismatch)");

  db = copy_db();
  fs::resize_file(file_in(db, "index-"), 100);
  expect_bad_input(eval(db), "missing, truncated or corrupt");

  db = copy_db();
  std::ofstream(db + "/db.json") << "{\"format\": \"attncache-memo-db\", ";
  expect_bad_input(eval(db), "db.json");

  db = copy_db();
  fs::remove(file_in(db, "projector-"));
  expect_bad_input(eval(db), "cannot open");
}

TEST_F(MemoCliTest, FormatVersionMismatchIsRejected) {
  const std::string db = copy_db();
  nlohmann::json m = nlohmann::json::parse(std::ifstream(db + "/db.json"));
  m["version"] = 99;
  std::ofstream(db + "/db.json") << m.dump();
  expect_bad_input(eval(db), "format version 99");
}

// P4 maps exist for causal decoders only: a build of the (bidirectional) encoder's maps as P4,
// and a manifest that claims P4 for its maps, are refused naming P4.
TEST_F(MemoCliTest, P4MapsOfABidirectionalModelAreRejected) {
  expect_bad_input(build(dir_->path("db-p4"), "", "--map-dtype P4"),
                   "P4 maps are for causal decoders only");
  EXPECT_FALSE(fs::exists(dir_->path("db-p4") + "/db.json"));
  const std::string db = copy_db();
  nlohmann::json m = nlohmann::json::parse(std::ifstream(db + "/db.json"));
  m["map_dtype"] = "P4";
  std::ofstream(db + "/db.json") << m.dump();
  expect_bad_input(eval(db), "P4 maps in a database of bidirectional maps");
}

TEST_F(MemoCliTest, EmptyDatabaseAndEmptyCorpusAreRejected) {
  fs::create_directories(dir_->path("empty-db"));
  expect_bad_input(eval(dir_->path("empty-db")), "not an AttnCache database");
  expect_bad_input(eval(dir_->path("no-such-db")), "does not exist");
  std::ofstream(dir_->path("blank.txt")) << "\n  \n";
  expect_bad_input(build(dir_->path("db-blank"), dir_->path("blank.txt")), "no non-empty lines");
  EXPECT_FALSE(fs::exists(dir_->path("db-blank") + "/db.json"));
}

TEST_F(MemoCliTest, BadCorpusAndDatabasePathsAreRejected) {
  std::ofstream(dir_->path("bad-utf8.txt")) << "fine line\nbad \xff\xfe bytes\n";
  expect_bad_input(build(dir_->path("db-utf8"), dir_->path("bad-utf8.txt")), "corpus line 2");
  expect_bad_input(build(dir_->path("db-x"), dir_->path("no-such-corpus.txt")),
                   "no-such-corpus.txt");
  std::ofstream(dir_->path("a-file")) << "x";
  expect_bad_input(build(dir_->path("a-file")), "cannot create the database directory");
}

TEST_F(MemoCliTest, QueriesLongerThanEveryStoredInputAreRejected) {
  std::ofstream(dir_->path("short.txt")) << "One.\nTwo words.\nThree short words.\n";
  ASSERT_EQ(build(dir_->path("db-short"), dir_->path("short.txt")).exit_code, 0);
  std::ofstream(dir_->path("long.txt")) << "Two words.\nA query with many more tokens than any.\n";
  const std::string args = "eval --model " + testing_paths::model_dir() + " --db " +
                           dir_->path("db-short") + " --queries " + dir_->path("long.txt");
  expect_bad_input(run_cli(args), "line 2 has 12 tokens but the longest stored input has 6");
  EXPECT_EQ(run_cli(args + " --allow-longer").exit_code, 0);
}

TEST_F(MemoCliTest, ThresholdOutOfRangeIsRejected) {
  expect_bad_input(eval(dir_->path("db"), "--threshold 1.5"), "out of range");
  expect_bad_input(eval(dir_->path("db"), "--threshold -1"), "out of range");
}

// `build --device`: the maps recorded on the GPU where one is usable; without one, cuda is
// refused and auto builds on the CPU.
TEST_F(MemoCliTest, GpuBuildNeedsAGpuAndAutoBuildsOnTheCpuWithoutOne) {
  expect_bad_input(build(dir_->path("db-tpu"), "", "--device tpu"), "--device");
  if (attncache::cuda_device_count() > 0) {
    const CliResult gpu = build(dir_->path("db-gpu"), "", "--device cuda");
    EXPECT_EQ(gpu.exit_code, 0) << gpu.output;
    EXPECT_NE(gpu.output.find("recording maps on"), std::string::npos) << gpu.output;
    return;
  }
  expect_bad_input(build(dir_->path("db-cuda"), "", "--device cuda"), "CUDA");
  EXPECT_FALSE(fs::exists(dir_->path("db-cuda") + "/db.json"));
  const CliResult cpu = build(dir_->path("db-auto"), "", "--device auto");
  EXPECT_EQ(cpu.exit_code, 0) << cpu.output;
  EXPECT_NE(cpu.output.find("running on the CPU"), std::string::npos) << cpu.output;
  EXPECT_EQ(eval(dir_->path("db-auto"), "--threshold 0.9").exit_code, 0);
}

// The GPU path's refusals, and auto's fall-back to the CPU; its measurements run on a GPU
// machine (scripts/cuda/device_run.sh).
TEST_F(MemoCliTest, GpuEvalNeedsThePaperRuleAndAGpu) {
  expect_bad_input(eval(dir_->path("db"), "--device cuda"), "--paper drops it");
  expect_bad_input(eval(dir_->path("db"), "--device tpu"), "--device");
  const CliResult layer0 = eval(dir_->path("db"), "--device auto");
  EXPECT_EQ(layer0.exit_code, 0) << layer0.output;
  EXPECT_NE(layer0.output.find("--device auto: running on the CPU (AttnCache's layer-0 check"),
            std::string::npos)
      << layer0.output;
  if (attncache::cuda_device_count() == 0) {
    expect_bad_input(eval(dir_->path("db"), "--device cuda --paper"), "CUDA");
    const CliResult paper = eval(dir_->path("db"), "--device auto --paper");
    EXPECT_EQ(paper.exit_code, 0) << paper.output;
    EXPECT_NE(paper.output.find("running on the CPU"), std::string::npos) << paper.output;
  }
}

TEST_F(MemoCliTest, KilledBuildLeavesThePreviousDatabase) {
  const std::string db = copy_db();
  write_lines(dir_->path("big.txt"), 0, 600);
  const std::string cmd = std::string(ATTNCACHE_BINARY) + " build --model " +
                          testing_paths::model_dir() + " --corpus " + dir_->path("big.txt") +
                          " --db " + db + " --max-length 64";
  const pid_t pid = fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) {
    execl("/bin/sh", "sh", "-c", ("exec " + cmd + " > /dev/null 2>&1").c_str(), nullptr);
    _exit(127);
  }
  // Kill it while it writes its new map file.
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(60);
  bool writing = false;
  while (!writing && std::chrono::steady_clock::now() < deadline) {
    for (const auto& f : fs::directory_iterator(db)) {
      if (f.path().filename().string().find(".tmp.") != std::string::npos &&
          fs::file_size(f.path()) > (1u << 20)) {
        writing = true;
      }
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  kill(pid, SIGKILL);
  int status = 0;
  waitpid(pid, &status, 0);
  ASSERT_TRUE(writing) << "the build never started writing";
  ASSERT_TRUE(WIFSIGNALED(status));
  const CliResult r = eval(db, "--json " + dir_->path("after-kill.json"));
  ASSERT_EQ(r.exit_code, 0) << r.output;
  const nlohmann::json j = nlohmann::json::parse(std::ifstream(dir_->path("after-kill.json")));
  EXPECT_EQ(j["database"]["entries"], 40);  // the old database, whole
  // The next build cleans up what the killed one left.
  ASSERT_EQ(build(db).exit_code, 0);
  for (const auto& f : fs::directory_iterator(db)) {
    EXPECT_EQ(f.path().filename().string().find(".tmp."), std::string::npos) << f.path();
  }
}

}  // namespace
}  // namespace attncache
