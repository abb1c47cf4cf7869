#!/usr/bin/env python3
"""How much faster one build's attention kernels are than another's, from the JSON that
`device_run.sh variants` leaves (variant_NAME_SIZE_ROUND.json: gpu_decoder_bench --attention-only
of each build, rounds interleaved). The best of the rounds per shape and kernel; prints, per
model size, the range of BASE time / NEW time over the shapes with at least MIN_TOKENS tokens.

    bench/compare_attention_variants.py DIR BASE NEW [--min-tokens 835]
    bench/compare_attention_variants.py bench/results/attention_variants_h100 mma_sync wgmma_all
"""
import argparse
import glob
import json
import os

KERNELS = {
    "exact, 128-row": "exact_128_rows_ms",
    "exact, 64-row": "exact_ms",
    "exact + recording P, 64-row": "exact_record_ms",
    "reuse P8, 128-row": "reuse_p8_128_rows_ms",
    "reuse P8, 64-row": "reuse_p8_ms",
    "reuse FP8, 128-row": "reuse_fp8_128_rows_ms",
    "reuse FP8, 64-row": "reuse_fp8_ms",
    "reuse bf16, 128-row": "reuse_128_rows_ms",
    "reuse bf16, 64-row": "reuse_ms",
    "reuse P8, grouped": "reuse_p8_grouped_ms",
    "reuse FP8, grouped": "reuse_fp8_grouped_ms",
    "reuse bf16, grouped": "reuse_grouped_ms",
    "reuse P8, grouped persistent": "reuse_p8_grouped_persistent_ms",
    "reuse FP8, grouped persistent": "reuse_fp8_grouped_persistent_ms",
    "reuse bf16, grouped persistent": "reuse_grouped_persistent_ms",
}


def best_times(directory, name, size):
    paths = sorted(glob.glob(os.path.join(directory, f"variant_{name}_{size}_*.json")))
    if not paths:
        raise SystemExit(f"no variant_{name}_{size}_*.json in {directory}")
    best = {}
    for path in paths:
        for r in json.load(open(path))["results"]:
            shape = best.setdefault((r["batch"], r["tokens"]), {})
            for key in KERNELS.values():
                if r.get(key) is not None:  # older builds lack some kernels
                    shape[key] = min(shape.get(key, float("inf")), r[key])
    return best


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("dir")
    parser.add_argument("base")
    parser.add_argument("new")
    parser.add_argument("--min-tokens", type=int, default=835)
    args = parser.parse_args()
    sizes = sorted({os.path.basename(p).split("_")[-2]
                    for p in glob.glob(os.path.join(args.dir, f"variant_{args.new}_*.json"))})
    print(f"| kernel (N ≥ {args.min_tokens}) | " + " | ".join(sizes) + " |")
    print("|---" * (1 + len(sizes)) + "|")
    table = {size: (best_times(args.dir, args.base, size), best_times(args.dir, args.new, size))
             for size in sizes}
    for label, key in KERNELS.items():
        cells = []
        for size in sizes:
            base, new = table[size]
            ratios = [base[s][key] / new[s][key] for s in new
                      if s[1] >= args.min_tokens and key in new[s] and key in base.get(s, {})]
            cells.append(f"{min(ratios):.2f}–{max(ratios):.2f}×" if ratios else "–")
        print(f"| {label} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
