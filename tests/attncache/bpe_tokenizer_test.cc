// The byte-level BPE tokenizer against llama.cpp's ids for the real SmolLM2-135M GGUF
// (tests/data/gguf/make_tokenizer_goldens.py), and its behaviour and errors on small synthetic
// vocabularies.
#include "attncache/model/bpe_tokenizer.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <map>
#include <nlohmann/json.hpp>
#include <sstream>

#include "core/error.h"
#include "support/gguf_metadata_writer.h"
#include "support/temp_dir.h"
#include "support/test_paths.h"

namespace attncache {
namespace {

using testing_support::GgufMetadataWriter;
using Type = BpeTokenizer::TokenType;

const char* const kModel = "SmolLM2-135M-Instruct";

std::string model_path() { return testing_paths::model_dir(kModel) + "/" + kModel + ".Q4_1.gguf"; }
std::string golden_path(const std::string& suffix) {
  return testing_paths::data_dir() + "/gguf/" + kModel + suffix;
}

std::string read_bytes(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::ostringstream s;
  s << in.rdbuf();
  return s.str();
}

// Lines split on "\n" alone, as the goldens script splits them.
std::vector<std::string> read_lines(const std::string& path) {
  std::vector<std::string> lines;
  std::string text = read_bytes(path);
  size_t start = 0;
  for (size_t end; (end = text.find('\n', start)) != std::string::npos; start = end + 1) {
    lines.push_back(text.substr(start, end - start));
  }
  return lines;
}

std::vector<std::vector<int32_t>> read_ids(const std::string& path) {
  std::vector<std::vector<int32_t>> out;
  for (const std::string& line : read_lines(path)) {
    std::istringstream in(line);
    out.emplace_back();
    for (int32_t id; in >> id;) out.back().push_back(id);
  }
  return out;
}

#define SKIP_WITHOUT_MODEL()                                                                 \
  if (!std::filesystem::exists(model_path())) {                                              \
    GTEST_SKIP() << model_path() << " is absent (scripts/fetch-models.sh " << kModel << ")"; \
  }

const BpeTokenizer& smollm() {
  static BpeTokenizer t = BpeTokenizer::from_gguf(GgufFile::open(model_path()));
  return t;
}

TEST(BpeTokenizerRealModel, CorpusMatchesLlamaCpp) {
  SKIP_WITHOUT_MODEL();
  const std::vector<std::string> lines = read_lines(testing_paths::data_dir() + "/corpus.txt");
  const std::vector<std::vector<int32_t>> golden = read_ids(golden_path(".token_ids.txt"));
  ASSERT_EQ(lines.size(), golden.size());
  size_t equal = 0;
  size_t tokens = 0;
  for (size_t i = 0; i < lines.size(); ++i) {
    std::vector<int32_t> ids = smollm().encode(lines[i], /*add_special=*/false);
    tokens += ids.size();
    if (ids == golden[i]) {
      ++equal;
    } else {
      ADD_FAILURE() << "corpus line " << i << " differs from llama.cpp: " << lines[i];
    }
  }
  std::cout << "[ bpe      ] " << equal << "/" << lines.size()
            << " corpus lines equal llama.cpp's ids (" << tokens << " tokens)\n";
  EXPECT_EQ(equal, lines.size());
}

TEST(BpeTokenizerRealModel, DecodeInvertsEncodeOnTheCorpus) {
  SKIP_WITHOUT_MODEL();
  for (const std::string& line : read_lines(testing_paths::data_dir() + "/corpus.txt")) {
    EXPECT_EQ(smollm().decode(smollm().encode(line, false)), line);
  }
}

TEST(BpeTokenizerRealModel, ReadsSpecialTokensAndFlags) {
  SKIP_WITHOUT_MODEL();
  const BpeTokenizer& t = smollm();
  EXPECT_EQ(t.vocab_size(), 49152u);
  EXPECT_EQ(t.pre_type(), "smollm");
  EXPECT_EQ(t.bos_id(), 1);
  EXPECT_EQ(t.eos_id(), 2);
  EXPECT_EQ(t.unk_id(), 0);
  EXPECT_EQ(t.pad_id(), 2);
  EXPECT_FALSE(t.add_bos());
  EXPECT_FALSE(t.add_eos());
  EXPECT_EQ(t.token_text(1), "<|im_start|>");
  EXPECT_EQ(t.token_type(1), Type::kControl);
  EXPECT_EQ(t.token_id("<|im_end|>"), 2);
  EXPECT_EQ(t.token_id("no such token"), -1);
  // Control tokens in the text are their ids with parse_special, plain text without.
  std::vector<int32_t> ids = t.encode("<|im_start|>user\nHi<|im_end|>", false);
  EXPECT_EQ(ids.front(), 1);
  EXPECT_EQ(ids.back(), 2);
  std::vector<int32_t> plain = t.encode("<|im_start|>user", false, /*parse_special=*/false);
  EXPECT_EQ(std::count(plain.begin(), plain.end(), 1), 0);
  EXPECT_GT(plain.size(), 3u);
  EXPECT_EQ(t.decode(plain), "<|im_start|>user");
  EXPECT_EQ(t.decode(ids), "<|im_start|>user\nHi<|im_end|>");
  // The digit split of "smollm": each digit is a pre-token of its own.
  EXPECT_EQ(t.pre_tokenize("Hello world 12345"),
            (std::vector<std::string_view>{"Hello", " world", " ", "1", "2", "3", "4", "5"}));
  EXPECT_TRUE(t.encode("", true).empty());
}

// The real model's tokenizer keys with `overrides` applied, written to `path`.
void write_variant(const nlohmann::json& overrides, const std::string& path) {
  GgufFile g = GgufFile::open(model_path());
  GgufMetadataWriter w;
  for (const auto& [key, value] : g.metadata()) {
    if (key.rfind("tokenizer.", 0) == 0) w.set(key, value);
  }
  for (const auto& [key, value] : overrides.items()) {
    if (value.is_boolean()) {
      w.set_bool(key, value.get<bool>());
    } else if (value.is_string()) {
      w.set_string(key, value.get<std::string>());
    } else if (value.at(0).is_string()) {
      w.set_strings(key, value.get<std::vector<std::string>>());
    } else {
      w.set_int32s(key, value.get<std::vector<int32_t>>());
    }
  }
  w.write(path);
}

TEST(BpeTokenizerRealModel, EdgeCasesAndOtherPreTokenizersMatchLlamaCpp) {
  SKIP_WITHOUT_MODEL();
  const nlohmann::json doc =
      nlohmann::json::parse(read_bytes(golden_path(".tokenizer_cases.json")));
  const std::vector<std::string> lines = read_lines(testing_paths::data_dir() + "/corpus.txt");
  testing_support::TempDir dir;
  std::map<std::string, BpeTokenizer> variants;
  for (const auto& [name, overrides] : doc["variants"].items()) {
    write_variant(overrides, dir.path(name + ".gguf"));
    variants.emplace(name, BpeTokenizer::from_gguf(GgufFile::open(dir.path(name + ".gguf"))));
  }
  EXPECT_EQ(variants.at("llama-bpe").pre_type(), "llama-bpe");
  EXPECT_TRUE(variants.at("smollm+bos+eos").add_bos());
  std::map<std::string, std::pair<int, int>> per_variant;  // equal, total
  for (const auto& c : doc["cases"]) {
    const std::string variant = c["variant"];
    const std::string text = c.contains("text") ? c["text"].get<std::string>()
                                                : lines.at(c["corpus_line"].get<size_t>());
    const BpeTokenizer& t = variants.at(variant);
    std::vector<int32_t> ids = t.encode(text, c["add_special"], c["parse_special"]);
    const bool equal = ids == c["ids"].get<std::vector<int32_t>>();
    EXPECT_TRUE(equal) << variant << " add_special=" << c["add_special"]
                       << " parse_special=" << c["parse_special"] << ": '" << text << "'";
    per_variant[variant].first += equal;
    per_variant[variant].second += 1;
    if (!c["add_special"].get<bool>()) {
      EXPECT_EQ(t.decode(ids), text) << variant;
    }
  }
  for (const auto& [name, counts] : per_variant) {
    std::cout << "[ bpe      ] " << name << ": " << counts.first << "/" << counts.second
              << " cases equal llama.cpp's ids\n";
  }
}

// --- Synthetic vocabularies -----------------------------------------------------------------

// GPT-2's byte alphabet character of byte b, in UTF-8.
std::string byte_char(int b) {
  auto printable = [](int x) {
    return (x >= 0x21 && x <= 0x7E) || (x >= 0xA1 && x <= 0xAC) || x >= 0xAE;
  };
  int cp = b;
  if (!printable(b)) {
    cp = 0x100;
    for (int x = 0; x < b; ++x) cp += !printable(x);
  }
  std::string out;
  if (cp < 0x80) {
    out += static_cast<char>(cp);
  } else {
    out += static_cast<char>(0xC0 | (cp >> 6));
    out += static_cast<char>(0x80 | (cp & 0x3F));
  }
  return out;
}

// A byte-level vocabulary: the 256 byte characters (ids 0..255), then `extra` tokens.
struct Synthetic {
  std::vector<std::string> tokens;
  std::vector<int32_t> types;
  GgufMetadataWriter writer;

  Synthetic(const std::vector<std::pair<std::string, Type>>& extra,
            const std::vector<std::string>& merges, const std::string& pre = "gpt-2") {
    for (int b = 0; b < 256; ++b) tokens.push_back(byte_char(b));
    types.assign(256, 1);
    for (const auto& [text, type] : extra) {
      tokens.push_back(text);
      types.push_back(static_cast<int32_t>(type));
    }
    writer.set_string("tokenizer.ggml.model", "gpt2");
    writer.set_string("tokenizer.ggml.pre", pre);
    writer.set_strings("tokenizer.ggml.tokens", tokens);
    writer.set_int32s("tokenizer.ggml.token_type", types);
    writer.set_strings("tokenizer.ggml.merges", merges);
  }
  int32_t id(const std::string& text) const {
    return static_cast<int32_t>(std::find(tokens.begin(), tokens.end(), text) - tokens.begin());
  }
  BpeTokenizer load() const {
    testing_support::TempDir dir;
    writer.write(dir.path("t.gguf"));
    return BpeTokenizer::from_gguf(GgufFile::open(dir.path("t.gguf")));
  }
  // The message of the core::Error (bad input) that loading gives, or "".
  std::string load_error() const {
    try {
      load();
    } catch (const core::Error& e) {
      EXPECT_EQ(e.kind(), core::ErrorKind::kBadInput);
      return e.what();
    }
    return "";
  }
};

TEST(BpeTokenizer, MergesLowestRankFirst) {
  // "b c" outranks "a b", so "abc" is a + bc, not ab + c.
  Synthetic s({{"bc", Type::kNormal}, {"ab", Type::kNormal}, {"abc", Type::kNormal}},
              {"b c", "a b", "ab c"});
  BpeTokenizer t = s.load();
  EXPECT_EQ(t.encode("abc", false), (std::vector<int32_t>{'a', s.id("bc")}));
  EXPECT_EQ(t.encode("ab", false), (std::vector<int32_t>{s.id("ab")}));
  // Equal ranks merge leftmost first: "bcbc" -> bc bc.
  EXPECT_EQ(t.encode("bcbc", false), (std::vector<int32_t>{s.id("bc"), s.id("bc")}));
  // A space is byte character U+0120 'Ġ' (id 0x20), part of the next word.
  EXPECT_EQ(t.encode("a b", false), (std::vector<int32_t>{'a', 0x20, 'b'}));
  EXPECT_EQ(t.decode(t.encode("a b\n\xC3\xA9", false)), "a b\n\xC3\xA9");
}

TEST(BpeTokenizer, MergedTextOutsideTheVocabularyFallsBackToBytes) {
  // "x y" makes "xy", which is no token: llama.cpp emits its bytes as one-byte tokens.
  Synthetic s({}, {"x y"});
  EXPECT_EQ(s.load().encode("xy", false), (std::vector<int32_t>{'x', 'y'}));
}

TEST(BpeTokenizer, Llama3PreTokenizerTakesWholeTokensBeforeMerging) {
  // With ignore_merges (llama3), a pre-token that is a token is taken whole even though no
  // merge builds it.
  Synthetic s({{"xyz", Type::kNormal}, {"<|begin|>", Type::kControl}}, {"x y"}, "llama-bpe");
  s.writer.set_uint32("tokenizer.ggml.bos_token_id", static_cast<uint32_t>(s.id("<|begin|>")));
  BpeTokenizer t = s.load();
  EXPECT_TRUE(t.add_bos());  // llama3's default when the file does not say
  EXPECT_EQ(t.encode("xyz", false), (std::vector<int32_t>{s.id("xyz")}));
  EXPECT_EQ(t.encode("xyz", true), (std::vector<int32_t>{s.id("<|begin|>"), s.id("xyz")}));
  // Digits go in threes.
  EXPECT_EQ(t.pre_tokenize("1234567"), (std::vector<std::string_view>{"123", "456", "7"}));
}

TEST(BpeTokenizer, SpecialTokensLongestFirstAndUserDefinedAlways) {
  Synthetic s({{"<a>", Type::kControl},
               {"<a><b>", Type::kControl},
               {"[u]", Type::kUserDefined},
               {"<b>", Type::kUnknown}},
              {});
  BpeTokenizer t = s.load();
  EXPECT_EQ(t.encode("x<a><b><a>[u]", false),
            (std::vector<int32_t>{'x', s.id("<a><b>"), s.id("<a>"), s.id("[u]")}));
  // Without parse_special only user-defined tokens are matched.
  std::vector<int32_t> plain = t.encode("<b>[u]", false, false);
  EXPECT_EQ(plain.back(), s.id("[u]"));
  EXPECT_EQ(std::count(plain.begin(), plain.end(), s.id("<b>")), 0);
  EXPECT_EQ(t.decode(plain), "<b>[u]");
}

TEST(BpeTokenizer, WhitespaceIsLlamaCppsSet) {
  BpeTokenizer t = Synthetic({}, {}).load();
  // U+180E MONGOLIAN VOWEL SEPARATOR is \s to PCRE2 but not to llama.cpp: here it is a symbol
  // that joins the space before it (PCRE2's \s would give "a", " ", "\u180e", "b").
  EXPECT_EQ(t.pre_tokenize("a \xE1\xA0\x8E"
                           "b"),
            (std::vector<std::string_view>{"a", " \xE1\xA0\x8E", "b"}));
  // U+3000 IDEOGRAPHIC SPACE is whitespace: a run before a word leaves its last character.
  EXPECT_EQ(t.pre_tokenize("a\xE3\x80\x80\xE3\x80\x80 b"),
            (std::vector<std::string_view>{"a", "\xE3\x80\x80\xE3\x80\x80", " b"}));
}

TEST(BpeTokenizer, LongRunsNeitherFailNorSplitWrongly) {
  // A megabyte of one character class: PCRE2 must not run out of (JIT) stack backtracking
  // through \s+(?!\S), and merging must stay near linear.
  for (const char* pre : {"smollm", "default", "llama-bpe", "qwen2"}) {
    Synthetic s({{"\xC4\xA0\xC4\xA0", Type::kNormal}}, {"\xC4\xA0 \xC4\xA0"}, pre);
    s.writer.set_bool("tokenizer.ggml.add_bos_token", false);
    BpeTokenizer t = s.load();
    const std::string spaces = std::string(1 << 20, ' ') + "x";
    std::vector<int32_t> ids = t.encode(spaces, false);
    EXPECT_TRUE(t.decode(ids) == spaces) << pre;
    // All but the last space (2^20 - 1: 2^19 - 1 pairs and one), then " x" (Ġ, x).
    EXPECT_EQ(t.pre_tokenize(spaces).size(), 2u) << pre;
    EXPECT_EQ(ids.size(), (1u << 19) + 2) << pre;
    for (char c : {'a', '!', '7', '\n'}) {
      const std::string run(1 << 20, c);
      EXPECT_TRUE(t.decode(t.encode(run, false)) == run) << pre << " " << int(c);
    }
  }
}

TEST(BpeTokenizer, RejectsInvalidUtf8) {
  BpeTokenizer t = Synthetic({}, {}).load();
  try {
    t.encode("ok \xC3\x28 bad", false);
    FAIL() << "expected an error";
  } catch (const core::Error& e) {
    EXPECT_EQ(e.kind(), core::ErrorKind::kBadInput);
    EXPECT_NE(std::string(e.what()).find("invalid UTF-8 at byte 3"), std::string::npos) << e.what();
  }
  EXPECT_THROW(t.encode("\xED\xA0\x80", false), core::Error);      // encoded surrogate
  EXPECT_THROW(t.encode("\xF4\x90\x80\x80", false), core::Error);  // beyond U+10FFFF
  EXPECT_THROW(t.encode("\xC0\xAF", false), core::Error);          // overlong
  EXPECT_THROW(t.encode("abc\xE2\x82", false), core::Error);       // truncated at the end
}

TEST(BpeTokenizer, RejectsIdsOutsideTheVocabularyWhenDecoding) {
  BpeTokenizer t = Synthetic({}, {}).load();
  try {
    t.decode(std::vector<int32_t>{'a', 256});
    FAIL() << "expected an error";
  } catch (const core::Error& e) {
    EXPECT_EQ(e.kind(), core::ErrorKind::kBadInput);
    EXPECT_NE(std::string(e.what()).find("token id 256 is outside the vocabulary of 256 tokens"),
              std::string::npos)
        << e.what();
  }
  EXPECT_THROW(t.decode(std::vector<int32_t>{-1}), core::Error);
}

TEST(BpeTokenizer, RejectsUnsupportedModelsAndPreTokenizers) {
  Synthetic spm({}, {});
  spm.writer.set_string("tokenizer.ggml.model", "llama");
  EXPECT_NE(spm.load_error().find("tokenizer model 'llama' (tokenizer.ggml.model) is not "
                                  "supported; this tokenizer handles byte-level BPE ('gpt2')"),
            std::string::npos)
      << spm.load_error();
  Synthetic odd({}, {}, "klingon");
  const std::string error = odd.load_error();
  EXPECT_NE(error.find("pre-tokenizer 'klingon' (tokenizer.ggml.pre) is not supported; "
                       "supported: default, gpt-2"),
            std::string::npos)
      << error;
  EXPECT_NE(error.find("smollm"), std::string::npos);
  EXPECT_NE(error.find("llama-bpe"), std::string::npos);
  EXPECT_NE(error.find("qwen2"), std::string::npos);
  // llama.cpp's name is "gpt-2"; "gpt2" is the model key's value, not a pre-tokenizer.
  EXPECT_NE(Synthetic({}, {}, "gpt2").load_error().find("pre-tokenizer 'gpt2'"), std::string::npos);
  // Without the key, llama.cpp's default pre-tokenizer.
  Synthetic old({}, {});
  old.writer.erase("tokenizer.ggml.pre");
  EXPECT_EQ(old.load().pre_type(), "default");
}

TEST(BpeTokenizer, RejectsMissingOrMalformedVocabularies) {
  Synthetic no_merges({}, {});
  no_merges.writer.erase("tokenizer.ggml.merges");
  EXPECT_NE(no_merges.load_error().find("missing metadata key 'tokenizer.ggml.merges' (the BPE "
                                        "merge list a 'gpt2' tokenizer needs)"),
            std::string::npos)
      << no_merges.load_error();
  Synthetic no_tokens({}, {});
  no_tokens.writer.erase("tokenizer.ggml.tokens");
  EXPECT_NE(no_tokens.load_error().find("missing metadata key 'tokenizer.ggml.tokens'"),
            std::string::npos);
  EXPECT_NE(Synthetic({}, {"ab"})
                .load_error()
                .find("merge 0 ('ab') in tokenizer.ggml.merges is "
                      "not two symbols separated by a space"),
            std::string::npos);
  EXPECT_NE(Synthetic({{"a", Type::kNormal}}, {})
                .load_error()
                .find("token 'a' appears twice "
                      "(ids 97 and 256)"),
            std::string::npos);
  Synthetic short_types({}, {});
  short_types.writer.set_int32s("tokenizer.ggml.token_type", {1, 1});
  EXPECT_NE(short_types.load_error().find("tokenizer.ggml.token_type must be 256 integers, one "
                                          "per token (2 int32 values)"),
            std::string::npos)
      << short_types.load_error();
  Synthetic merges_as_ints({}, {});
  merges_as_ints.writer.set_int32s("tokenizer.ggml.merges", {1});
  EXPECT_NE(merges_as_ints.load_error().find("'tokenizer.ggml.merges' is an array of int32, "
                                             "expected strings"),
            std::string::npos)
      << merges_as_ints.load_error();
  Synthetic far_bos({}, {});
  far_bos.writer.set_uint32("tokenizer.ggml.bos_token_id", 999);
  EXPECT_NE(far_bos.load_error().find("tokenizer.ggml.bos_token_id is 999, outside the "
                                      "vocabulary of 256 tokens"),
            std::string::npos);
  Synthetic bos_without_id({}, {});
  bos_without_id.writer.set_bool("tokenizer.ggml.add_bos_token", true);
  EXPECT_NE(bos_without_id.load_error().find("adds BOS but names no tokenizer.ggml.bos_token_id"),
            std::string::npos);
}

TEST(BpeTokenizer, FingerprintChangesWithMergesAndPreTokenizer) {
  const uint64_t base = Synthetic({}, {"a b"}).load().fingerprint();
  EXPECT_EQ(Synthetic({}, {"a b"}).load().fingerprint(), base);
  EXPECT_NE(Synthetic({}, {"b a"}).load().fingerprint(), base);
  EXPECT_NE(Synthetic({}, {"a b"}, "smollm").load().fingerprint(), base);
}

}  // namespace
}  // namespace attncache
