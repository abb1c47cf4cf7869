#!/usr/bin/env python3
"""Checks `attncache tokenize` against Hugging Face `tokenizers` on every Unicode scalar value
(except U+000A, the line separator of the input), each embedded as "a<c>b <c>x" so that it is
seen inside a word, next to a space and at a word start.

    python3 -m pip install tokenizers==0.23.3
    scripts/setup.sh && python3 scripts/reference/check_tokenizer_unicode.py
"""
import pathlib
import subprocess
import sys
import tempfile

import tokenizers

ROOT = pathlib.Path(__file__).resolve().parents[2]


def main():
    model = sys.argv[1] if len(sys.argv) > 1 else "all-MiniLM-L6-v2"
    tok = tokenizers.Tokenizer.from_file(str(ROOT / "models" / model / "tokenizer.json"))
    tok.no_truncation()
    tok.no_padding()
    points = [c for c in range(0x110000) if not 0xD800 <= c <= 0xDFFF and c != 0x0A]
    texts = [f"a{chr(c)}b {chr(c)}x" for c in points]
    with tempfile.NamedTemporaryFile("w", encoding="utf-8", suffix=".txt") as f:
        f.write("\n".join(texts) + "\n")
        f.flush()
        ours = subprocess.run([str(ROOT / "build/attncache"), "tokenize", "--model", model,
                               "--input", f.name], check=True, capture_output=True,
                              text=True).stdout.split("\n")
    mismatches = 0
    for c, enc, line in zip(points, tok.encode_batch(texts), ours):
        if " ".join(map(str, enc.ids)) != line:
            mismatches += 1
            if mismatches <= 10:
                print(f"U+{c:04X}: ours {line} reference {' '.join(map(str, enc.ids))}")
    print(f"{len(points)} code points, {mismatches} mismatches")
    sys.exit(1 if mismatches else 0)


if __name__ == "__main__":
    main()
