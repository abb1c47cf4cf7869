#!/usr/bin/env python3
"""Renders bench/results/embed_cpu.json as the Markdown table in docs/results-cpu.md.

    python3 bench/render_embed_table.py [bench/results/embed_cpu.json]
"""
import json
import pathlib
import sys

ROOT = pathlib.Path(__file__).resolve().parents[1]


def main():
    path = pathlib.Path(sys.argv[1] if len(sys.argv) > 1 else ROOT / "bench/results/embed_cpu.json")
    r = json.loads(path.read_text())
    print(f"Model {r['model']}, {r['threads']} threads, {r['cpu'].get('model', '?')} "
          f"({r['cpu']['cores']} cores), {r['date']}. Peers: "
          + "; ".join(r["peers"].values()) + ".")
    clocks = [row["attncache"]["profile"]["clock_ghz_measured"] for row in r["results"]]
    print(f"Measured core clock {min(clocks):.2f}–{max(clocks):.2f} GHz; peak = clock × 32 fp32 "
          f"FLOP/cycle × {r['threads']} cores.\n")
    print("| batch × tokens | attncache sent/s | ONNX Runtime sent/s | PyTorch sent/s | "
          "vs ORT | vs PyTorch | attncache ms/sentence | attention share | GEMM GFLOP/s | "
          "GEMM / peak |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for row in r["results"]:
        ours = row["attncache"]
        prof = ours["profile"]
        print(f"| {row['batch']} × {row['seq_len']} | {ours['sentences_per_second']:.1f} | "
              f"{row['onnxruntime']['sentences_per_second']:.1f} | "
              f"{row['pytorch']['sentences_per_second']:.1f} | "
              f"**{row['speedup_vs_onnxruntime']:.2f}×** | {row['speedup_vs_pytorch']:.2f}× | "
              f"{ours['per_sentence_ms']:.2f} | {prof['attention_share']:.0%} | "
              f"{prof['gemm_gflops']:.0f} | {prof['gemm_fraction_of_peak']:.0%} |")


if __name__ == "__main__":
    main()
