#!/usr/bin/env python3
"""Markdown tables from one run of `device_run.sh attention-SIZE` (gpu_decoder_bench
--attention-only beside gpu_decoder_torch.py attention on the same machine), and, given the
end-to-end results of an earlier run (gpu_decoder_bench + gpu_decoder_torch.py time), what the new
kernels would change there.

    render_gpu_attention_table.py OURS.json TORCH.json [--e2e OURS_E2E.json TORCH_E2E.json]

The projection is arithmetic, not a measurement: the earlier end-to-end times minus, per layer,
the difference between the kernel the decoder used then and the one it uses now, both timed in
this run. The decoder's choice (src/attncache/model/llama_cuda.cc) is 128-row query blocks when
the mean sequence is long enough and there are at least two blocks per SM: then from 1536
tokens with 8 warps of 16 rows for the exact kernel only; now from 768 tokens with 4 warps of 32
rows for both kernels.
"""
import argparse
import json
import math

SMS = 132  # H100 SXM
OLD_WIDE_TOKENS, NEW_WIDE_TOKENS = 1536, 768


def wide(b, n, heads, min_tokens):
    return n >= min_tokens and b * math.ceil(n / 128) * heads >= 2 * SMS


def by_shape(results):
    return {(r["batch"], r["tokens"]): r for r in results}


def kernel_table(ours, torch):
    t = by_shape(torch["results"])
    # The 8-warp column: the run of e5772a0 timed the variant it replaced, then it was removed.
    rows = ["| batch × tokens | ours, 64-row blocks | ours, 128-row (4 warps × 32 rows) | "
            "before: 128-row (8 warps × 16) | TFLOP/s | PyTorch flash | PyTorch SDPA default | "
            "ours vs flash | ours vs SDPA default | reuse bf16, 64 / 128 rows | "
            "reuse P8, 64 / 128 | reuse FP8, 64 / 128 |",
            "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    us = lambda x: f"{x * 1e3:.1f}"
    for r in ours["results"]:
        p = t.get((r["batch"], r["tokens"]), {})
        best = min(r["exact_ms"], r["exact_128_rows_ms"])
        flops = r["exact_tflops"] * r["exact_ms"] / best
        flash, sdpa = p.get("flash_attention_one_layer_ms"), p.get("sdpa_attention_one_layer_ms")
        rows.append(
            f"| {r['batch']} × {r['tokens']} | {us(r['exact_ms'])} | {us(r['exact_128_rows_ms'])} | "
            f"{us(r['exact_128_rows_8_warps_ms']) if 'exact_128_rows_8_warps_ms' in r else '–'} | "
            f"{flops:.0f} | "
            f"{us(flash) if flash else '–'} | {us(sdpa) if sdpa else '–'} | "
            f"{flash / best:.2f}× | {sdpa / best:.2f}× | "
            f"{us(r['reuse_ms'])} / {us(r['reuse_128_rows_ms'])} | "
            f"{us(r['reuse_p8_ms'])} / {us(r['reuse_p8_128_rows_ms'])} | "
            f"{us(r['reuse_fp8_ms'])} / {us(r['reuse_fp8_128_rows_ms'])} |")
    return "\n".join(rows)


def projection_table(ours, e2e, torch_e2e):
    k = by_shape(ours["results"])
    t = by_shape(torch_e2e["results"])
    layers, heads = e2e["config"]["layers"], e2e["config"]["heads"]
    rows = ["| batch × tokens | exact, measured then | projected now | vs best PyTorch, then → "
            "projected | P8 hit, measured then | projected now | per hit, then → projected |",
            "|---|---|---|---|---|---|---|"]
    for r in e2e["results"]:
        b, n = r["batch"], r["tokens"]
        if (b, n) not in k:
            continue
        a = k[(b, n)]
        was_wide, now_wide = wide(b, n, heads, OLD_WIDE_TOKENS), wide(b, n, heads, NEW_WIDE_TOKENS)
        exact_then = a["exact_128_rows_8_warps_ms"] if was_wide else a["exact_ms"]
        exact_now = a["exact_128_rows_ms"] if now_wide else a["exact_ms"]
        reuse_now = a["reuse_p8_128_rows_ms"] if now_wide else a["reuse_p8_ms"]
        exact = r["exact_graph"]["median_ms"]
        hit = r["reuse_device_p8"]["median_ms"]
        exact_proj = exact - layers * (exact_then - exact_now)
        hit_proj = hit - layers * (a["reuse_p8_ms"] - reuse_now)
        best = t[(b, n)]["best_ms"]
        rows.append(
            f"| {b} × {n} | {exact:.2f} | {exact_proj:.2f} | {best / exact:.2f}× → "
            f"{best / exact_proj:.2f}× | {hit:.2f} | {hit_proj:.2f} | {exact / hit:.2f}× → "
            f"{exact_proj / hit_proj:.2f}× |")
    return "\n".join(rows)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("ours")
    ap.add_argument("torch")
    ap.add_argument("--e2e", nargs=2, metavar=("OURS_E2E", "TORCH_E2E"))
    args = ap.parse_args()
    ours, torch = (json.load(open(p)) for p in (args.ours, args.torch))
    print(f"{ours['device']}; {torch.get('torch', '')}; µs per launch (CUDA events), one layer, "
          f"{ours['config']['heads']} heads of {ours['config']['head_dim']}, "
          f"{ours['config']['kv_heads']} KV heads, causal\n")
    print(kernel_table(ours, torch))
    if args.e2e:
        if any("exact_128_rows_8_warps_ms" not in r for r in ours["results"]):
            raise SystemExit("--e2e projects from the kernels the decoder used before; it needs "
                             "the run that timed them (bench/results/gpu_attention_*_h100.json)")
        e2e, torch_e2e = (json.load(open(p)) for p in args.e2e)
        print("\nProjected end to end (ms per call; earlier run's times with this run's kernel "
              "differences, not measured):\n")
        print(projection_table(ours, e2e, torch_e2e))


if __name__ == "__main__":
    main()
