#!/usr/bin/env python3
"""Golden token ids for the byte-level BPE tokenizer tests, from the reference implementation:
llama.cpp's own tokenizer, through llama-cpp-python's bindings (Llama(..., vocab_only=True)
.tokenize(text, add_bos, special)), run on the GGUF file itself.

llama-cpp-python ships only a source distribution: pip compiles llama.cpp (17 minutes on two
cores with the options below, which build nothing but the library). It is not in
scripts/reference/requirements.txt for that reason:

    CMAKE_ARGS="-DLLAVA_BUILD=OFF -DGGML_NATIVE=ON -DGGML_OPENMP=OFF -DLLAMA_BUILD_TESTS=OFF \\
                -DLLAMA_BUILD_EXAMPLES=OFF -DLLAMA_BUILD_TOOLS=OFF -DLLAMA_BUILD_SERVER=OFF" \\
        CMAKE_BUILD_PARALLEL_LEVEL=2 python3 -m pip install llama-cpp-python==0.3.36
    python3 -m pip install gguf==0.19.0 numpy transformers==5.24.0 tokenizers==0.23.3
    scripts/fetch-models.sh SmolLM2-135M-Instruct
    python3 tests/data/gguf/make_tokenizer_goldens.py

Writes into tests/data/gguf/:
  SmolLM2-135M-Instruct.token_ids.txt       llama.cpp's ids of every line of tests/data/corpus.txt
                                            (the file's own pre-tokenizer "smollm", special tokens
                                            parsed, no BOS/EOS), one line of ids per corpus line
  SmolLM2-135M-Instruct.tokenizer_cases.json  hand-picked edge cases (digits, contractions, runs
                                            of spaces, newlines, tabs, emoji, special tokens, other
                                            scripts and Unicode whitespace), each under variants of
                                            the model's tokenizer: its vocabulary and merges with
                                            tokenizer.ggml.pre set to another pre-tokenizer
                                            (gpt-2, default, llama-bpe, qwen2) or with
                                            add_bos_token/add_eos_token set, plus every 50th
                                            corpus line under the four other pre-tokenizers; and
                                            byte vocabularies (bytes-*) whose merges cross the
                                            pre-token boundaries that Unicode 15 characters and
                                            U+180E decide, on texts made of those. A variant is the
                                            model's metadata with those keys replaced, written
                                            without tensors to a temporary file for llama.cpp.

Also prints how two other implementations agree with llama.cpp on the corpus (not goldens):
transformers' own GGUF tokenizer conversion (AutoTokenizer with gguf_file=), and a Hugging Face
`tokenizers` pipeline built from the GGUF vocabulary and merges with llama.cpp's smollm
pre-tokenizer (Split on \\p{N}, isolated, then ByteLevel with the GPT-2 expression).
"""
import importlib.metadata
import json
import pathlib
import sys
import tempfile

import gguf

HERE = pathlib.Path(__file__).resolve().parent
ROOT = HERE.parents[2]
MODEL = "SmolLM2-135M-Instruct"
GGUF_PATH = ROOT / "models" / MODEL / f"{MODEL}.Q4_1.gguf"
CORPUS = ROOT / "tests" / "data" / "corpus.txt"
SAMPLE_EVERY = 50

EDGE_CASES = [
    "12345",
    "1234567890 3.14159 -42 1,000,000 2024-05-06",
    "I'm you're we've they'll she'd it's don't",
    "I'M YOU'RE WE'VE THEY'LL SHE'D IT'S DON'T 'S 'sss ''s",
    "multiple   spaces    here",
    "  leading and trailing  ",
    " ",
    "   ",
    "tabs\tand\t\ttabs \t mixed",
    "new\nline\n\nparagraph\r\nwindows\r\n",
    "\n",
    "\n\n\n",
    "  \n  x",
    "emoji 😀🎉👍🏽 and a family 👨‍👩‍👧 ok",
    "<|im_start|>user\nHello<|im_end|>\n<|im_start|>assistant\n",
    "<|im_start|><|im_end|><|endoftext|>",
    "text<|endoftext|>more",
    "<|im_start partial <|im_end",
    "<repo_name>x<reponame>y<filename>",
    "中文分词测试，１２３。《标题》",
    "Привет, мир! 123",
    "Žluťoučký kůň úpěl ďábelské ódy.",
    "مرحبا ١٢٣ بالعالم",
    "नमस्ते दुनिया १२३",
    "สวัสดีชาวโลก",
    "안녕하세요 세계",
    "こんにちは世界、カタカナ",
    "Roman Ⅻ, superscript x² ½ ¾",
    "decomposed e\u0301 and composed é, ß, İstanbul",
    "nbsp a\u00a0b, ideographic x\u3000y, nel \u0085, line sep \u2028 para \u2029",
    "mongolian vowel separator a\u180eb",
    "\x1b[31mred\x1b[0m and \x1b[1;32mbold green\x1b[0m",
    "def f(x):\n    return x**2  # comment\n",
    "https://example.com/a?b=c&d=e#frag",
    "a" * 300,
    "9" * 50,
    "hello'world it''s",
    "private \ue000 use and noncharacter \uffff",
    "",
]

# Where llama.cpp's character classes and PCRE2's differ: letters, digits and punctuation assigned
# in Unicode 15 and 15.1, which llama.cpp's tables know and PCRE2 10.42's do not (Kawi letters,
# digits and punctuation, Kaktovik numerals, CJK extension H, Nag Mundari, Devanagari extended-A),
# and U+180E. SmolLM2's merges never join their bytes, so they are tokenized under the byte
# vocabularies below, whose merges join bytes across the places where the classes decide
# pre-token boundaries.
CLASS_CASES = [
    "a\U00011F04 \U00011F05\U00011F06b",
    "\U00011F50\U00011F51 \U0001D2C0\U0001D2C1 \U0001E4F0\U0001E4F1",
    "x\U00031350\U00031351 \U0001E4D0\U0001E4D1",
    "\U00011B00\U00011B01! \U00011F43? x\U00011F44",
    # U+180E MONGOLIAN VOWEL SEPARATOR: whitespace to PCRE2, a format character to llama.cpp.
    "a \u180eb \u180e\u180e c\u180e",
]


def byte_chars():
    """GPT-2's bytes_to_unicode: the printable character that stands for each byte."""
    printable = [*range(0x21, 0x7F), *range(0xA1, 0xAD), *range(0xAE, 0x100)]
    chars, n = {}, 0
    for b in range(256):
        if b in printable:
            chars[b] = chr(b)
        else:
            chars[b] = chr(0x100 + n)
            n += 1
    return [chars[b] for b in range(256)]


def byte_vocabulary(pre):
    """The 256 byte characters and merges that join the bytes of neighbouring characters: a
    letter or a space and the first byte of a 4- or 3-byte character ("a" + F0, " " + E1), the
    last byte of one and the first of the next (84/90/91/... + F0), a last byte and "!", "?", "b".
    """
    c = byte_chars()
    pairs = [(c[ord("a")], c[0xF0]), (c[ord("x")], c[0xF0])]
    pairs += [(c[b], c[0xF0]) for b in (0x84, 0x85, 0x90, 0x91, 0x80, 0x81, 0xB0, 0x8D, 0x8E)]
    pairs += [(c[b], c[ord(x)]) for b in (0x80, 0x81, 0x83, 0x84, 0x8E) for x in "!?b"]
    pairs += [(c[ord(" ")], c[0xE1]), (c[ord("c")], c[0xE1])]
    tokens = c + [a + b for a, b in pairs]
    return {"tokenizer.ggml.pre": pre, "tokenizer.ggml.tokens": tokens,
            "tokenizer.ggml.token_type": [1] * len(tokens),
            "tokenizer.ggml.merges": [f"{a} {b}" for a, b in pairs]}


# Tokenizer variants: the model's metadata with these keys replaced, and the texts each is tried on.
VARIANTS = {
    "smollm": ({}, "edge"),
    "smollm+bos+eos": ({"tokenizer.ggml.add_bos_token": True,
                        "tokenizer.ggml.add_eos_token": True}, "edge"),
    "gpt-2": ({"tokenizer.ggml.pre": "gpt-2"}, "edge+corpus"),
    "default": ({"tokenizer.ggml.pre": "default"}, "edge+corpus"),
    "llama-bpe": ({"tokenizer.ggml.pre": "llama-bpe"}, "edge+corpus"),
    "qwen2": ({"tokenizer.ggml.pre": "qwen2"}, "edge+corpus"),
}
VARIANTS.update({f"bytes-{pre}": (byte_vocabulary(pre), "classes")
                 for pre in ("smollm", "default", "llama-bpe", "qwen2")})


def write_variant(reader, overrides, path):
    arch = reader.fields["general.architecture"].contents()
    w = gguf.GGUFWriter(str(path), arch)
    for key, field in reader.fields.items():
        if key.startswith("GGUF.") or key == "general.architecture" or key in overrides:
            continue
        vtype = field.types[0]
        sub = field.types[-1] if vtype == gguf.GGUFValueType.ARRAY else None
        w.add_key_value(key, field.contents(), vtype, sub_type=sub)
    T = gguf.GGUFValueType
    for key, value in overrides.items():
        if isinstance(value, list):
            sub = T.STRING if isinstance(value[0], str) else T.INT32
            w.add_key_value(key, value, T.ARRAY, sub_type=sub)
        else:
            w.add_key_value(key, value, T.BOOL if isinstance(value, bool) else T.STRING)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


def compare_others(lines, golden):
    """How transformers' GGUF conversion and a tokenizers smollm pipeline agree with llama.cpp."""
    from transformers import AutoTokenizer

    hf = AutoTokenizer.from_pretrained(str(GGUF_PATH.parent), gguf_file=GGUF_PATH.name)
    got = [hf.encode(line, add_special_tokens=False) for line in lines]
    diff = [i for i, (a, b) in enumerate(zip(got, golden)) if a != b]
    print(f"transformers {importlib.metadata.version('transformers')} GGUF conversion: "
          f"{len(lines) - len(diff)}/{len(lines)} corpus lines equal llama.cpp's ids"
          + (f"; first differing lines {diff[:10]}" if diff else ""))

    import tokenizers
    from tokenizers import Regex, models, pre_tokenizers, decoders

    r = gguf.GGUFReader(str(GGUF_PATH))
    tokens = r.fields["tokenizer.ggml.tokens"].contents()
    types = r.fields["tokenizer.ggml.token_type"].contents()
    merges = [tuple(m.split(" ", 1)) for m in r.fields["tokenizer.ggml.merges"].contents()]
    tok = tokenizers.Tokenizer(models.BPE({t: i for i, t in enumerate(tokens)}, merges))
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(r"\p{N}"), behavior="isolated"),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True),
    ])
    tok.decoder = decoders.ByteLevel()
    tok.add_special_tokens([tokens[i] for i, t in enumerate(types) if t in (2, 3, 4)])
    got = [e.ids for e in tok.encode_batch(lines, add_special_tokens=False)]
    diff = [i for i, (a, b) in enumerate(zip(got, golden)) if a != b]
    print(f"tokenizers {tokenizers.__version__} pipeline (Split \\p{{N}} + ByteLevel): "
          f"{len(lines) - len(diff)}/{len(lines)} corpus lines equal llama.cpp's ids"
          + (f"; first differing lines {diff[:10]}" if diff else ""))


def main():
    from llama_cpp import Llama

    if not GGUF_PATH.exists():
        sys.exit(f"{GGUF_PATH} is absent: scripts/fetch-models.sh {MODEL}")
    lines = CORPUS.read_text(encoding="utf-8").split("\n")[:-1]
    versions = {p: importlib.metadata.version(p) for p in ("llama-cpp-python", "gguf")}

    llm = Llama(model_path=str(GGUF_PATH), vocab_only=True, verbose=False)
    golden = [llm.tokenize(line.encode(), add_bos=False, special=True) for line in lines]
    for line, ids in zip(lines, golden):
        # llama.cpp's detokenizer (no space clean-up for smollm) gives the line back.
        assert llm.detokenize(ids, special=True).decode() == line, line
    with open(HERE / f"{MODEL}.token_ids.txt", "w") as out:
        for ids in golden:
            out.write(" ".join(map(str, ids)) + "\n")
    print(f"{len(lines)} corpus lines, {sum(map(len, golden))} tokens")

    reader = gguf.GGUFReader(str(GGUF_PATH))
    cases = []
    with tempfile.TemporaryDirectory() as tmp:
        for name, (overrides, which) in VARIANTS.items():
            path = pathlib.Path(tmp) / f"{name}.gguf"
            write_variant(reader, overrides, path)
            v = Llama(model_path=str(path), vocab_only=True, verbose=False)
            texts = [(t, "edge") for t in (CLASS_CASES if which == "classes" else EDGE_CASES)]
            if which == "edge+corpus":  # (the smollm corpus ids are in token_ids.txt already)
                texts += [(lines[i], f"corpus:{i}") for i in range(0, len(lines), SAMPLE_EVERY)]
            for text, source in texts:
                for add_special, parse_special in ((False, True), (True, True), (False, False)):
                    if source != "edge" and (add_special or not parse_special):
                        continue
                    if not add_special and name == "smollm+bos+eos":
                        continue
                    ids = v.tokenize(text.encode(), add_bos=add_special, special=parse_special)
                    case = {"variant": name, "add_special": add_special,
                            "parse_special": parse_special, "ids": ids}
                    if source == "edge":
                        case["text"] = text
                    else:
                        case["corpus_line"] = int(source.split(":")[1])
                    cases.append(case)
            del v
    doc = {
        "reference": f"llama.cpp via llama-cpp-python {versions['llama-cpp-python']} "
                     f"(Llama(vocab_only=True).tokenize), variants written by gguf "
                     f"{versions['gguf']}",
        "model": f"models/{MODEL}/{GGUF_PATH.name}",
        "variants": {name: overrides for name, (overrides, _) in VARIANTS.items()},
        "cases": cases,
    }
    with open(HERE / f"{MODEL}.tokenizer_cases.json", "w") as out:  # one case per line
        out.write("{\n")
        for key in ("reference", "model"):
            out.write(f' "{key}": {json.dumps(doc[key])},\n')
        out.write(' "variants": {\n')
        out.write(",\n".join(f"  {json.dumps(name)}: {json.dumps(v, ensure_ascii=False)}"
                              for name, v in doc["variants"].items()))
        out.write('\n },\n "cases": [\n')
        out.write(",\n".join(json.dumps(c, ensure_ascii=False) for c in cases))
        out.write("\n ]\n}\n")
    print(f"{len(cases)} cases over {len(VARIANTS)} variants")
    for name in VARIANTS:
        print(f"  {name}: {sum(c['variant'] == name for c in cases)} cases")

    compare_others(lines, golden)


if __name__ == "__main__":
    main()
