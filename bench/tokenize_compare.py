#!/usr/bin/env python3
"""Tokenization throughput of our BPE tokenizer against llama.cpp's and Hugging Face tokenizers',
side by side on the same lines, one thread each, and on how many lines their ids equal llama.cpp's.

    cmake --build build --target tokenize_bench
    python3 bench/tokenize_compare.py [--corpus tests/data/corpus.txt] [--out bench/results/tokenize_cpu.json]

Peers (see tests/data/gguf/make_tokenizer_goldens.py for how to install llama-cpp-python):
  llama.cpp   llama-cpp-python's Llama(vocab_only=True).tokenize, one call per line (the Python
              call costs about a microsecond a line, a few percent here)
  tokenizers  a Tokenizer built from the GGUF vocabulary and merges with llama.cpp's smollm
              pre-tokenizer (Split \\p{N} isolated + ByteLevel), encode_batch with
              RAYON_NUM_THREADS=1
Each is timed for at least --min-seconds after one warm-up pass.
"""
import argparse
import importlib.metadata
import json
import os
import pathlib
import platform
import subprocess
import tempfile
import time

os.environ.setdefault("RAYON_NUM_THREADS", "1")  # before tokenizers starts its pool

ROOT = pathlib.Path(__file__).resolve().parents[1]
MODEL = ROOT / "models" / "SmolLM2-135M-Instruct" / "SmolLM2-135M-Instruct.Q4_1.gguf"


def timed(fn, min_seconds):
    fn()  # warm up
    passes, start = 0, time.perf_counter()
    while passes == 0 or time.perf_counter() - start < min_seconds:
        fn()
        passes += 1
    return (time.perf_counter() - start) / passes


def hf_tokenizer():
    import gguf
    import tokenizers
    from tokenizers import Regex, models, pre_tokenizers

    r = gguf.GGUFReader(str(MODEL))
    tokens = r.fields["tokenizer.ggml.tokens"].contents()
    types = r.fields["tokenizer.ggml.token_type"].contents()
    merges = [tuple(m.split(" ", 1)) for m in r.fields["tokenizer.ggml.merges"].contents()]
    tok = tokenizers.Tokenizer(models.BPE({t: i for i, t in enumerate(tokens)}, merges))
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(r"\p{N}"), behavior="isolated"),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True),
    ])
    tok.add_special_tokens([tokens[i] for i, t in enumerate(types) if t in (2, 3, 4)])
    return tok


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--corpus", default=str(ROOT / "tests" / "data" / "corpus.txt"))
    parser.add_argument("--min-seconds", type=float, default=3.0)
    parser.add_argument("--out", default=str(ROOT / "bench" / "results" / "tokenize_cpu.json"))
    args = parser.parse_args()
    lines = pathlib.Path(args.corpus).read_text(encoding="utf-8").split("\n")[:-1]
    nbytes = sum(len(line.encode()) for line in lines)

    with tempfile.TemporaryDirectory() as tmp:
        ids_path = pathlib.Path(tmp) / "ids.txt"
        ours = json.loads(subprocess.run(
            [str(ROOT / "build" / "bench" / "tokenize_bench"), "--gguf", str(MODEL), "--corpus",
             args.corpus, "--min-seconds", str(args.min_seconds), "--ids-out", str(ids_path)],
            check=True, capture_output=True, text=True).stdout)
        our_ids = [[int(x) for x in line.split()]
                   for line in ids_path.read_text().split("\n")[:-1]]
    rows = [{"implementation": "attncache BpeTokenizer (C++, PCRE2 JIT)",
             "seconds_per_pass": ours["seconds_per_pass"], "agrees_with_llama_cpp": None}]

    from llama_cpp import Llama
    llm = Llama(model_path=str(MODEL), vocab_only=True, verbose=False)
    encoded = [line.encode() for line in lines]
    reference = [llm.tokenize(b, add_bos=False, special=True) for b in encoded]
    rows.append({"implementation": f"llama.cpp (llama-cpp-python "
                                   f"{importlib.metadata.version('llama-cpp-python')})",
                 "seconds_per_pass": timed(lambda: [llm.tokenize(b, add_bos=False, special=True)
                                                    for b in encoded], args.min_seconds),
                 "agrees_with_llama_cpp": len(lines)})

    tok = hf_tokenizer()
    got = [e.ids for e in tok.encode_batch(lines, add_special_tokens=False)]
    rows.append({"implementation": f"HF tokenizers {importlib.metadata.version('tokenizers')} "
                                   f"(smollm pipeline, 1 thread)",
                 "seconds_per_pass": timed(lambda: tok.encode_batch(lines, add_special_tokens=False),
                                           args.min_seconds),
                 "agrees_with_llama_cpp": sum(a == b for a, b in zip(got, reference))})

    rows[0]["agrees_with_llama_cpp"] = sum(a == b for a, b in zip(our_ids, reference))
    for row in rows:
        row["mb_per_second"] = nbytes / row["seconds_per_pass"] / 1e6
        row["tokens_per_second"] = ours["tokens"] / row["seconds_per_pass"]
        row["speed_vs_ours"] = ours["seconds_per_pass"] / row["seconds_per_pass"]
    result = {"machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores",
              "cpu": subprocess.run(["sh", "-c", "lscpu | sed -n 's/^Model name: *//p'"],
                                    capture_output=True, text=True).stdout.strip(),
              "corpus": os.path.relpath(args.corpus, ROOT), "lines": len(lines), "bytes": nbytes,
              "tokens": ours["tokens"], "threads": 1, "results": rows}
    pathlib.Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    print(f"{len(lines)} lines, {nbytes / 1e6:.2f} MB, {ours['tokens']} tokens, one thread "
          f"({result['cpu']})")
    print(f"{'implementation':58} {'MB/s':>7} {'Mtok/s':>7} {'vs ours':>8} {'= llama.cpp':>12}")
    for row in rows:
        print(f"{row['implementation']:58} {row['mb_per_second']:7.2f} "
              f"{row['tokens_per_second'] / 1e6:7.2f} {row['speed_vs_ours']:8.2f} "
              f"{row['agrees_with_llama_cpp']:>12}")


if __name__ == "__main__":
    main()
