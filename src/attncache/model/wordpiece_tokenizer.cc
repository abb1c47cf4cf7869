#include "attncache/model/wordpiece_tokenizer.h"

#include <utf8proc.h>

#include <algorithm>
#include <iterator>

#include "core/error.h"
#include "core/json_file.h"

namespace attncache {
namespace {

// How the reference classifies characters. Its tables predate current Unicode, so the classes
// are probed from the reference itself (scripts/reference/make_unicode_table.py), not taken
// from utf8proc's categories.
enum class CharClass : uint8_t { kOther, kControl, kWhitespace, kMark, kPunctuation };

struct CharRange {
  char32_t first;
  char32_t last;
  CharClass cls;
};

constexpr CharRange kCharRanges[] = {
#include "attncache/model/bert_unicode_table.inc"
};

CharClass classify(char32_t c) {
  const CharRange* end = std::end(kCharRanges);
  const CharRange* it = std::upper_bound(
      std::begin(kCharRanges), end, c, [](char32_t v, const CharRange& r) { return v < r.first; });
  if (it == std::begin(kCharRanges)) return CharClass::kOther;
  --it;
  return c <= it->last ? it->cls : CharClass::kOther;
}

// The ranges the reference calls Chinese characters (including its 0x2B920 lower bound).
bool is_chinese_char(char32_t c) {
  return (c >= 0x4E00 && c <= 0x9FFF) || (c >= 0x3400 && c <= 0x4DBF) ||
         (c >= 0x20000 && c <= 0x2A6DF) || (c >= 0x2A700 && c <= 0x2B73F) ||
         (c >= 0x2B740 && c <= 0x2B81F) || (c >= 0x2B920 && c <= 0x2CEAF) ||
         (c >= 0xF900 && c <= 0xFAFF) || (c >= 0x2F800 && c <= 0x2FA1F);
}

// Full (unconditional) lower-case mapping, as Rust's char::to_lowercase: utf8proc's simple
// mapping plus the one SpecialCasing entry that differs.
void append_lower(char32_t c, std::u32string* out) {
  if (c == 0x130) {  // LATIN CAPITAL LETTER I WITH DOT ABOVE -> i + COMBINING DOT ABOVE
    out->push_back(U'i');
    out->push_back(0x307);
    return;
  }
  out->push_back(static_cast<char32_t>(utf8proc_tolower(static_cast<utf8proc_int32_t>(c))));
}

void append_nfd_without_marks(char32_t c, std::u32string* out) {
  utf8proc_int32_t buffer[32];
  int options = UTF8PROC_DECOMPOSE;
  utf8proc_ssize_t n = utf8proc_decompose_char(static_cast<utf8proc_int32_t>(c), buffer, 32,
                                               static_cast<utf8proc_option_t>(options), nullptr);
  if (n < 0 || n > 32) {
    out->push_back(c);
    return;
  }
  // NFD also needs canonical ordering of marks, but the marks we reorder are all dropped here
  // (combining classes > 0 are Mn or Mc; Mc are rare and kept in decomposition order).
  for (utf8proc_ssize_t i = 0; i < n; ++i) {
    char32_t d = static_cast<char32_t>(buffer[i]);
    if (classify(d) != CharClass::kMark) out->push_back(d);
  }
}

std::u32string decode_utf8(std::string_view text) {
  std::u32string out;
  out.reserve(text.size());
  const auto* p = reinterpret_cast<const utf8proc_uint8_t*>(text.data());
  utf8proc_ssize_t remaining = static_cast<utf8proc_ssize_t>(text.size());
  size_t offset = 0;
  while (remaining > 0) {
    utf8proc_int32_t cp;
    utf8proc_ssize_t n = utf8proc_iterate(p + offset, remaining, &cp);
    if (n <= 0 || cp < 0) core::throw_bad_input("invalid UTF-8 at byte ", offset);
    out.push_back(static_cast<char32_t>(cp));
    offset += static_cast<size_t>(n);
    remaining -= n;
  }
  return out;
}

void append_utf8(char32_t c, std::string* out) {
  utf8proc_uint8_t buf[4];
  utf8proc_ssize_t n = utf8proc_encode_char(static_cast<utf8proc_int32_t>(c), buf);
  out->append(reinterpret_cast<const char*>(buf), static_cast<size_t>(n));
}

uint64_t fnv1a(uint64_t h, std::string_view bytes) {
  for (unsigned char b : bytes) {
    h ^= b;
    h *= 1099511628211ull;
  }
  return h;
}

const nlohmann::json& require_object(const nlohmann::json& json, const char* key,
                                     const std::string& path) {
  if (!json.contains(key) || !json[key].is_object()) {
    core::throw_bad_input(path, ": '", key, "' must be an object");
  }
  return json[key];
}

int32_t token_id(const std::unordered_map<std::string, int32_t>& vocab, const std::string& token,
                 const std::string& path) {
  auto it = vocab.find(token);
  if (it == vocab.end())
    core::throw_bad_input(path, ": token '", token, "' is not in the vocabulary");
  return it->second;
}

}  // namespace

WordPieceTokenizer WordPieceTokenizer::from_file(const std::string& path) {
  nlohmann::json json = core::read_json_file(path);
  if (!json.is_object()) core::throw_bad_input(path, ": expected a JSON object");
  WordPieceTokenizer t;
  try {
    const auto& model = require_object(json, "model", path);
    if (model.value("type", "") != "WordPiece") {
      core::throw_bad_input(path, ": model type '", model.value("type", ""),
                            "' is not supported (expected WordPiece)");
    }
    const auto& vocab = require_object(model, "vocab", path);
    for (auto& [token, id] : vocab.items()) {
      if (!id.is_number_integer() || id.get<int64_t>() < 0 || id.get<int64_t>() > INT32_MAX) {
        core::throw_bad_input(path, ": vocabulary id of '", token, "' is not a valid id");
      }
      t.vocab_.emplace(token, id.get<int32_t>());
    }
    t.unk_id_ = token_id(t.vocab_, model.value("unk_token", "[UNK]"), path);
    t.continuing_prefix_ = model.value("continuing_subword_prefix", "##");
    t.max_input_chars_per_word_ = model.value("max_input_chars_per_word", size_t{100});

    if (json.contains("normalizer") && !json["normalizer"].is_null()) {
      const auto& n = json["normalizer"];
      if (n.value("type", "") != "BertNormalizer") {
        core::throw_bad_input(path, ": normalizer '", n.value("type", ""), "' is not supported");
      }
      t.clean_text_ = n.value("clean_text", true);
      t.handle_chinese_chars_ = n.value("handle_chinese_chars", true);
      t.lowercase_ = n.value("lowercase", true);
      t.strip_accents_ = n.contains("strip_accents") && n["strip_accents"].is_boolean()
                             ? n["strip_accents"].get<bool>()
                             : t.lowercase_;
    }
    if (json.contains("pre_tokenizer") && !json["pre_tokenizer"].is_null() &&
        json["pre_tokenizer"].value("type", "") != "BertPreTokenizer") {
      core::throw_bad_input(path, ": pre_tokenizer '", json["pre_tokenizer"].value("type", ""),
                            "' is not supported");
    }
    if (json.contains("added_tokens") && json["added_tokens"].is_array()) {
      for (auto& a : json["added_tokens"]) {
        if (!a.contains("content") || !a["content"].is_string() || !a.contains("id") ||
            !a["id"].is_number_integer()) {
          core::throw_bad_input(path, ": malformed added_tokens entry");
        }
        if (a.value("normalized", false)) continue;  // matched after normalization, as a word
        t.added_.push_back({a["content"].get<std::string>(), a["id"].get<int32_t>()});
      }
      std::sort(t.added_.begin(), t.added_.end(), [](const AddedToken& x, const AddedToken& y) {
        return x.content.size() > y.content.size();
      });
    }
    const auto& post = require_object(json, "post_processor", path);
    std::string post_type = post.value("type", "");
    if (post_type == "TemplateProcessing") {
      bool seen_sequence = false;
      for (auto& item : post.at("single")) {
        if (item.contains("Sequence")) {
          seen_sequence = true;
        } else if (item.contains("SpecialToken")) {
          int32_t id = token_id(t.vocab_, item["SpecialToken"].at("id").get<std::string>(), path);
          (seen_sequence ? t.suffix_ : t.prefix_).push_back(id);
        }
      }
    } else if (post_type == "BertProcessing") {
      t.prefix_.push_back(post.at("cls").at(1).get<int32_t>());
      t.suffix_.push_back(post.at("sep").at(1).get<int32_t>());
    } else {
      core::throw_bad_input(path, ": post_processor '", post_type, "' is not supported");
    }
  } catch (const nlohmann::json::exception& e) {
    core::throw_bad_input(path, ": unexpected tokenizer layout: ", e.what());
  }

  uint64_t h = 1469598103934665603ull;
  std::vector<std::pair<int32_t, const std::string*>> by_id;
  for (auto& [token, id] : t.vocab_) by_id.emplace_back(id, &token);
  std::sort(by_id.begin(), by_id.end());
  for (auto& [id, token] : by_id) h = fnv1a(fnv1a(h, *token), std::to_string(id));
  for (auto& a : t.added_) h = fnv1a(h, a.content + "=" + std::to_string(a.id));
  for (int32_t id : t.prefix_) h = fnv1a(h, core::cat("p", id));
  for (int32_t id : t.suffix_) h = fnv1a(h, core::cat("s", id));
  std::string options = core::cat(t.clean_text_, t.handle_chinese_chars_, t.strip_accents_,
                                  t.lowercase_, t.continuing_prefix_, t.max_input_chars_per_word_);
  t.fingerprint_ = fnv1a(h, options);
  return t;
}

std::vector<int32_t> WordPieceTokenizer::encode_words(std::string_view text) const {
  std::u32string chars = decode_utf8(text);
  std::vector<int32_t> ids;
  std::u32string_view rest(chars);
  // Split on added tokens first: they are matched on the raw text and never normalized.
  std::vector<std::u32string> added_u32;
  added_u32.reserve(added_.size());
  for (auto& a : added_) added_u32.push_back(decode_utf8(a.content));
  size_t pos = 0;
  size_t segment_start = 0;
  while (pos < rest.size()) {
    bool matched = false;
    for (size_t k = 0; k < added_u32.size(); ++k) {
      const auto& token = added_u32[k];
      if (!token.empty() && rest.substr(pos, token.size()) == token) {
        normalize_and_split(rest.substr(segment_start, pos - segment_start), &ids);
        ids.push_back(added_[k].id);
        pos += token.size();
        segment_start = pos;
        matched = true;
        break;
      }
    }
    if (!matched) ++pos;
  }
  normalize_and_split(rest.substr(segment_start), &ids);
  return ids;
}

Encoding WordPieceTokenizer::encode(std::string_view text, size_t max_tokens) const {
  if (max_tokens <= template_size()) {
    core::throw_bad_input("maximum length ", max_tokens, " leaves no room for text");
  }
  Encoding enc;
  std::vector<int32_t> words = encode_words(text);
  size_t room = max_tokens - template_size();
  if (words.size() > room) {
    words.resize(room);
    enc.truncated = true;
  }
  enc.ids.reserve(words.size() + template_size());
  enc.ids.insert(enc.ids.end(), prefix_.begin(), prefix_.end());
  enc.ids.insert(enc.ids.end(), words.begin(), words.end());
  enc.ids.insert(enc.ids.end(), suffix_.begin(), suffix_.end());
  return enc;
}

void WordPieceTokenizer::normalize_and_split(std::u32string_view text,
                                             std::vector<int32_t>* ids) const {
  // BertNormalizer, in the reference's order: clean, CJK, accents, lower case.
  std::u32string normalized;
  normalized.reserve(text.size() + 8);
  for (char32_t c : text) {
    if (clean_text_) {
      CharClass cls = classify(c);
      if (cls == CharClass::kControl) continue;
      if (cls == CharClass::kWhitespace) c = U' ';
    }
    if (handle_chinese_chars_ && is_chinese_char(c)) {
      normalized.push_back(U' ');
      normalized.push_back(c);
      normalized.push_back(U' ');
    } else {
      normalized.push_back(c);
    }
  }
  if (strip_accents_) {
    std::u32string stripped;
    stripped.reserve(normalized.size());
    for (char32_t c : normalized) append_nfd_without_marks(c, &stripped);
    normalized.swap(stripped);
  }
  if (lowercase_) {
    std::u32string lowered;
    lowered.reserve(normalized.size());
    for (char32_t c : normalized) append_lower(c, &lowered);
    normalized.swap(lowered);
  }
  // BertPreTokenizer: whitespace separates words; each punctuation character is a word.
  size_t start = 0;
  auto flush = [&](size_t end) {
    if (end > start) word_piece(std::u32string_view(normalized).substr(start, end - start), ids);
  };
  for (size_t i = 0; i < normalized.size(); ++i) {
    CharClass cls = classify(normalized[i]);
    if (cls == CharClass::kWhitespace) {
      flush(i);
      start = i + 1;
    } else if (cls == CharClass::kPunctuation) {
      flush(i);
      word_piece(std::u32string_view(normalized).substr(i, 1), ids);
      start = i + 1;
    }
  }
  flush(normalized.size());
}

void WordPieceTokenizer::word_piece(std::u32string_view word, std::vector<int32_t>* ids) const {
  if (word.size() > max_input_chars_per_word_) {
    ids->push_back(unk_id_);
    return;
  }
  // Byte offsets of each character, so candidate pieces are substrings of one UTF-8 string.
  std::string utf8;
  std::vector<size_t> offsets;
  offsets.reserve(word.size() + 1);
  for (char32_t c : word) {
    offsets.push_back(utf8.size());
    append_utf8(c, &utf8);
  }
  offsets.push_back(utf8.size());
  size_t first_piece = ids->size();
  std::string candidate;
  size_t start = 0;
  while (start < word.size()) {
    size_t end = word.size();
    int32_t found = -1;
    while (end > start) {
      candidate.clear();
      if (start > 0) candidate = continuing_prefix_;
      candidate.append(utf8, offsets[start], offsets[end] - offsets[start]);
      auto it = vocab_.find(candidate);
      if (it != vocab_.end()) {
        found = it->second;
        break;
      }
      --end;
    }
    if (found < 0) {
      ids->resize(first_piece);
      ids->push_back(unk_id_);
      return;
    }
    ids->push_back(found);
    start = end;
  }
}

}  // namespace attncache
