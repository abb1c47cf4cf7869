// The byte-level BPE tokenizer read from a Hugging Face tokenizer.json: the four pipeline forms
// of tests/data/llama_hf (Llama 3, SmolLM, Qwen2, GPT-2) against transformers' ids
// (tests/data/llama_hf/make_goldens.py), the real SmolLM2 tokenizer as transformers converts it
// from the GGUF (skipped when models/SmolLM2-135M-Instruct-hf is absent), and the parts of the
// format it refuses.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <functional>
#include <map>
#include <nlohmann/json.hpp>
#include <sstream>

#include "attncache/model/bpe_tokenizer.h"
#include "core/error.h"
#include "core/json_file.h"
#include "support/gguf_metadata_writer.h"
#include "support/temp_dir.h"
#include "support/test_paths.h"

namespace attncache {
namespace {

using Type = BpeTokenizer::TokenType;

std::string data(const std::string& name) {
  return testing_paths::data_dir() + "/llama_hf/" + name;
}

const BpeTokenizer& form(const std::string& name) {
  static std::map<std::string, BpeTokenizer> loaded;
  auto it = loaded.find(name);
  if (it == loaded.end()) {
    it = loaded.emplace(name, BpeTokenizer::from_tokenizer_json(data(name + "/tokenizer.json")))
             .first;
  }
  return it->second;
}

std::string read_bytes(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::ostringstream s;
  s << in.rdbuf();
  return s.str();
}

std::vector<std::string> corpus_lines() {
  std::vector<std::string> lines;
  const std::string text = read_bytes(testing_paths::data_dir() + "/corpus.txt");
  size_t start = 0;
  for (size_t end; (end = text.find('\n', start)) != std::string::npos; start = end + 1) {
    lines.push_back(text.substr(start, end - start));
  }
  return lines;
}

TEST(BpeTokenizerJson, EveryFormMatchesTransformers) {
  const nlohmann::json golden = core::read_json_file(data("tokenizer.goldens.json"));
  const auto texts = golden["texts"].get<std::vector<std::string>>();
  for (const auto& [name, all_ids] : golden["forms"].items()) {
    const BpeTokenizer& t = form(name);
    size_t equal = 0;
    for (size_t i = 0; i < texts.size(); ++i) {
      const std::vector<int32_t> ids = t.encode(texts[i], /*add_special=*/true);
      if (ids == all_ids[i].get<std::vector<int32_t>>()) {
        ++equal;
      } else {
        ADD_FAILURE() << name << ": text " << i << " differs from transformers: '" << texts[i]
                      << "'";
      }
      if (name != "qwen2") {  // NFC changes some texts; the others decode back exactly
        EXPECT_EQ(t.decode(t.encode(texts[i], false)), texts[i]) << name;
      }
    }
    std::cout << "[ bpe json ] " << name << " (" << t.pre_type() << "): " << equal << "/"
              << texts.size() << " texts equal transformers' ids\n";
    EXPECT_EQ(equal, texts.size());
  }
}

TEST(BpeTokenizerJson, ReadsSpecialTokensAndWhenToAddThem) {
  const BpeTokenizer& llama3 = form("llama3");
  EXPECT_EQ(llama3.pre_type(), "tokenizer.json: Split, ByteLevel");
  EXPECT_EQ(llama3.vocab_size(), 767u);  // the model's embedding has a spare row (768)
  const int32_t bos = llama3.token_id("<|begin_of_text|>");
  EXPECT_EQ(bos, 1);
  EXPECT_EQ(llama3.bos_id(), bos);
  EXPECT_TRUE(llama3.add_bos());  // the post-processor's template
  EXPECT_FALSE(llama3.add_eos());
  EXPECT_EQ(llama3.eos_id(), llama3.token_id("<|endoftext|>"));
  EXPECT_EQ(llama3.token_type(llama3.token_id("<|im_start|>")), Type::kControl);
  EXPECT_EQ(llama3.token_type(llama3.token_id("[[sep]]")), Type::kUserDefined);
  EXPECT_EQ(llama3.token_type(bos + 100), Type::kNormal);
  EXPECT_EQ(llama3.encode("", true), (std::vector<int32_t>{bos}));
  // Control tokens in the text: their ids with parse_special, plain text without; user-defined
  // added tokens either way.
  const int32_t im_start = llama3.token_id("<|im_start|>");
  const int32_t sep = llama3.token_id("[[sep]]");
  std::vector<int32_t> parsed = llama3.encode("<|im_start|>a[[sep]]", false);
  EXPECT_EQ(parsed.front(), im_start);
  EXPECT_EQ(parsed.back(), sep);
  std::vector<int32_t> plain = llama3.encode("<|im_start|>a[[sep]]", false, false);
  EXPECT_EQ(std::count(plain.begin(), plain.end(), im_start), 0);
  EXPECT_EQ(plain.back(), sep);
  EXPECT_EQ(llama3.decode(plain), "<|im_start|>a[[sep]]");

  // smollm: a ByteLevel post-processor adds nothing, but tokenizer_config.json's add_bos_token
  // makes transformers add BOS.
  EXPECT_EQ(form("smollm").pre_type(), "tokenizer.json: Digits, ByteLevel");
  EXPECT_TRUE(form("smollm").add_bos());
  EXPECT_EQ(form("smollm").pre_tokenize("ab 123"),
            (std::vector<std::string_view>{"ab", " ", "1", "2", "3"}));
  EXPECT_EQ(form("qwen2").pre_type(), "tokenizer.json: NFC, Split, ByteLevel");
  EXPECT_FALSE(form("qwen2").add_bos());
  EXPECT_EQ(form("qwen2").bos_id(), -1);
  EXPECT_EQ(form("gpt2").pre_type(), "tokenizer.json: ByteLevel");
  EXPECT_TRUE(form("gpt2").add_eos());
  EXPECT_EQ(form("gpt2").encode("a", true).back(), form("gpt2").token_id("<|endoftext|>"));
}

TEST(BpeTokenizerJson, NfcComposesBeforeSplitting) {
  const BpeTokenizer& qwen2 = form("qwen2");
  EXPECT_EQ(qwen2.encode("cafe\xCC\x81", false), qwen2.encode("caf\xC3\xA9", false));
  EXPECT_EQ(qwen2.decode(qwen2.encode("cafe\xCC\x81", false)), "caf\xC3\xA9");
  // Without the normalizer the combining accent stays a character of its own.
  EXPECT_NE(form("gpt2").encode("cafe\xCC\x81", false), form("gpt2").encode("caf\xC3\xA9", false));
}

// --- The real SmolLM2 tokenizer -------------------------------------------------------------

const char* const kHfModel = "SmolLM2-135M-Instruct-hf";

#define SKIP_WITHOUT_HF_MODEL()                                                              \
  if (!std::filesystem::exists(testing_paths::model_dir(kHfModel) + "/tokenizer.json")) {    \
    GTEST_SKIP() << "models/" << kHfModel << " is absent (scripts/reference/gguf_to_hf.py)"; \
  }

// transformers converts the GGUF's tokenizer to a tokenizer.json with a plain ByteLevel
// pre-tokenizer: it drops SmolLM's digit split (tokenizer.ggml.pre = "smollm"), so its ids differ
// from llama.cpp's on some texts with digits (13 of the 2,950 corpus lines: the vocabulary has
// no multi-digit tokens, but a digit still changes how a run of spaces before it is cut). They
// equal those of the same GGUF read with llama.cpp's "gpt-2" pre-tokenizer, and transformers'.
TEST(BpeTokenizerJson, SmolLM2ConvertedByTransformersMatchesItAndTheGguf) {
  SKIP_WITHOUT_HF_MODEL();
  const BpeTokenizer hf =
      BpeTokenizer::from_tokenizer_json(testing_paths::model_dir(kHfModel) + "/tokenizer.json");
  EXPECT_EQ(hf.vocab_size(), 49152u);
  EXPECT_EQ(hf.pre_type(), "tokenizer.json: ByteLevel");
  EXPECT_FALSE(hf.add_bos());
  EXPECT_EQ(hf.token_type(1), Type::kControl);

  const std::vector<std::string> lines = corpus_lines();
  // transformers' ids of every 5th line.
  std::istringstream golden(read_bytes(data(std::string(kHfModel) + ".token_ids.txt")));
  size_t equal = 0, count = 0;
  for (size_t i = 0; i < lines.size(); i += 5) {
    std::string line;
    ASSERT_TRUE(std::getline(golden, line)) << "golden ids end before corpus line " << i;
    std::istringstream in(line);
    std::vector<int32_t> want;
    for (int32_t id; in >> id;) want.push_back(id);
    ++count;
    if (hf.encode(lines[i], false) == want) {
      ++equal;
    } else {
      ADD_FAILURE() << "corpus line " << i << " differs from transformers: " << lines[i];
    }
  }
  EXPECT_EQ(equal, count);

  // The GGUF's tokenizer with llama.cpp's "gpt-2" pre-tokenizer, and as the GGUF says ("smollm").
  const std::string gguf_path =
      testing_paths::model_dir("SmolLM2-135M-Instruct") + "/SmolLM2-135M-Instruct.Q4_1.gguf";
  const GgufFile g = GgufFile::open(gguf_path);
  const BpeTokenizer smollm = BpeTokenizer::from_gguf(g);
  testing_support::GgufMetadataWriter w;
  for (const auto& [key, value] : g.metadata()) {
    if (key.rfind("tokenizer.", 0) == 0) w.set(key, value);
  }
  w.set_string("tokenizer.ggml.pre", "gpt-2");
  testing_support::TempDir dir;
  w.write(dir.path("gpt2.gguf"));
  const BpeTokenizer gpt2 = BpeTokenizer::from_gguf(GgufFile::open(dir.path("gpt2.gguf")));
  size_t same_as_gpt2 = 0, same_as_smollm = 0, with_digits = 0;
  for (const std::string& line : lines) {
    const std::vector<int32_t> ids = hf.encode(line, false);
    same_as_gpt2 += ids == gpt2.encode(line, false);
    same_as_smollm += ids == smollm.encode(line, false);
    with_digits += line.find_first_of("0123456789") != std::string::npos;
  }
  EXPECT_EQ(same_as_gpt2, lines.size());
  EXPECT_GE(same_as_smollm, lines.size() - with_digits);
  EXPECT_LT(same_as_smollm, lines.size());  // the digit split is gone, as said above
  std::cout << "[ bpe json ] " << kHfModel << ": " << equal << "/" << count
            << " lines equal transformers' ids; " << same_as_gpt2 << "/" << lines.size()
            << " equal the GGUF's with pre 'gpt-2', " << same_as_smollm
            << " with its own pre 'smollm' (" << with_digits << " lines hold digits)\n";
}

// --- Synthetic tokenizer.json files ---------------------------------------------------------

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

// A byte-level tokenizer.json: the 256 byte characters (ids 0..255), "ab" (256) from merge
// "a b", the special token "<s>" (257), a ByteLevel pre-tokenizer and no post-processor.
nlohmann::json synthetic() {
  nlohmann::json vocab = nlohmann::json::object();
  for (int b = 0; b < 256; ++b) vocab[byte_char(b)] = b;
  vocab["ab"] = 256;
  return {{"version", "1.0"},
          {"added_tokens",
           {{{"id", 257},
             {"content", "<s>"},
             {"single_word", false},
             {"lstrip", false},
             {"rstrip", false},
             {"normalized", false},
             {"special", true}}}},
          {"normalizer", nullptr},
          {"pre_tokenizer",
           {{"type", "ByteLevel"},
            {"add_prefix_space", false},
            {"trim_offsets", true},
            {"use_regex", true}}},
          {"post_processor", nullptr},
          {"decoder", {{"type", "ByteLevel"}}},
          {"model",
           {{"type", "BPE"},
            {"dropout", nullptr},
            {"unk_token", nullptr},
            {"continuing_subword_prefix", nullptr},
            {"end_of_word_suffix", nullptr},
            {"fuse_unk", false},
            {"byte_fallback", false},
            {"ignore_merges", false},
            {"vocab", vocab},
            {"merges", nlohmann::json::array({nlohmann::json::array({"a", "b"})})}}}};
}

struct Written {
  testing_support::TempDir dir;
  std::string path;
  Written(const nlohmann::json& tokenizer, const nlohmann::json& config) {
    path = dir.path("tokenizer.json");
    std::ofstream(path) << tokenizer.dump();
    if (!config.is_null()) std::ofstream(dir.path("tokenizer_config.json")) << config.dump();
  }
};

BpeTokenizer load(const nlohmann::json& tokenizer, const nlohmann::json& config = nullptr) {
  Written w(tokenizer, config);
  return BpeTokenizer::from_tokenizer_json(w.path);
}

std::string load_error(const nlohmann::json& tokenizer, const nlohmann::json& config = nullptr) {
  try {
    load(tokenizer, config);
  } catch (const core::Error& e) {
    EXPECT_EQ(e.kind(), core::ErrorKind::kBadInput);
    return e.what();
  }
  return "no error";
}

TEST(BpeTokenizerJson, MergesAndMergeForms) {
  BpeTokenizer t = load(synthetic());
  // " ab" is one pre-token, "Ġab": Ġ, then a + b merged.
  EXPECT_EQ(t.encode("abc ab", false), (std::vector<int32_t>{256, 'c', 0x20, 256}));
  nlohmann::json legacy = synthetic();  // merges as "a b" strings, as before tokenizers 0.20
  legacy["model"]["merges"] = nlohmann::json::array({"a b"});
  EXPECT_EQ(load(legacy).encode("xab", false), (std::vector<int32_t>{'x', 256}));
  EXPECT_EQ(t.encode("a<s>b", true), (std::vector<int32_t>{'a', 257, 'b'}));
  EXPECT_FALSE(t.add_bos());  // no post-processor, no tokenizer_config.json
}

TEST(BpeTokenizerJson, SymbolsMissingFromTheVocabularyAreDroppedOrUnknown) {
  // As Hugging Face's BPE: a byte whose character is no token vanishes without an unk_token, is
  // the unknown token with one, and a run of them is one unknown token with fuse_unk.
  nlohmann::json j = synthetic();
  j["model"]["vocab"].erase("c");
  j["model"]["vocab"]["<unk>"] = static_cast<int>('c');
  EXPECT_EQ(load(j).encode("acca", false), (std::vector<int32_t>{'a', 'a'}));
  j["model"]["unk_token"] = "<unk>";
  EXPECT_EQ(load(j).encode("acca", false), (std::vector<int32_t>{'a', 'c', 'c', 'a'}));
  j["model"]["fuse_unk"] = true;
  EXPECT_EQ(load(j).encode("acca", false), (std::vector<int32_t>{'a', 'c', 'a'}));
}

TEST(BpeTokenizerJson, SplitWithALiteralString) {
  nlohmann::json j = synthetic();
  j["pre_tokenizer"] = {
      {"type", "Sequence"},
      {"pretokenizers",
       {{{"type", "Split"},
         {"pattern", {{"String", "a.b"}}},
         {"behavior", "Isolated"},
         {"invert", false}},
        {{"type", "ByteLevel"}, {"add_prefix_space", false}, {"use_regex", false}}}}};
  BpeTokenizer t = load(j);
  EXPECT_EQ(t.pre_tokenize("xa.bya-b"), (std::vector<std::string_view>{"x", "a.b", "ya-b"}));
}

TEST(BpeTokenizerJson, TemplateAndTokenizerConfigDecideBosAndEos) {
  nlohmann::json j = synthetic();
  j["post_processor"] = {
      {"type", "TemplateProcessing"},
      {"single",
       {{{"SpecialToken", {{"id", "<s>"}, {"type_id", 0}}}},
        {{"Sequence", {{"id", "A"}, {"type_id", 0}}}}}},
      {"special_tokens", {{"<s>", {{"id", "<s>"}, {"ids", {257}}, {"tokens", {"<s>"}}}}}}};
  EXPECT_EQ(load(j).encode("a", true), (std::vector<int32_t>{257, 'a'}));
  // An explicit add_bos_token / add_eos_token replaces the template, as in transformers.
  BpeTokenizer off = load(j, {{"add_bos_token", false}, {"bos_token", "<s>"}});
  EXPECT_EQ(off.encode("a", true), (std::vector<int32_t>{'a'}));
  EXPECT_EQ(off.bos_id(), 257);
  BpeTokenizer eos = load(j, {{"add_eos_token", true}, {"eos_token", {{"content", "<s>"}}}});
  EXPECT_EQ(eos.encode("a", true), (std::vector<int32_t>{'a', 257}));
  EXPECT_NE(load_error(j, {{"bos_token", "<nope>"}})
                .find("tokenizer_config.json: bos_token "
                      "'<nope>' is not in the vocabulary"),
            std::string::npos);
  j["post_processor"]["single"].push_back(j["post_processor"]["single"][0]);
  j["post_processor"]["single"].push_back(j["post_processor"]["single"][0]);
  EXPECT_NE(load_error(j).find("a TemplateProcessing 'single' template other than"),
            std::string::npos)
      << load_error(j);
}

TEST(BpeTokenizerJson, RefusesWhatItCannotRunNamingIt) {
  auto error_with = [](const std::function<void(nlohmann::json&)>& edit) {
    nlohmann::json j = synthetic();
    edit(j);
    return load_error(j);
  };
  auto expect = [](const std::string& error, const std::string& part) {
    EXPECT_NE(error.find(part), std::string::npos) << error;
    EXPECT_NE(error.find("tokenizer.json"), std::string::npos) << error;
  };
  expect(error_with([](auto& j) { j["model"]["type"] = "WordPiece"; }),
         "tokenizer model 'WordPiece' is not supported; this tokenizer runs byte-level BPE");
  expect(error_with([](auto& j) { j["model"]["type"] = "Unigram"; }), "'Unigram' is not supported");
  expect(error_with([](auto& j) { j["model"]["byte_fallback"] = true; }), "byte_fallback");
  expect(error_with([](auto& j) { j["model"]["continuing_subword_prefix"] = "##"; }),
         "continuing_subword_prefix is not supported");
  expect(error_with([](auto& j) {
           j["model"]["merges"] = nlohmann::json::array({nlohmann::json::array({"a", "q"})});
         }),
         "merge 0 ([\"a\",\"q\"]) needs 'aq', which is not in the vocabulary");
  expect(error_with([](auto& j) { j["model"]["merges"] = nlohmann::json::array({"ab"}); }),
         "merge 0 (\"ab\") is not two");
  expect(error_with([](auto& j) { j["model"]["vocab"]["zz"] = 5; }), "id 5 is given to both");
  expect(error_with([](auto& j) { j["model"]["vocab"]["zz"] = 100000; }),
         "token ids run to 100000 for 259 tokens");
  expect(error_with([](auto& j) {
           j["normalizer"] = {{"type", "NFKC"}};
         }),
         "normalizer 'NFKC' is not supported (none, or NFC)");
  expect(error_with([](auto& j) {
           j["pre_tokenizer"] = {{"type", "Metaspace"}, {"replacement", "\xE2\x96\x81"}};
         }),
         "pre-tokenizer 'Metaspace' is not supported");
  expect(error_with([](auto& j) { j["pre_tokenizer"]["add_prefix_space"] = true; }),
         "ByteLevel with add_prefix_space is not supported");
  expect(error_with([](auto& j) { j["pre_tokenizer"] = nullptr; }),
         "the pre-tokenizer has no ByteLevel step");
  expect(error_with([](auto& j) {
           j["pre_tokenizer"] = {{"type", "Sequence"},
                                 {"pretokenizers",
                                  {{{"type", "Split"},
                                    {"pattern", {{"Regex", "\\s+"}}},
                                    {"behavior", "Removed"},
                                    {"invert", false}},
                                   j["pre_tokenizer"]}}};
         }),
         "a Split pre-tokenizer with behavior 'Removed'");
  expect(error_with([](auto& j) {
           j["pre_tokenizer"] = {{"type", "Sequence"},
                                 {"pretokenizers",
                                  {{{"type", "Split"},
                                    {"pattern", {{"Regex", "(unclosed"}}},
                                    {"behavior", "Isolated"},
                                    {"invert", false}},
                                   j["pre_tokenizer"]}}};
         }),
         "pre-tokenizer pattern '(unclosed' does not compile");
  expect(error_with([](auto& j) { j["added_tokens"][0]["lstrip"] = true; }),
         "added token '<s>' sets lstrip, which is not supported");
  expect(error_with([](auto& j) {
           j["post_processor"] = {{"type", "RobertaProcessing"}};
         }),
         "post-processor 'RobertaProcessing' is not supported");
  expect(error_with([](auto& j) { j.erase("model"); }), "tokenizer model '(none)'");
}

}  // namespace
}  // namespace attncache
