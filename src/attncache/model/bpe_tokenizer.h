// The byte-level BPE tokenizer of GGUF models (tokenizer.ggml.model = "gpt2"), as llama.cpp runs
// it: special tokens (control, user-defined and unknown types) are split out of the raw text
// first, longest first; each remaining fragment is cut into pre-tokens by the regular expressions
// that tokenizer.ggml.pre names; each pre-token's bytes are mapped to GPT-2's printable byte
// alphabet and merged pair by pair in order of merge rank. Ids equal llama.cpp's; see
// tests/attncache/bpe_tokenizer_test.cc and tests/data/gguf/make_tokenizer_goldens.py.
//
// The same machinery runs a Hugging Face tokenizer.json of the same kind (a "BPE" model behind a
// ByteLevel pre-tokenizer, as GPT-2, Llama 3, SmolLM and Qwen2 ship): added tokens are the
// special tokens (control when "special", user-defined otherwise), the Split / Digits /
// ByteLevel pre-tokenizers become the expressions, an NFC normalizer runs on the text between
// special tokens. Ids equal transformers'; see tests/attncache/bpe_tokenizer_json_test.cc and
// tests/data/llama_hf/make_goldens.py.
#pragma once

#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "attncache/model/gguf.h"

namespace attncache {

class BpeTokenizer {
 public:
  // Token types of tokenizer.ggml.token_type, numbered as in the file.
  enum class TokenType : int32_t {
    kUndefined = 0,
    kNormal = 1,
    kUnknown = 2,
    kControl = 3,
    kUserDefined = 4,
    kUnused = 5,
    kByte = 6,
  };

  // Reads tokenizer.ggml.{model, pre, tokens, merges, token_type, bos/eos/unknown/padding
  // token ids, add_bos_token, add_eos_token}. Throws core::Error (bad input) naming the file and
  // the problem: a model other than "gpt2", a pre-tokenizer it does not implement (the message
  // lists those it does), missing or malformed tokens or merges, ids out of range.
  static BpeTokenizer from_gguf(const GgufFile& gguf);

  // Reads a Hugging Face tokenizer.json, and tokenizer_config.json beside it when present. Runs:
  // model "BPE" (no byte fallback, subword prefix or suffix, dropout); normalizer none or NFC;
  // pre-tokenizer ByteLevel (without add_prefix_space), alone or last in a Sequence after Split
  // (a regex or string pattern, behavior "Isolated") and Digits; post-processor none, ByteLevel,
  // or TemplateProcessing with at most one special token before and one after the text; added
  // tokens without lstrip, rstrip or single_word. BOS / EOS are added as transformers adds them:
  // by the post-processor, unless tokenizer_config.json sets add_bos_token or add_eos_token
  // (then those, with its bos_token / eos_token). Throws core::Error (bad input) naming the file
  // and the part it cannot run (a WordPiece or Unigram model, a Metaspace pre-tokenizer, ...).
  static BpeTokenizer from_tokenizer_json(const std::string& path);

  BpeTokenizer(BpeTokenizer&&) noexcept;
  BpeTokenizer& operator=(BpeTokenizer&&) noexcept;
  ~BpeTokenizer();

  // Token ids of `text` (UTF-8). `add_special` adds BOS / EOS where the model asks for them
  // (add_bos_token / add_eos_token). With `parse_special`, control and unknown tokens written in
  // the text ("<|im_start|>") become their ids; without it they are tokenized as plain text.
  // User-defined tokens are always matched whole, as llama.cpp does. Throws core::Error (bad
  // input) on invalid UTF-8, naming the byte offset. Thread-safe.
  std::vector<int32_t> encode(std::string_view text, bool add_special,
                              bool parse_special = true) const;

  // The bytes the ids stand for: normal tokens mapped back from the byte alphabet, special tokens
  // as their text. The exact inverse of encode (no clean-up of spaces); ids that cut a multi-byte
  // character give the partial bytes. Throws core::Error (bad input) for an id out of range.
  std::string decode(std::span<const int32_t> ids) const;

  size_t vocab_size() const { return tokens_.size(); }
  const std::string& token_text(int32_t id) const { return tokens_.at(static_cast<size_t>(id)); }
  TokenType token_type(int32_t id) const { return types_.at(static_cast<size_t>(id)); }
  // The id of a token's text, or -1.
  int32_t token_id(std::string_view text) const;
  // tokenizer.ggml.pre, or for a tokenizer.json "tokenizer.json: " and its normalizer and
  // pre-tokenizer types ("tokenizer.json: NFC, Split, ByteLevel").
  const std::string& pre_type() const { return pre_; }
  int32_t bos_id() const { return bos_id_; }  // -1 when the file names none
  int32_t eos_id() const { return eos_id_; }
  int32_t unk_id() const { return unk_id_; }
  int32_t pad_id() const { return pad_id_; }
  bool add_bos() const { return add_bos_; }
  bool add_eos() const { return add_eos_; }
  // A hash of everything that decides ids (tokens, types, merges, pre-tokenizer, flags).
  uint64_t fingerprint() const { return fingerprint_; }

  // The pre-tokens of one fragment of text without special tokens, as UTF-8 substrings (exposed
  // for tests). `text` must be valid UTF-8.
  std::vector<std::string_view> pre_tokenize(std::string_view text) const;

 private:
  class Pretokenizer;
  struct Fragment {
    int32_t token = -1;  // a special token, or -1 for raw text [begin, end)
    size_t begin = 0;
    size_t end = 0;
  };

  struct Scratch;  // per-call buffers of encode

  BpeTokenizer();
  // The tables built from tokens_ and the merges: byte alphabet, merge map, special tokens.
  int32_t intern(const std::string& text);
  void build_byte_tables();
  void add_merge(const std::string& first, const std::string& second, int32_t rank);
  void collect_special();
  void partition_special(std::string_view text, bool parse_special,
                         std::vector<Fragment>* fragments) const;
  void encode_word(std::string_view word, Scratch* scratch, std::vector<int32_t>* ids) const;

  std::vector<std::string> tokens_;
  std::vector<TokenType> types_;
  std::unordered_map<std::string, int32_t> vocab_;
  std::string pre_;
  std::unique_ptr<Pretokenizer> pretokenizer_;
  bool ignore_merges_ = false;  // a pre-token that is itself a token skips the merges (llama3)
  bool nfc_ = false;            // text between special tokens is NFC-normalized first
  // A symbol the vocabulary lacks: llama.cpp's one-byte tokens of its bytes (GGUF), or as
  // Hugging Face's BPE: the unknown token (runs of them fused into one with fuse_unk), or nothing.
  bool hf_missing_symbols_ = false;
  bool fuse_unk_ = false;

  // Symbols of the merge loop: the vocabulary's ids, then texts that merges name but the
  // vocabulary lacks (ids from vocab_size() on), so a merge is a lookup on two integers.
  std::unordered_map<std::string, int32_t> extra_symbols_;
  std::vector<std::string> extra_texts_;
  struct Merge {
    int32_t rank;
    int32_t result;
  };
  std::unordered_map<uint64_t, Merge> merges_;  // (left << 32 | right) -> rank, merged symbol
  int32_t byte_symbol_[256] = {};               // symbol of each byte's printable character
  std::string byte_text_[256];                  // that character in UTF-8
  int32_t single_byte_token_[256] = {};         // the token whose text is this raw byte, or -1
  // Decoding: the byte each printable character stands for (index: code point < 0x144).
  int16_t char_byte_[0x144] = {};

  std::vector<int32_t> special_;  // special token ids, longest text first
  int32_t bos_id_ = -1;
  int32_t eos_id_ = -1;
  int32_t unk_id_ = -1;
  int32_t pad_id_ = -1;
  bool add_bos_ = false;
  bool add_eos_ = false;
  uint64_t fingerprint_ = 0;
};

}  // namespace attncache
