#include <gtest/gtest.h>

#include <fstream>
#include <nlohmann/json.hpp>

#include "attncache/model/wordpiece_tokenizer.h"
#include "core/error.h"
#include "core/json_file.h"
#include "support/temp_dir.h"
#include "support/test_paths.h"

namespace attncache {
namespace {

const WordPieceTokenizer& minilm() {
  static WordPieceTokenizer t =
      WordPieceTokenizer::from_file(testing_paths::model_dir() + "/tokenizer.json");
  return t;
}

TEST(WordPieceTokenizer, AppliesTemplateNormalizationAndWordPieces) {
  // [CLS] hello , world ! [SEP]; accents stripped, lower-cased.
  EXPECT_EQ(minilm().encode("Héllo,   WORLD!", 512).ids,
            (std::vector<int32_t>{101, 7592, 1010, 2088, 999, 102}));
  // CJK characters become words of their own.
  std::vector<int32_t> cjk = minilm().encode_words("中文");
  EXPECT_EQ(cjk.size(), 2u);
  // A word longer than max_input_chars_per_word is [UNK].
  EXPECT_EQ(minilm().encode_words(std::string(101, 'a')), (std::vector<int32_t>{100}));
  // Control characters vanish; special tokens in the raw text are kept as such.
  EXPECT_EQ(minilm().encode_words("a\x01[MASK]b"), (std::vector<int32_t>{1037, 103, 1038}));
}

TEST(WordPieceTokenizer, TruncatesKeepingTheTemplate) {
  Encoding enc = minilm().encode("one two three four five", 5);
  EXPECT_TRUE(enc.truncated);
  ASSERT_EQ(enc.ids.size(), 5u);
  EXPECT_EQ(enc.ids.front(), 101);
  EXPECT_EQ(enc.ids.back(), 102);
  EXPECT_FALSE(minilm().encode("one", 5).truncated);
  EXPECT_THROW(minilm().encode("one", 2), core::Error);
}

TEST(WordPieceTokenizer, RejectsInvalidUtf8) {
  try {
    minilm().encode("ok \xC3\x28 bad", 512);
    FAIL();
  } catch (const core::Error& e) {
    EXPECT_EQ(e.kind(), core::ErrorKind::kBadInput);
    EXPECT_NE(std::string(e.what()).find("invalid UTF-8 at byte 3"), std::string::npos) << e.what();
  }
  EXPECT_THROW(minilm().encode("\xED\xA0\x80", 512), core::Error);      // encoded surrogate
  EXPECT_THROW(minilm().encode("\xF4\x90\x80\x80", 512), core::Error);  // beyond U+10FFFF
}

std::string load_error(const nlohmann::json& json) {
  testing_support::TempDir dir;
  std::ofstream(dir.path("tokenizer.json")) << json.dump();
  try {
    WordPieceTokenizer::from_file(dir.path("tokenizer.json"));
  } catch (const core::Error& e) {
    EXPECT_EQ(e.kind(), core::ErrorKind::kBadInput);
    return e.what();
  }
  return "";
}

TEST(WordPieceTokenizer, RejectsMalformedFiles) {
  nlohmann::json good = core::read_json_file(testing_paths::model_dir() + "/tokenizer.json");
  nlohmann::json bpe = good;
  bpe["model"]["type"] = "BPE";
  EXPECT_NE(load_error(bpe).find("model type 'BPE' is not supported"), std::string::npos);
  nlohmann::json no_vocab = good;
  no_vocab["model"].erase("vocab");
  EXPECT_NE(load_error(no_vocab).find("'vocab' must be an object"), std::string::npos);
  nlohmann::json bad_id = good;
  bad_id["model"]["vocab"]["hello"] = "x";
  EXPECT_NE(load_error(bad_id).find("'hello' is not a valid id"), std::string::npos);
  nlohmann::json bad_template = good;
  bad_template["post_processor"]["single"][0]["SpecialToken"]["id"] = "[NOPE]";
  EXPECT_NE(load_error(bad_template).find("'[NOPE]' is not in the vocabulary"), std::string::npos);
  nlohmann::json odd_normalizer = good;
  odd_normalizer["normalizer"] = {{"type", "NFKC"}};
  EXPECT_NE(load_error(odd_normalizer).find("normalizer 'NFKC'"), std::string::npos);

  testing_support::TempDir dir;
  std::ofstream(dir.path("tokenizer.json")) << "{\"model\": ";
  try {
    WordPieceTokenizer::from_file(dir.path("tokenizer.json"));
    FAIL();
  } catch (const core::Error& e) {
    EXPECT_NE(std::string(e.what()).find("malformed JSON"), std::string::npos);
  }
}

TEST(WordPieceTokenizer, FingerprintChangesWithTheVocabulary) {
  nlohmann::json json = core::read_json_file(testing_paths::model_dir() + "/tokenizer.json");
  json["model"]["vocab"]["zzzz-new-token"] = 30522;
  testing_support::TempDir dir;
  std::ofstream(dir.path("tokenizer.json")) << json.dump();
  EXPECT_NE(WordPieceTokenizer::from_file(dir.path("tokenizer.json")).fingerprint(),
            minilm().fingerprint());
}

}  // namespace
}  // namespace attncache
