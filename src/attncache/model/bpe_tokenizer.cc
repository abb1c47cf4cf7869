#include "attncache/model/bpe_tokenizer.h"

#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>
#include <utf8proc.h>

#include <algorithm>
#include <cctype>
#include <cstdlib>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <queue>

#include "core/error.h"
#include "core/json_file.h"

namespace attncache {
namespace {

constexpr const char* kTokensKey = "tokenizer.ggml.tokens";
constexpr const char* kMergesKey = "tokenizer.ggml.merges";
constexpr const char* kTypesKey = "tokenizer.ggml.token_type";

// The pre-tokenizer expressions, as llama.cpp's src/llama-vocab.cpp writes them. llama.cpp runs
// the GPT-2, Llama-3 and Qwen2 ones as hand-written scanners and the rest through std::regex on
// text with each code point collapsed to its category; both agree with these expressions run by
// PCRE2 once the character classes mean what llama.cpp's tables say (see to_pcre2).
constexpr const char* kGpt2 =
    "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)";
constexpr const char* kLlama3 =
    "(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|"
    "\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";
constexpr const char* kQwen2 =
    "(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|"
    "\\p{N}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";

// What \s matches in llama.cpp (unicode_set_whitespace: Python's and Rust's \s). PCRE2's \s
// under UCP also matches U+180E.
constexpr const char* kWhitespace =
    "\\x{9}-\\x{D}\\x{20}\\x{85}\\x{A0}\\x{1680}\\x{2000}-\\x{200A}\\x{2028}\\x{2029}\\x{202F}"
    "\\x{205F}\\x{3000}";
// llama.cpp's category tables follow Unicode 15.1; Debian's PCRE2 10.42 follows Unicode 14. These
// are the letters, numbers and punctuation assigned since (5,033 code points, all outside the
// BMP: Kawi, Nag Mundari, Kaktovik numerals, CJK extensions H and I, ...), so that the two agree
// on every code point (checked over all of them). With a PCRE2 on Unicode 15.1 they are
// redundant; one on a later Unicode than llama.cpp's tables would disagree on the newest ones.
constexpr const char* kLettersSince14 =
    "\\x{1123F}-\\x{11240}\\x{11F02}\\x{11F04}-\\x{11F10}\\x{11F12}-\\x{11F33}\\x{1342F}"
    "\\x{13441}-\\x{13446}\\x{1B132}\\x{1B155}\\x{1DF25}-\\x{1DF2A}\\x{1E030}-\\x{1E06D}"
    "\\x{1E4D0}-\\x{1E4EB}\\x{2B739}\\x{2EBF0}-\\x{2EE5D}\\x{31350}-\\x{323AF}";
constexpr const char* kNumbersSince14 =
    "\\x{11F50}-\\x{11F59}\\x{1D2C0}-\\x{1D2D3}\\x{1E4F0}-\\x{1E4F9}";
constexpr const char* kPunctuationSince14 = "\\x{11B00}-\\x{11B09}\\x{11F43}-\\x{11F4F}";

struct PreSpec {
  std::vector<const char*> names;  // values of tokenizer.ggml.pre
  std::vector<const char*> patterns;
  bool ignore_merges = false;
  bool add_bos = false;  // the default when the file has no add_bos_token
};

// The pre-tokenizers implemented, grouped as llama.cpp groups them (names of models whose only
// difference lies in decoding are included; those with other encode-time quirks are not).
const std::vector<PreSpec>& pre_specs() {
  static const std::vector<PreSpec> specs = {
      {{"default"},
       {"[\\p{P}\\$\\+<=>\\^~\\|]+", kGpt2, "\\p{N}+", "[0-9][0-9][0-9]"},
       false,
       false},
      {{"gpt-2", "phi-2", "mpt", "olmo", "jais", "gigachat", "exaone4"}, {kGpt2}, false, false},
      {{"smollm", "starcoder", "refact", "command-r", "codeshell", "exaone", "minerva-7b",
        "mellum2"},
       {"\\p{N}", kGpt2},
       false,
       false},
      {{"llama3", "llama-v3", "llama-bpe", "falcon3", "falcon-h1", "pixtral", "midm-2.0", "lfm2"},
       {kLlama3},
       true,
       true},
      {{"dbrx", "smaug-bpe"}, {kLlama3}, false, false},
      {{"qwen2", "deepseek-r1-qwen", "stablelm2", "megrez", "hunyuan"}, {kQwen2}, false, false},
  };
  return specs;
}

std::string supported_pre_names() {
  std::string out;
  for (const PreSpec& spec : pre_specs()) {
    for (const char* name : spec.names) out += (out.empty() ? "" : ", ") + std::string(name);
  }
  return out;
}

// Rewrites \s, \S, \p{L}, \p{N} and \p{P} as the sets llama.cpp's tables define (the lists
// above), inside character classes or as classes of their own. `source` names the file a pattern
// came from (errors are then bad input), or is empty for the built-in ones.
std::string to_pcre2(std::string_view pattern, const std::string& source) {
  struct Set {
    std::string_view escape;
    std::string members;
  };
  const Set sets[] = {{"\\s", kWhitespace},
                      {"\\p{L}", std::string("\\p{L}") + kLettersSince14},
                      {"\\p{N}", std::string("\\p{N}") + kNumbersSince14},
                      {"\\p{P}", std::string("\\p{P}") + kPunctuationSince14}};
  std::string out;
  bool in_class = false;
  for (size_t i = 0; i < pattern.size(); ++i) {
    const std::string_view rest = pattern.substr(i);
    if (rest.starts_with("\\S")) {
      if (in_class && source.empty()) {
        core::throw_internal("\\S inside a character class: ", pattern);
      }
      if (in_class) {
        core::throw_bad_input(source, ": pre-tokenizer pattern '", pattern,
                              "' has \\S inside a character class, which is not supported");
      }
      out += "[^";
      out += kWhitespace;
      out += ']';
      ++i;
      continue;
    }
    const Set* set = nullptr;
    for (const Set& s : sets) {
      if (rest.starts_with(s.escape)) set = &s;
    }
    if (set != nullptr) {
      if (!in_class) out += '[';
      out += set->members;
      if (!in_class) out += ']';
      i += set->escape.size() - 1;
      continue;
    }
    if (rest[0] == '\\' && rest.size() > 1) {  // any other escape, kept whole
      out += rest.substr(0, 2);
      ++i;
      continue;
    }
    if (rest[0] == '[' && !in_class) in_class = true;
    if (rest[0] == ']' && in_class) in_class = false;
    out += rest[0];
  }
  return out;
}

// GPT-2's byte alphabet (bytes_to_unicode): printable Latin-1 bytes stand for themselves, the
// other 68 for U+0100 onwards, so every byte string is a string of printable characters.
char32_t byte_to_char(uint8_t b) {
  if ((b >= 0x21 && b <= 0x7E) || (b >= 0xA1 && b <= 0xAC) || b >= 0xAE) return b;
  int n = 0;
  for (int x = 0; x < b; ++x) {
    if (!((x >= 0x21 && x <= 0x7E) || (x >= 0xA1 && x <= 0xAC) || x >= 0xAE)) ++n;
  }
  return static_cast<char32_t>(0x100 + n);
}

void append_utf8(char32_t c, std::string* out) {
  utf8proc_uint8_t buf[4];
  utf8proc_ssize_t n = utf8proc_encode_char(static_cast<utf8proc_int32_t>(c), buf);
  out->append(reinterpret_cast<const char*>(buf), static_cast<size_t>(n));
}

// Throws core::Error (bad input) at the first byte that does not start a valid UTF-8 character
// (overlong forms, surrogates and code points past U+10FFFF included).
void check_utf8(std::string_view text) {
  const auto* p = reinterpret_cast<const utf8proc_uint8_t*>(text.data());
  size_t offset = 0;
  while (offset < text.size()) {
    if (p[offset] < 0x80) {  // ASCII runs are most text; skip utf8proc for them
      ++offset;
      continue;
    }
    utf8proc_int32_t cp;
    utf8proc_ssize_t n =
        utf8proc_iterate(p + offset, static_cast<utf8proc_ssize_t>(text.size() - offset), &cp);
    if (n <= 0 || cp < 0) core::throw_bad_input("invalid UTF-8 at byte ", offset);
    offset += static_cast<size_t>(n);
  }
}

// `text` (valid UTF-8) in Unicode normalization form C.
void nfc(std::string_view text, std::string* out) {
  if (std::all_of(text.begin(), text.end(), [](char c) { return (c & 0x80) == 0; })) {
    out->assign(text);  // ASCII is its own NFC
    return;
  }
  utf8proc_uint8_t* mapped = nullptr;
  const utf8proc_ssize_t n =
      utf8proc_map(reinterpret_cast<const utf8proc_uint8_t*>(text.data()),
                   static_cast<utf8proc_ssize_t>(text.size()), &mapped,
                   static_cast<utf8proc_option_t>(UTF8PROC_STABLE | UTF8PROC_COMPOSE));
  if (n < 0) {
    core::throw_internal("NFC normalization failed: ", utf8proc_errmsg(n));
  }
  out->assign(reinterpret_cast<const char*>(mapped), static_cast<size_t>(n));
  std::free(mapped);
}

uint64_t fnv1a(uint64_t h, std::string_view bytes) {
  for (unsigned char b : bytes) {
    h ^= b;
    h *= 1099511628211ull;
  }
  return h ^ 0xff;  // a separator, so ("ab", "c") and ("a", "bc") differ
}

int32_t optional_id(const GgufFile& g, const std::string& key, size_t vocab_size) {
  if (g.find(key) == nullptr) return -1;
  uint64_t id = g.get_uint(key);
  if (id >= vocab_size) {
    core::throw_bad_input(g.path(), ": ", key, " is ", id, ", outside the vocabulary of ",
                          vocab_size, " tokens");
  }
  return static_cast<int32_t>(id);
}

}  // namespace

// Cuts text into pre-tokens: each expression in turn splits every piece so far into its matches
// and the text between them, as llama.cpp's unicode_regex_split does.
class BpeTokenizer::Pretokenizer {
 public:
  // `source`: as for to_pcre2.
  Pretokenizer(const std::vector<std::string>& patterns, const std::string& source) {
    try {
      for (const std::string& p : patterns) compile(p, source);
    } catch (...) {
      for (pcre2_code* code : codes_) pcre2_code_free(code);
      throw;
    }
  }
  ~Pretokenizer() {
    for (pcre2_code* code : codes_) pcre2_code_free(code);
  }
  Pretokenizer(const Pretokenizer&) = delete;
  Pretokenizer& operator=(const Pretokenizer&) = delete;

  void split(std::string_view text, std::vector<std::string_view>* out) const {
    std::vector<std::string_view> pieces{text};
    std::vector<std::string_view> next;
    pcre2_match_data* match = pcre2_match_data_create(1, nullptr);
    if (match == nullptr) core::throw_internal("out of memory for PCRE2 match data");
    const PCRE2_SIZE* ovector = pcre2_get_ovector_pointer(match);
    for (const pcre2_code* code : codes_) {
      next.clear();
      for (std::string_view piece : pieces) {
        const auto* subject = reinterpret_cast<PCRE2_SPTR>(piece.data());
        size_t done = 0;  // end of the last piece emitted
        size_t start = 0;
        while (start < piece.size()) {
          int rc =
              pcre2_match(code, subject, piece.size(), start, PCRE2_NO_UTF_CHECK, match, nullptr);
          if (rc == PCRE2_ERROR_NOMATCH) break;
          if (rc < 0) {
            pcre2_match_data_free(match);
            core::throw_internal("PCRE2 match failed with error ", rc);
          }
          const size_t begin = ovector[0];
          const size_t end = ovector[1];
          if (end == begin) {  // none of the expressions can match empty; never loop on one
            start = end + 1;
            while (start < piece.size() && (static_cast<uint8_t>(piece[start]) & 0xC0) == 0x80)
              ++start;
            continue;
          }
          if (begin > done) next.push_back(piece.substr(done, begin - done));
          next.push_back(piece.substr(begin, end - begin));
          done = start = end;
        }
        if (done < piece.size()) next.push_back(piece.substr(done));
      }
      pieces.swap(next);
    }
    pcre2_match_data_free(match);
    out->insert(out->end(), pieces.begin(), pieces.end());
  }

 private:
  void compile(const std::string& p, const std::string& source) {
    const std::string pattern = to_pcre2(p, source);
    int error = 0;
    PCRE2_SIZE error_offset = 0;
    pcre2_code* code = pcre2_compile(reinterpret_cast<PCRE2_SPTR>(pattern.data()), pattern.size(),
                                     PCRE2_UTF | PCRE2_UCP, &error, &error_offset, nullptr);
    if (code == nullptr) {
      PCRE2_UCHAR message[256];
      pcre2_get_error_message(error, message, sizeof message);
      if (!source.empty()) {
        core::throw_bad_input(source, ": pre-tokenizer pattern '", p,
                              "' does not compile: ", reinterpret_cast<const char*>(message));
      }
      core::throw_internal("pre-tokenizer expression does not compile at ", error_offset, ": ",
                           reinterpret_cast<const char*>(message), ": ", pattern);
    }
    // JIT is several times faster; without it (unsupported CPU) the interpreter still works.
    pcre2_jit_compile(code, PCRE2_JIT_COMPLETE);
    codes_.push_back(code);
  }

  std::vector<pcre2_code*> codes_;
};

BpeTokenizer::BpeTokenizer() = default;
BpeTokenizer::BpeTokenizer(BpeTokenizer&&) noexcept = default;
BpeTokenizer& BpeTokenizer::operator=(BpeTokenizer&&) noexcept = default;
BpeTokenizer::~BpeTokenizer() = default;

// Symbols: the vocabulary, then every other text the byte alphabet or a merge can produce.
int32_t BpeTokenizer::intern(const std::string& text) {
  if (auto it = vocab_.find(text); it != vocab_.end()) return it->second;
  auto [it, inserted] =
      extra_symbols_.emplace(text, static_cast<int32_t>(tokens_.size() + extra_texts_.size()));
  if (inserted) extra_texts_.push_back(text);
  return it->second;
}

void BpeTokenizer::build_byte_tables() {
  std::fill(std::begin(char_byte_), std::end(char_byte_), int16_t{-1});
  for (int b = 0; b < 256; ++b) {
    const char32_t c = byte_to_char(static_cast<uint8_t>(b));
    char_byte_[c] = static_cast<int16_t>(b);
    append_utf8(c, &byte_text_[b]);
    byte_symbol_[b] = intern(byte_text_[b]);
    single_byte_token_[b] = token_id(std::string(1, static_cast<char>(b)));
  }
}

void BpeTokenizer::add_merge(const std::string& first, const std::string& second, int32_t rank) {
  const int32_t left = intern(first);
  const int32_t right = intern(second);
  const int32_t result = intern(first + second);
  const uint64_t key = static_cast<uint64_t>(left) << 32 | static_cast<uint32_t>(right);
  merges_.emplace(key, Merge{rank, result});  // the first rank wins
}

void BpeTokenizer::collect_special() {
  for (size_t i = 0; i < tokens_.size(); ++i) {
    const TokenType type = types_[i];
    if (type == TokenType::kControl || type == TokenType::kUserDefined ||
        type == TokenType::kUnknown) {
      special_.push_back(static_cast<int32_t>(i));
    }
  }
  std::stable_sort(special_.begin(), special_.end(),
                   [this](int32_t a, int32_t b) { return tokens_[a].size() > tokens_[b].size(); });
}

BpeTokenizer BpeTokenizer::from_gguf(const GgufFile& g) {
  const std::string& model = g.get_string("tokenizer.ggml.model");
  if (model != "gpt2") {
    core::throw_bad_input(g.path(), ": tokenizer model '", model,
                          "' (tokenizer.ggml.model) is not supported; this tokenizer handles "
                          "byte-level BPE ('gpt2')");
  }
  BpeTokenizer t;
  // llama.cpp falls back to its default pre-tokenizer when the key is absent (old conversions).
  t.pre_ = g.find("tokenizer.ggml.pre") ? g.get_string("tokenizer.ggml.pre") : "default";
  const PreSpec* spec = nullptr;
  for (const PreSpec& s : pre_specs()) {
    for (const char* name : s.names) {
      if (t.pre_ == name) spec = &s;
    }
  }
  if (spec == nullptr) {
    core::throw_bad_input(
        g.path(), ": pre-tokenizer '", t.pre_,
        "' (tokenizer.ggml.pre) is not supported; supported: ", supported_pre_names());
  }
  t.pretokenizer_ = std::make_unique<Pretokenizer>(
      std::vector<std::string>(spec->patterns.begin(), spec->patterns.end()), "");
  t.ignore_merges_ = spec->ignore_merges;

  if (g.find(kTokensKey) == nullptr) {
    core::throw_bad_input(g.path(), ": missing metadata key '", kTokensKey, "' (the vocabulary)");
  }
  t.tokens_ = g.get_strings(kTokensKey);
  const size_t n = t.tokens_.size();
  if (n == 0 || n > static_cast<size_t>(INT32_MAX)) {
    core::throw_bad_input(g.path(), ": ", kTokensKey, " holds ", n, " tokens");
  }
  t.vocab_.reserve(n);
  for (size_t i = 0; i < n; ++i) {
    // llama.cpp renames empty tokens so that every token has a distinct text.
    if (t.tokens_[i].empty()) t.tokens_[i] = "[EMPTY_" + std::to_string(i) + "]";
    auto [it, inserted] = t.vocab_.emplace(t.tokens_[i], static_cast<int32_t>(i));
    if (!inserted) {
      core::throw_bad_input(g.path(), ": token '", t.tokens_[i], "' appears twice (ids ",
                            it->second, " and ", i, ")");
    }
  }

  t.types_.assign(n, TokenType::kNormal);
  if (const GgufValue* types = g.find(kTypesKey)) {
    const GgufValue::Array& items = g.get_array(kTypesKey);
    if (items.size() != n || (!items.empty() && !items[0].is_integer())) {
      core::throw_bad_input(g.path(), ": ", kTypesKey, " must be ", n, " integers, one per token (",
                            items.size(), " ", gguf_value_type_name(types->element_type),
                            " values)");
    }
    for (size_t i = 0; i < n; ++i) {
      const auto* s = std::get_if<int64_t>(&items[i].value);
      const auto* u = std::get_if<uint64_t>(&items[i].value);
      int64_t v = s ? *s : static_cast<int64_t>(*u);
      // Unknown codes count as undefined, as in llama.cpp.
      t.types_[i] = v >= 1 && v <= 6 ? static_cast<TokenType>(v) : TokenType::kUndefined;
    }
  }

  t.build_byte_tables();
  if (g.find(kMergesKey) == nullptr) {
    core::throw_bad_input(g.path(), ": missing metadata key '", kMergesKey,
                          "' (the BPE merge list a 'gpt2' tokenizer needs)");
  }
  const std::vector<std::string> merges = g.get_strings(kMergesKey);
  if (merges.size() > static_cast<size_t>(INT32_MAX)) {
    core::throw_bad_input(g.path(), ": ", kMergesKey, " holds ", merges.size(), " merges");
  }
  t.merges_.reserve(merges.size());
  for (size_t i = 0; i < merges.size(); ++i) {
    const std::string& m = merges[i];
    // As llama.cpp splits them: at the first space after the first byte.
    const size_t space = m.find(' ', 1);
    if (space == std::string::npos || space + 1 == m.size()) {
      core::throw_bad_input(g.path(), ": merge ", i, " ('", m, "') in ", kMergesKey,
                            " is not two symbols separated by a space");
    }
    t.add_merge(m.substr(0, space), m.substr(space + 1), static_cast<int32_t>(i));
  }
  t.collect_special();

  t.bos_id_ = optional_id(g, "tokenizer.ggml.bos_token_id", n);
  t.eos_id_ = optional_id(g, "tokenizer.ggml.eos_token_id", n);
  t.unk_id_ = optional_id(g, "tokenizer.ggml.unknown_token_id", n);
  t.pad_id_ = optional_id(g, "tokenizer.ggml.padding_token_id", n);
  t.add_bos_ = g.find("tokenizer.ggml.add_bos_token") ? g.get_bool("tokenizer.ggml.add_bos_token")
                                                      : spec->add_bos;
  t.add_eos_ = g.find("tokenizer.ggml.add_eos_token") && g.get_bool("tokenizer.ggml.add_eos_token");
  if (t.add_bos_ && t.bos_id_ < 0) {
    core::throw_bad_input(g.path(),
                          ": the tokenizer adds BOS but names no "
                          "tokenizer.ggml.bos_token_id");
  }
  if (t.add_eos_ && t.eos_id_ < 0) {
    core::throw_bad_input(g.path(),
                          ": the tokenizer adds EOS but names no "
                          "tokenizer.ggml.eos_token_id");
  }

  uint64_t h = 1469598103934665603ull;
  for (size_t i = 0; i < n; ++i) {
    h = fnv1a(h, t.tokens_[i]);
    h = fnv1a(h, std::to_string(static_cast<int>(t.types_[i])));
  }
  for (const std::string& m : merges) h = fnv1a(h, m);
  t.fingerprint_ =
      fnv1a(h, core::cat(t.pre_, "|", t.bos_id_, "|", t.eos_id_, "|", t.add_bos_, t.add_eos_));
  return t;
}

namespace {

using Json = nlohmann::json;

// What the ByteLevel pre-tokenizer splits with when use_regex is set (tokenizers' GPT-2
// expression; the final \s+ only names pieces that the splitter keeps anyway).
constexpr const char* kByteLevelRegex =
    "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)|\\s+";

std::string type_of(const Json& j) {
  return j.is_object() && j.contains("type") && j["type"].is_string() ? j["type"].get<std::string>()
                                                                      : std::string();
}

bool flag(const Json& j, const char* key, bool fallback = false) {
  return j.contains(key) && j[key].is_boolean() ? j[key].get<bool>() : fallback;
}

// A Split pattern as a PCRE2 expression: {"Regex": ...} as it is, {"String": ...} literally.
std::string split_pattern(const Json& step, const std::string& path) {
  const Json& pattern = step.contains("pattern") ? step["pattern"] : Json();
  if (pattern.contains("Regex") && pattern["Regex"].is_string()) {
    return pattern["Regex"].get<std::string>();
  }
  if (pattern.contains("String") && pattern["String"].is_string()) {
    std::string out;
    for (char c : pattern["String"].get<std::string>()) {
      if ((c & 0x80) == 0 && !std::isalnum(static_cast<unsigned char>(c))) out += '\\';
      out += c;
    }
    return out;
  }
  core::throw_bad_input(path, ": a Split pre-tokenizer without a Regex or String pattern");
}

// The special tokens a TemplateProcessing puts before and after a single sequence.
struct Template {
  std::vector<int32_t> before, after;
};

void read_post_processor(const Json& p, const std::string& path, Template* t, bool* any_template) {
  const std::string type = type_of(p);
  if (type == "ByteLevel") return;  // offsets only
  if (type == "Sequence" && p.contains("processors") && p["processors"].is_array()) {
    for (const Json& q : p["processors"]) read_post_processor(q, path, t, any_template);
    return;
  }
  if (type != "TemplateProcessing") {
    core::throw_bad_input(path, ": post-processor '", type,
                          "' is not supported (ByteLevel, TemplateProcessing, or none)");
  }
  if (*any_template) core::throw_bad_input(path, ": more than one TemplateProcessing");
  *any_template = true;
  if (!p.contains("single") || !p["single"].is_array()) {
    core::throw_bad_input(path, ": TemplateProcessing without a 'single' template");
  }
  bool seen_text = false;
  for (const Json& item : p["single"]) {
    if (item.contains("Sequence")) {
      seen_text = true;
      continue;
    }
    const Json& special = item.contains("SpecialToken") ? item["SpecialToken"] : Json();
    const std::string name = special.value("id", std::string());
    const Json& entry = p.contains("special_tokens") && p["special_tokens"].contains(name)
                            ? p["special_tokens"][name]
                            : Json();
    if (!entry.contains("ids") || !entry["ids"].is_array() || entry["ids"].size() != 1 ||
        !entry["ids"][0].is_number_integer()) {
      core::throw_bad_input(path, ": TemplateProcessing names special token '", name,
                            "' without exactly one id in its special_tokens");
    }
    (seen_text ? t->after : t->before).push_back(entry["ids"][0].get<int32_t>());
  }
  if (!seen_text || t->before.size() > 1 || t->after.size() > 1) {
    core::throw_bad_input(path,
                          ": a TemplateProcessing 'single' template other than [special] $A "
                          "[special] is not supported");
  }
}

}  // namespace

BpeTokenizer BpeTokenizer::from_tokenizer_json(const std::string& path) {
  const Json doc = core::read_json_file(path);
  const Json& model = doc.is_object() && doc.contains("model") ? doc["model"] : Json();
  const std::string model_type = type_of(model);
  if (model_type != "BPE") {
    core::throw_bad_input(path, ": tokenizer model '", model_type.empty() ? "(none)" : model_type,
                          "' is not supported; this tokenizer runs byte-level BPE ('BPE')");
  }
  if (flag(model, "byte_fallback")) {
    core::throw_bad_input(
        path, ": a BPE model with byte_fallback (SentencePiece style) is not supported");
  }
  for (const char* key : {"continuing_subword_prefix", "end_of_word_suffix"}) {
    if (model.contains(key) && model[key].is_string() && !model[key].get<std::string>().empty()) {
      core::throw_bad_input(path, ": a BPE model with a ", key, " is not supported");
    }
  }
  if (model.contains("dropout") && model["dropout"].is_number() &&
      model["dropout"].get<double>() > 0) {
    core::throw_bad_input(path, ": a BPE model with dropout is not supported");
  }
  if (!model.contains("vocab") || !model["vocab"].is_object() || model["vocab"].empty()) {
    core::throw_bad_input(path, ": model.vocab is missing or empty");
  }
  const Json empty_array = Json::array();
  const Json& added = doc.contains("added_tokens") && doc["added_tokens"].is_array()
                          ? doc["added_tokens"]
                          : empty_array;

  // The vocabulary: model.vocab's ids, then the added tokens (new ids, or types for old ones).
  BpeTokenizer t;
  t.hf_missing_symbols_ = true;
  t.fuse_unk_ = flag(model, "fuse_unk");
  t.ignore_merges_ = flag(model, "ignore_merges");
  constexpr int64_t kMaxId = int64_t{1} << 30;
  auto id_of = [&path](const Json& v, const std::string& what) {
    if (!v.is_number_integer() || v.get<int64_t>() < 0 || v.get<int64_t>() >= kMaxId) {
      core::throw_bad_input(path, ": ", what, " has no valid id");
    }
    return v.get<int32_t>();
  };
  int32_t size = 0;
  for (const auto& [text, id] : model["vocab"].items()) {
    size = std::max(size, id_of(id, "token '" + text + "'") + 1);
  }
  for (const Json& a : added) {
    size = std::max(size, id_of(a.value("id", Json()), "an added token") + 1);
  }
  const size_t entries = model["vocab"].size() + added.size();
  if (static_cast<size_t>(size) > 2 * entries + 1024) {  // dense in practice; never allocate 2^30
    core::throw_bad_input(path, ": token ids run to ", size - 1, " for ", entries, " tokens");
  }
  t.tokens_.resize(size);
  t.types_.assign(size, TokenType::kUnused);
  for (const auto& [text, id] : model["vocab"].items()) {
    const int32_t i = id.get<int32_t>();
    if (t.types_[i] != TokenType::kUnused) {
      core::throw_bad_input(path, ": id ", i, " is given to both '", t.tokens_[i], "' and '", text,
                            "'");
    }
    t.tokens_[i] = text;
    t.types_[i] = TokenType::kNormal;
    t.vocab_.emplace(text, i);
  }
  for (const Json& a : added) {
    const int32_t i = a["id"].get<int32_t>();
    const std::string content = a.value("content", std::string());
    if (content.empty()) core::throw_bad_input(path, ": added token ", i, " has no content");
    for (const char* key : {"lstrip", "rstrip", "single_word"}) {
      if (flag(a, key)) {
        core::throw_bad_input(path, ": added token '", content, "' sets ", key,
                              ", which is not supported");
      }
    }
    if (t.types_[i] == TokenType::kNormal && t.tokens_[i] != content) {
      core::throw_bad_input(path, ": added token ", i, " is '", content,
                            "' but the vocabulary's token ", i, " is '", t.tokens_[i], "'");
    }
    t.tokens_[i] = content;
    t.types_[i] = flag(a, "special") ? TokenType::kControl : TokenType::kUserDefined;
    t.vocab_[content] = i;  // an added token is matched as itself, whatever the vocabulary says
  }
  for (int32_t i = 0; i < size; ++i) {
    if (t.types_[i] == TokenType::kUnused) t.tokens_[i] = "[UNUSED_" + std::to_string(i) + "]";
  }

  t.build_byte_tables();
  if (!model.contains("merges") || !model["merges"].is_array()) {
    core::throw_bad_input(path, ": model.merges is missing");
  }
  const Json& merges = model["merges"];
  t.merges_.reserve(merges.size());
  uint64_t h = 1469598103934665603ull;
  for (size_t i = 0; i < merges.size(); ++i) {
    const Json& m = merges[i];
    std::string first, second;
    if (m.is_string()) {  // "a b", the form before tokenizers 0.20
      const std::string s = m.get<std::string>();
      const size_t space = s.find(' ', 1);
      if (space != std::string::npos) {
        first = s.substr(0, space);
        second = s.substr(space + 1);
      }
    } else if (m.is_array() && m.size() == 2 && m[0].is_string() && m[1].is_string()) {
      first = m[0].get<std::string>();
      second = m[1].get<std::string>();
    }
    if (first.empty() || second.empty()) {
      core::throw_bad_input(path, ": merge ", i, " (", m.dump(), ") is not two symbols");
    }
    for (const std::string& s : {first, second, first + second}) {
      if (t.token_id(s) < 0) {
        core::throw_bad_input(path, ": merge ", i, " (", m.dump(), ") needs '", s,
                              "', which is not in the vocabulary");
      }
    }
    t.add_merge(first, second, static_cast<int32_t>(i));
    h = fnv1a(h, first + " " + second);
  }
  t.collect_special();

  // Normalizer and pre-tokenizer.
  std::string steps;
  auto note = [&steps](const std::string& step) { steps += (steps.empty() ? "" : ", ") + step; };
  const Json& normalizer = doc.contains("normalizer") ? doc["normalizer"] : Json();
  std::vector<const Json*> normalizers;
  if (type_of(normalizer) == "Sequence" && normalizer.contains("normalizers")) {
    for (const Json& n : normalizer["normalizers"]) normalizers.push_back(&n);
  } else if (!normalizer.is_null()) {
    normalizers.push_back(&normalizer);
  }
  for (const Json* n : normalizers) {
    if (type_of(*n) != "NFC") {
      core::throw_bad_input(path, ": normalizer '", type_of(*n),
                            "' is not supported (none, or NFC)");
    }
    t.nfc_ = true;
    note("NFC");
  }
  const Json& pre = doc.contains("pre_tokenizer") ? doc["pre_tokenizer"] : Json();
  std::vector<const Json*> pre_steps;
  if (type_of(pre) == "Sequence" && pre.contains("pretokenizers")) {
    for (const Json& p : pre["pretokenizers"]) pre_steps.push_back(&p);
  } else if (!pre.is_null()) {
    pre_steps.push_back(&pre);
  }
  std::vector<std::string> patterns;
  bool byte_level = false;
  for (const Json* step : pre_steps) {
    const std::string type = type_of(*step);
    if (byte_level) {
      core::throw_bad_input(path, ": pre-tokenizer '", type,
                            "' after ByteLevel is not supported (ByteLevel must come last)");
    }
    if (type == "ByteLevel") {
      if (flag(*step, "add_prefix_space")) {
        core::throw_bad_input(path, ": ByteLevel with add_prefix_space is not supported");
      }
      if (flag(*step, "use_regex", true)) patterns.push_back(kByteLevelRegex);
      byte_level = true;
    } else if (type == "Split") {
      if (step->value("behavior", std::string()) != "Isolated" || flag(*step, "invert")) {
        core::throw_bad_input(path, ": a Split pre-tokenizer with behavior '",
                              step->value("behavior", std::string()),
                              "'/invert is not supported (Isolated, not inverted)");
      }
      patterns.push_back(split_pattern(*step, path));
    } else if (type == "Digits") {
      patterns.push_back(flag(*step, "individual_digits") ? "\\p{N}" : "\\p{N}+");
    } else {
      core::throw_bad_input(path, ": pre-tokenizer '", type.empty() ? "(none)" : type,
                            "' is not supported (ByteLevel, alone or after Split and Digits)");
    }
    note(type);
  }
  if (!byte_level) {
    core::throw_bad_input(path,
                          ": the pre-tokenizer has no ByteLevel step; this tokenizer runs "
                          "byte-level BPE only");
  }
  t.pretokenizer_ = std::make_unique<Pretokenizer>(patterns, path);
  t.pre_ = "tokenizer.json: " + steps;

  // Special token ids, and which are added: the post-processor's template, unless
  // tokenizer_config.json says add_bos_token / add_eos_token (transformers then rebuilds it).
  auto special_id = [&t](const Json& value, const std::string& where,
                         const std::string& key) -> int32_t {
    if (value.is_null()) return -1;
    const std::string text = value.is_string()   ? value.get<std::string>()
                             : value.is_object() ? value.value("content", std::string())
                                                 : std::string();
    const int32_t id = t.token_id(text);
    if (id < 0) {
      core::throw_bad_input(where, ": ", key, " '", text, "' is not in the vocabulary");
    }
    return id;
  };
  if (model.contains("unk_token")) t.unk_id_ = special_id(model["unk_token"], path, "unk_token");
  Template tmpl;
  bool any_template = false;
  const bool no_post = !doc.contains("post_processor") || doc["post_processor"].is_null();
  if (!no_post) read_post_processor(doc["post_processor"], path, &tmpl, &any_template);
  for (int32_t id : tmpl.before) {
    if (id < 0 || id >= size)
      core::throw_bad_input(path, ": template token id ", id, " is unknown");
  }
  for (int32_t id : tmpl.after) {
    if (id < 0 || id >= size)
      core::throw_bad_input(path, ": template token id ", id, " is unknown");
  }
  const std::string config_path =
      (std::filesystem::path(path).parent_path() / "tokenizer_config.json").string();
  Json config = Json::object();
  if (std::filesystem::exists(config_path)) {
    config = core::read_json_file(config_path);
    if (!config.is_object()) core::throw_bad_input(config_path, ": expected a JSON object");
  }
  auto config_id = [&](const char* key) {
    return config.contains(key) ? special_id(config[key], config_path, key) : -1;
  };
  t.bos_id_ = config_id("bos_token");
  t.eos_id_ = config_id("eos_token");
  t.pad_id_ = config_id("pad_token");
  if (t.unk_id_ < 0) t.unk_id_ = config_id("unk_token");
  if (config.contains("add_bos_token") || config.contains("add_eos_token") || no_post) {
    t.add_bos_ = flag(config, "add_bos_token") && t.bos_id_ >= 0;
    t.add_eos_ = flag(config, "add_eos_token") && t.eos_id_ >= 0;
  } else {
    t.add_bos_ = !tmpl.before.empty();
    t.add_eos_ = !tmpl.after.empty();
    if (t.add_bos_) t.bos_id_ = tmpl.before[0];
    if (t.add_eos_) t.eos_id_ = tmpl.after[0];
  }

  for (int32_t i = 0; i < size; ++i) {
    h = fnv1a(h, t.tokens_[i]);
    h = fnv1a(h, std::to_string(static_cast<int>(t.types_[i])));
  }
  for (const std::string& p : patterns) h = fnv1a(h, p);
  t.fingerprint_ =
      fnv1a(h, core::cat(t.pre_, "|", t.bos_id_, "|", t.eos_id_, "|", t.add_bos_, t.add_eos_,
                         t.ignore_merges_, t.nfc_, t.unk_id_, t.fuse_unk_));
  return t;
}

int32_t BpeTokenizer::token_id(std::string_view text) const {
  auto it = vocab_.find(std::string(text));
  return it == vocab_.end() ? -1 : it->second;
}

std::vector<std::string_view> BpeTokenizer::pre_tokenize(std::string_view text) const {
  std::vector<std::string_view> out;
  pretokenizer_->split(text, &out);
  return out;
}

void BpeTokenizer::partition_special(std::string_view text, bool parse_special,
                                     std::vector<Fragment>* fragments) const {
  fragments->clear();
  if (text.empty()) return;
  fragments->push_back({-1, 0, text.size()});
  std::vector<Fragment> next;
  // As llama.cpp's tokenizer_st_partition: one special token at a time, longest first, each
  // splitting every piece of raw text left so far at all its occurrences.
  for (int32_t id : special_) {
    const TokenType type = types_[id];
    if (!parse_special && (type == TokenType::kControl || type == TokenType::kUnknown)) continue;
    const std::string& special = tokens_[id];
    next.clear();
    bool found = false;
    for (const Fragment& f : *fragments) {
      if (f.token >= 0) {
        next.push_back(f);
        continue;
      }
      size_t begin = f.begin;
      const std::string_view raw = text.substr(0, f.end);
      for (size_t at; (at = raw.find(special, begin)) != std::string_view::npos;) {
        if (at > begin) next.push_back({-1, begin, at});
        next.push_back({id, at, at + special.size()});
        begin = at + special.size();
        found = true;
      }
      if (begin < f.end) next.push_back({-1, begin, f.end});
    }
    if (found) fragments->swap(next);
  }
}

struct BpeTokenizer::Scratch {
  struct Symbol {
    int32_t id;
    int32_t prev;
    int32_t next;
  };
  struct Bigram {
    int32_t rank;
    int32_t left;
    int32_t right;
    int32_t left_id;
    int32_t right_id;
    int32_t result;
    // Lowest rank first, then leftmost (llama.cpp's order).
    bool operator<(const Bigram& o) const { return rank != o.rank ? rank > o.rank : left > o.left; }
  };
  std::vector<Symbol> symbols;
  std::priority_queue<Bigram> queue;
  std::string encoded;
  std::string normalized;
  std::vector<std::string_view> words;
  std::vector<Fragment> fragments;
};

void BpeTokenizer::encode_word(std::string_view word, Scratch* s, std::vector<int32_t>* ids) const {
  if (ignore_merges_) {
    // A pre-token that is a token as a whole is that token, whatever the merges would make.
    s->encoded.clear();
    for (unsigned char b : word) s->encoded += byte_text_[b];
    if (auto it = vocab_.find(s->encoded); it != vocab_.end()) {
      ids->push_back(it->second);
      return;
    }
  }
  auto& symbols = s->symbols;
  symbols.clear();
  const int32_t n = static_cast<int32_t>(word.size());
  for (int32_t i = 0; i < n; ++i) {
    symbols.push_back({byte_symbol_[static_cast<uint8_t>(word[i])], i - 1, i + 1 < n ? i + 1 : -1});
  }
  auto add_bigram = [&](int32_t left, int32_t right) {
    if (left < 0 || right < 0) return;
    const uint64_t key =
        static_cast<uint64_t>(symbols[left].id) << 32 | static_cast<uint32_t>(symbols[right].id);
    auto it = merges_.find(key);
    if (it == merges_.end()) return;
    s->queue.push(
        {it->second.rank, left, right, symbols[left].id, symbols[right].id, it->second.result});
  };
  for (int32_t i = 1; i < n; ++i) add_bigram(i - 1, i);
  while (!s->queue.empty()) {
    const Scratch::Bigram b = s->queue.top();
    s->queue.pop();
    Scratch::Symbol& left = symbols[b.left];
    Scratch::Symbol& right = symbols[b.right];
    // Stale when either side has merged since: ids (texts) differ, or the right one is gone.
    if (left.id != b.left_id || right.id != b.right_id || left.next != b.right) continue;
    left.id = b.result;
    right.id = -1;
    left.next = right.next;
    if (right.next >= 0) symbols[right.next].prev = b.left;
    add_bigram(left.prev, b.left);
    add_bigram(b.left, left.next);
  }
  const int32_t vocab = static_cast<int32_t>(tokens_.size());
  bool after_unk = false;  // the last symbol was missing and became the unknown token
  for (int32_t i = 0; i >= 0 && i < n; i = symbols[i].next) {
    const int32_t id = symbols[i].id;
    if (id < vocab) {
      ids->push_back(id);
      after_unk = false;
      continue;
    }
    if (hf_missing_symbols_) {
      // Hugging Face: the unknown token (one for a run with fuse_unk), or nothing without one.
      if (unk_id_ >= 0 && !(fuse_unk_ && after_unk)) ids->push_back(unk_id_);
      after_unk = unk_id_ >= 0;
      continue;
    }
    // A symbol the vocabulary lacks: llama.cpp looks up each of its bytes as a one-byte token
    // and drops those it does not find.
    for (unsigned char c : extra_texts_[id - vocab]) {
      if (single_byte_token_[c] >= 0) ids->push_back(single_byte_token_[c]);
    }
  }
}

std::vector<int32_t> BpeTokenizer::encode(std::string_view text, bool add_special,
                                          bool parse_special) const {
  check_utf8(text);
  Scratch s;
  std::vector<int32_t> ids;
  ids.reserve(text.size() / 3 + 2);
  if (add_special && add_bos_) ids.push_back(bos_id_);
  partition_special(text, parse_special, &s.fragments);
  for (const Fragment& f : s.fragments) {
    if (f.token >= 0) {
      ids.push_back(f.token);
      continue;
    }
    s.words.clear();
    std::string_view fragment = text.substr(f.begin, f.end - f.begin);
    if (nfc_) {
      nfc(fragment, &s.normalized);
      fragment = s.normalized;
    }
    pretokenizer_->split(fragment, &s.words);
    for (std::string_view word : s.words) encode_word(word, &s, &ids);
  }
  if (add_special && add_eos_) ids.push_back(eos_id_);
  return ids;
}

std::string BpeTokenizer::decode(std::span<const int32_t> ids) const {
  std::string out;
  for (int32_t id : ids) {
    if (id < 0 || static_cast<size_t>(id) >= tokens_.size()) {
      core::throw_bad_input("token id ", id, " is outside the vocabulary of ", tokens_.size(),
                            " tokens");
    }
    const std::string& text = tokens_[id];
    switch (types_[id]) {
      case TokenType::kControl:
      case TokenType::kUserDefined:
      case TokenType::kUnknown:
        out += text;
        break;
      case TokenType::kNormal:
      case TokenType::kByte: {
        const auto* p = reinterpret_cast<const utf8proc_uint8_t*>(text.data());
        size_t offset = 0;
        while (offset < text.size()) {
          utf8proc_int32_t cp;
          utf8proc_ssize_t n = utf8proc_iterate(
              p + offset, static_cast<utf8proc_ssize_t>(text.size() - offset), &cp);
          if (n <= 0) {  // not UTF-8 (a raw-byte token): its bytes as they are
            out += text[offset++];
            continue;
          }
          if (cp >= 0 && cp < 0x144 && char_byte_[cp] >= 0) {
            out += static_cast<char>(char_byte_[cp]);
          } else {  // outside the byte alphabet: the character itself
            out.append(text, offset, static_cast<size_t>(n));
          }
          offset += static_cast<size_t>(n);
        }
        break;
      }
      case TokenType::kUnused:
      case TokenType::kUndefined:
        break;  // llama.cpp renders nothing for these
    }
  }
  return out;
}

}  // namespace attncache
