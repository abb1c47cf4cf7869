#include "attncache/model/bpe_tokenizer.h"

#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>
#include <utf8proc.h>

#include <algorithm>
#include <queue>

#include "core/error.h"

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
// above), inside character classes or as classes of their own.
std::string to_pcre2(std::string_view pattern) {
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
      if (in_class) core::throw_internal("\\S inside a character class: ", pattern);
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
  explicit Pretokenizer(const std::vector<const char*>& patterns) {
    for (const char* p : patterns) {
      const std::string pattern = to_pcre2(p);
      int error = 0;
      PCRE2_SIZE error_offset = 0;
      pcre2_code* code = pcre2_compile(reinterpret_cast<PCRE2_SPTR>(pattern.data()), pattern.size(),
                                       PCRE2_UTF | PCRE2_UCP, &error, &error_offset, nullptr);
      if (code == nullptr) {
        PCRE2_UCHAR message[256];
        pcre2_get_error_message(error, message, sizeof message);
        core::throw_internal("pre-tokenizer expression does not compile at ", error_offset, ": ",
                             reinterpret_cast<const char*>(message), ": ", pattern);
      }
      // JIT is several times faster; without it (unsupported CPU) the interpreter still works.
      pcre2_jit_compile(code, PCRE2_JIT_COMPLETE);
      codes_.push_back(code);
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
  std::vector<pcre2_code*> codes_;
};

BpeTokenizer::BpeTokenizer() = default;
BpeTokenizer::BpeTokenizer(BpeTokenizer&&) noexcept = default;
BpeTokenizer& BpeTokenizer::operator=(BpeTokenizer&&) noexcept = default;
BpeTokenizer::~BpeTokenizer() = default;

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
  t.pretokenizer_ = std::make_unique<Pretokenizer>(spec->patterns);
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

  // Symbols: the vocabulary, then every other text the byte alphabet or a merge can produce.
  auto intern = [&t, n](const std::string& text) -> int32_t {
    if (auto it = t.vocab_.find(text); it != t.vocab_.end()) return it->second;
    auto [it, inserted] =
        t.extra_symbols_.emplace(text, static_cast<int32_t>(n + t.extra_texts_.size()));
    if (inserted) t.extra_texts_.push_back(text);
    return it->second;
  };
  std::fill(std::begin(t.char_byte_), std::end(t.char_byte_), int16_t{-1});
  for (int b = 0; b < 256; ++b) {
    const char32_t c = byte_to_char(static_cast<uint8_t>(b));
    t.char_byte_[c] = static_cast<int16_t>(b);
    append_utf8(c, &t.byte_text_[b]);
    t.byte_symbol_[b] = intern(t.byte_text_[b]);
    t.single_byte_token_[b] = t.token_id(std::string(1, static_cast<char>(b)));
  }

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
    const std::string first = m.substr(0, space);
    const std::string second = m.substr(space + 1);
    const int32_t left = intern(first);
    const int32_t right = intern(second);
    const int32_t result = intern(first + second);
    const uint64_t key = static_cast<uint64_t>(left) << 32 | static_cast<uint32_t>(right);
    t.merges_.emplace(key, Merge{static_cast<int32_t>(i), result});  // the first rank wins
  }

  for (size_t i = 0; i < n; ++i) {
    const TokenType type = t.types_[i];
    if (type == TokenType::kControl || type == TokenType::kUserDefined ||
        type == TokenType::kUnknown) {
      t.special_.push_back(static_cast<int32_t>(i));
    }
  }
  std::stable_sort(t.special_.begin(), t.special_.end(), [&t](int32_t a, int32_t b) {
    return t.tokens_[a].size() > t.tokens_[b].size();
  });

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
  for (int32_t i = 0; i >= 0 && i < n; i = symbols[i].next) {
    const int32_t id = symbols[i].id;
    if (id < vocab) {
      ids->push_back(id);
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
    pretokenizer_->split(text.substr(f.begin, f.end - f.begin), &s.words);
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
