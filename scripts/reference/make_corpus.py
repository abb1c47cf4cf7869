#!/usr/bin/env python3
"""Builds tests/data/corpus.txt: real text from Debian's fortune packages (English, German,
Spanish, Italian, Russian, Czech, Chinese), one fortune per line, deterministic sample.

    apt-get install fortunes fortunes-de fortunes-es fortunes-it fortunes-ru fortunes-cs fortunes-zh
    python3 scripts/reference/make_corpus.py

Lines keep what the files hold (accents, CJK, the ANSI colour escapes of the Chinese files),
except that each fortune's internal newlines become spaces.
"""
import pathlib
import random

ROOT = pathlib.Path("/usr/share/games/fortunes")
OUT = pathlib.Path(__file__).resolve().parents[2] / "tests" / "data" / "corpus.txt"
SOURCES = {  # glob under ROOT -> lines to sample
    "*": 1500,
    "de/*": 300,
    "es/*": 300,
    "it/*": 200,
    "ru/*": 300,
    "cs/*": 200,
    "{chinese,tang300,song100}": 150,
}


def fortunes(pattern):
    if pattern.startswith("{"):
        paths = [ROOT / name for name in pattern.strip("{}").split(",")]
    else:
        paths = sorted(ROOT.glob(pattern))
    for path in paths:
        if not path.is_file() or path.suffix in (".dat", ".u8") or path.is_symlink():
            continue
        try:
            text = path.read_bytes().decode("utf-8")
        except UnicodeDecodeError:
            continue  # legacy 8-bit files
        for item in text.split("\n%\n"):
            line = " ".join(part.strip() for part in item.strip().split("\n"))
            if 10 <= len(line) <= 1500:
                yield line


def main():
    rng = random.Random(20261124)
    lines = []
    for pattern, count in SOURCES.items():
        pool = sorted(set(fortunes(pattern)))
        lines += rng.sample(pool, min(count, len(pool)))
    rng.shuffle(lines)
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text("\n".join(lines) + "\n", encoding="utf-8")
    print(f"{OUT}: {len(lines)} lines")


if __name__ == "__main__":
    main()
