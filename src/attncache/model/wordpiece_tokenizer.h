// The BERT tokenizer as Hugging Face `tokenizers` defines it in tokenizer.json: added (special)
// tokens matched on the raw text, BertNormalizer (control-character cleanup, CJK splitting,
// accent stripping, lower-casing), BertPreTokenizer (whitespace and punctuation), WordPiece, and
// the [CLS] … [SEP] template. Ids equal the reference's; see tests/attncache/tokenizer_test.cc.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

namespace attncache {

struct Encoding {
  std::vector<int32_t> ids;
  bool truncated = false;
};

class WordPieceTokenizer {
 public:
  // Parses tokenizer.json. Throws core::Error (bad input) for malformed files or components
  // other than the BERT ones above.
  static WordPieceTokenizer from_file(const std::string& path);

  // Encodes one text. `max_tokens` (> number of template tokens) bounds the result, template
  // included; longer inputs keep their first tokens and set `truncated`. Throws core::Error
  // (bad input) on invalid UTF-8.
  Encoding encode(std::string_view text, size_t max_tokens) const;

  // The word pieces of `text` before the template is applied (no truncation).
  std::vector<int32_t> encode_words(std::string_view text) const;

  size_t vocab_size() const { return vocab_.size(); }
  size_t template_size() const { return prefix_.size() + suffix_.size(); }
  // A hash of everything that decides ids (vocab, options, template): stored maps and golden
  // files record it so a different tokenizer is detected.
  uint64_t fingerprint() const { return fingerprint_; }

 private:
  struct AddedToken {
    std::string content;
    int32_t id;
  };

  void normalize_and_split(std::u32string_view text, std::vector<int32_t>* ids) const;
  void word_piece(std::u32string_view word, std::vector<int32_t>* ids) const;

  std::unordered_map<std::string, int32_t> vocab_;
  std::vector<AddedToken> added_;  // longest first
  std::vector<int32_t> prefix_;
  std::vector<int32_t> suffix_;
  int32_t unk_id_ = 0;
  std::string continuing_prefix_ = "##";
  size_t max_input_chars_per_word_ = 100;
  bool clean_text_ = true;
  bool handle_chinese_chars_ = true;
  bool strip_accents_ = true;
  bool lowercase_ = true;
  uint64_t fingerprint_ = 0;
};

}  // namespace attncache
