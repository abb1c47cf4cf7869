#!/usr/bin/env python3
"""Markdown tables from bench/results/gpu_bench.json and gpu_torch_bench.json (one H100 run).

    bench/render_gpu_table.py bench/results/gpu_bench.json bench/results/gpu_torch_bench.json
"""
import json
import sys


def ms(r, key):
    v = r.get(key)
    return v["median_ms"] if isinstance(v, dict) else None


def main():
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    ours = json.load(open(sys.argv[1]))
    torch = {(r["batch"], r["tokens"]): r for r in json.load(open(sys.argv[2]))["results"]}
    print(f"Device: {ours['device']}\n")
    print("End to end, ms per call (ids in host memory → embeddings in host memory), median:\n")
    print("| batch × tokens | ours exact (graph) | ours eager | PyTorch plain + graph | "
          "PyTorch plain eager | torch.compile | HF sdpa eager | HF sdpa + graph | "
          "ours vs best PyTorch | ours tokens/s |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for r in ours["results"]:
        t = torch.get((r["batch"], r["tokens"]), {})
        best = min(x for x in (ms(t, "plain_graph"), ms(t, "plain_eager"), ms(t, "plain_compiled"),
                               ms(t, "hf_eager"), ms(t, "hf_graph")) if x is not None)
        cells = [ms(r, "exact_graph"), ms(r, "exact_eager"), ms(t, "plain_graph"),
                 ms(t, "plain_eager"), ms(t, "plain_compiled"), ms(t, "hf_eager"),
                 ms(t, "hf_graph")]
        text = " | ".join("–" if c is None else f"{c:.3f}" for c in cells)
        print(f"| {r['batch']} × {r['tokens']} | {text} | {best / ms(r, 'exact_graph'):.2f}× | "
              f"{r['exact_tokens_per_s'] / 1e6:.2f} M |")

    print("\nAttnCache per hit (every layer and head reuses maps resident in GPU memory), ms per "
          "call with CUDA graphs:\n")
    print("| batch × tokens | exact | reuse bf16 maps | per hit | reuse P8 maps | per hit | "
          "reuse FP8 maps | per hit | maps, all layers (bf16) | "
          "worst cosine to exact (bf16 / P8 / FP8) |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for r in ours["results"]:
        print(f"| {r['batch']} × {r['tokens']} | {ms(r, 'exact_graph'):.3f} | "
              f"{ms(r, 'reuse_graph'):.3f} | {r['reuse_speedup_per_hit']:.2f}× | "
              f"{ms(r, 'reuse_p8_graph'):.3f} | {r['reuse_p8_speedup_per_hit']:.2f}× | "
              f"{ms(r, 'reuse_fp8_graph'):.3f} | {r['reuse_fp8_speedup_per_hit']:.2f}× | "
              f"{r['map_bytes_all_layers'] / 1e6:.1f} MB | "
              f"{r['reuse_worst_cosine_to_exact']:.5f} / {r['reuse_p8_worst_cosine_to_exact']:.5f}"
              f" / {r['reuse_fp8_worst_cosine_to_exact']:.5f} |")

    print("\nOne layer's attention alone (µs, CUDA events over 20 back-to-back launches; maps "
          "rotated so they come from HBM, not L2):\n")
    print("| batch × tokens | ours exact | TFLOP/s | PyTorch SDPA | SDPA flash | ours reuse bf16 | "
          "TB/s | ours reuse P8 | TB/s | ours reuse FP8 | exact + record P |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for r in ours["results"]:
        a = r["attention_kernels_one_layer"]
        t = torch.get((r["batch"], r["tokens"]), {})
        sdpa = t.get("sdpa_attention_one_layer_ms")
        flash = t.get("flash_attention_one_layer_ms")
        print(f"| {r['batch']} × {r['tokens']} | {a['exact_ms'] * 1e3:.1f} | "
              f"{a['exact_tflops']:.0f} | {sdpa * 1e3 if sdpa else float('nan'):.1f} | "
              f"{flash * 1e3 if flash else float('nan'):.1f} | {a['reuse_ms'] * 1e3:.1f} | "
              f"{a['reuse_tbps']:.2f} | {a['reuse_p8_ms'] * 1e3:.1f} | {a['reuse_p8_tbps']:.2f} | "
              f"{a['reuse_fp8_ms'] * 1e3:.1f} | {a['exact_record_ms'] * 1e3:.1f} |")

    print("\nWhere our time goes (eager calls, CUDA events between phases, ms per call):\n")
    print("| batch × tokens | path | Q/K/V GEMM | attention | other GEMMs | LayerNorm, "
          "embeddings, copies |")
    print("|---|---|---|---|---|---|")
    for r in ours["results"]:
        for name, key in (("exact", "phases_exact_eager"), ("reuse", "phases_reuse_eager")):
            p = r[key]
            print(f"| {r['batch']} × {r['tokens']} | {name} | {p['qkv_ms']:.3f} | "
                  f"{p['attention_ms']:.3f} | {p['gemm_ms']:.3f} | {p['other_ms']:.3f} |")


if __name__ == "__main__":
    main()
