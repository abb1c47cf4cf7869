#!/usr/bin/env python3
"""Checks our byte-level BPE tokenizer against llama.cpp on every Unicode scalar value (except
U+000A, the line separator of the input), under each pre-tokenizer family it implements.

Each code point c is embedded as "a<c>b <c>x1<c>2<c><c> ?<c>\\t<c>": inside a word, after a space,
between digits, doubled, after punctuation and after a tab. The vocabulary is the 256 byte
characters plus every pair of them, with all 65,536 pairs as merges, so each pre-token becomes a
chain of pair tokens and any pre-token boundary that moves changes the ids. The rest of the
metadata is SmolLM2-135M's (llama.cpp needs a loadable model), with the tokenizer keys replaced.

    (llama-cpp-python and gguf as in tests/data/gguf/make_tokenizer_goldens.py)
    cmake --build build --target tokenize_bench
    python3 scripts/reference/check_bpe_unicode.py [pre ...]   # default: all five below
"""
import pathlib
import subprocess
import sys
import tempfile

import gguf

ROOT = pathlib.Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tests" / "data" / "gguf"))
from make_tokenizer_goldens import GGUF_PATH, byte_chars, write_variant  # noqa: E402

PRE_TYPES = ["smollm", "gpt-2", "default", "llama-bpe", "qwen2"]


def pair_vocabulary(pre):
    c = byte_chars()
    pairs = [(a, b) for a in c for b in c]
    tokens = c + [a + b for a, b in pairs]
    return {"tokenizer.ggml.pre": pre, "tokenizer.ggml.tokens": tokens,
            "tokenizer.ggml.token_type": [1] * len(tokens),
            "tokenizer.ggml.merges": [f"{a} {b}" for a, b in pairs]}


def main():
    from llama_cpp import Llama

    pre_types = sys.argv[1:] or PRE_TYPES
    points = [c for c in range(0x110000) if not 0xD800 <= c <= 0xDFFF and c != 0x0A]
    texts = [f"a{chr(c)}b {chr(c)}x1{chr(c)}2{chr(c)}{chr(c)} ?{chr(c)}\t{chr(c)}" for c in points]
    reader = gguf.GGUFReader(str(GGUF_PATH))
    failed = False
    with tempfile.TemporaryDirectory() as tmp:
        corpus = pathlib.Path(tmp) / "texts.txt"
        corpus.write_text("\n".join(texts) + "\n", encoding="utf-8")
        for pre in pre_types:
            model = pathlib.Path(tmp) / f"{pre}.gguf"
            write_variant(reader, pair_vocabulary(pre), model)
            ours_path = pathlib.Path(tmp) / f"{pre}.ids"
            subprocess.run([str(ROOT / "build" / "bench" / "tokenize_bench"), "--gguf",
                            str(model), "--corpus", str(corpus), "--min-seconds", "0",
                            "--ids-out", str(ours_path)], check=True, capture_output=True)
            ours = ours_path.read_text().split("\n")
            llm = Llama(model_path=str(model), vocab_only=True, verbose=False)
            mismatches = 0
            for c, text, line in zip(points, texts, ours):
                want = " ".join(map(str, llm.tokenize(text.encode(), add_bos=False,
                                                      special=False)))
                if want != line:
                    mismatches += 1
                    if mismatches <= 5:
                        print(f"  {pre} U+{c:04X}: ours {line} llama.cpp {want}")
            print(f"{pre}: {len(points)} code points, {mismatches} mismatches", flush=True)
            failed |= mismatches > 0
            del llm
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
