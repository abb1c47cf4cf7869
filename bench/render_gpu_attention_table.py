#!/usr/bin/env python3
"""Markdown tables from one run of `device_run.sh attention-SIZE` (gpu_decoder_bench
--attention-only beside gpu_decoder_torch.py attention on the same machine).

    render_gpu_attention_table.py OURS.json TORCH.json
"""
import argparse
import json


def by_shape(results):
    return {(r["batch"], r["tokens"]): r for r in results}


REUSE_KERNELS = [f"reuse{fmt}{rows}_ms" for fmt in ("", "_p8", "_fp8")
                 for rows in ("", "_128_rows", "_grouped", "_grouped_persistent")]


def reuse_cells(r, key, kernels):
    """The µs of each of `kernels` (row-count suffixes) for one map format."""
    times = [r.get(key + suffix + "_ms") for suffix in kernels]
    return " / ".join("–" if t is None else f"{t * 1e3:.1f}" for t in times)


def kernel_table(ours, torch):
    t = by_shape(torch["results"])
    # The P·V ceiling: half of cuBLAS's dense batched P·V (a causal map has half the products).
    ceiling = any("pv_dense_bmm_ms" in p for p in t.values())
    # The 128-row kernels multiply with wgmma in the sm_90a image, else 4 warps × 32 rows of mma.sync.
    wide = {"wgmma": "wgmma"}.get(ours.get("wide_kernels_multiply_with"), "4 warps × 32 rows")
    # Newer runs also time the grouped reuse kernel (the query heads sharing a KV head in one
    # CTA; one CTA per unit, and persistent), null where it does not apply.
    kernels = ["", "_128_rows"] + [
        suffix for suffix in ("_grouped", "_grouped_persistent")
        if any(r.get(f"reuse_p8{suffix}_ms") is not None for r in ours["results"])]
    kinds = " / ".join({"": "64", "_128_rows": "128 rows", "_grouped": "grouped",
                        "_grouped_persistent": "persistent"}[k] for k in kernels)
    rows = [f"| batch × tokens | ours, 64-row blocks | ours, 128-row ({wide}) | "
            + "TFLOP/s | PyTorch flash | PyTorch SDPA default | ours vs flash | "
            f"ours vs SDPA default | reuse bf16, {kinds} | reuse P8, {kinds} | "
            f"reuse FP8, {kinds} |" + (" cuBLAS dense P·V ÷ 2 | best reuse vs it |" if ceiling else ""),
            "|---" * (11 + 2 * ceiling) + "|"]
    us = lambda x: f"{x * 1e3:.1f}"
    for r in ours["results"]:
        p = t.get((r["batch"], r["tokens"]), {})
        best = min(r["exact_ms"], r["exact_128_rows_ms"])
        flops = r["exact_tflops"] * r["exact_ms"] / best
        flash, sdpa = p.get("flash_attention_one_layer_ms"), p.get("sdpa_attention_one_layer_ms")
        row = (f"| {r['batch']} × {r['tokens']} | {us(r['exact_ms'])} | "
               f"{us(r['exact_128_rows_ms'])} | ")
        row += (f"{flops:.0f} | {us(flash) if flash else '–'} | {us(sdpa) if sdpa else '–'} | "
                f"{flash / best:.2f}× | {sdpa / best:.2f}× | "
                f"{reuse_cells(r, 'reuse', kernels)} | {reuse_cells(r, 'reuse_p8', kernels)} | "
                f"{reuse_cells(r, 'reuse_fp8', kernels)} |")
        if ceiling:
            half = p["pv_dense_bmm_ms"] / 2 if "pv_dense_bmm_ms" in p else None
            reuse = min(r[k] for k in REUSE_KERNELS if r.get(k) is not None)
            row += (f" {us(half)} | {half / reuse:.2f}× |" if half else " – | – |")
        rows.append(row)
    return "\n".join(rows)


def order_table(ours):
    """The grouped kernel's unit orders (P8), against the faster row count, where timed."""
    timed = [r for r in ours["results"] if r.get("reuse_p8_grouped_orders")]
    if not timed:
        return ""
    orders = list(timed[0]["reuse_p8_grouped_orders"])
    rows = ["| batch × tokens | P8, best of 64 / 128 rows | "
            + " | ".join(f"{o.replace('_', ' ')}: one CTA per unit / persistent" for o in orders)
            + " |", "|---" * (2 + len(orders)) + "|"]
    for r in timed:
        best = min(r["reuse_p8_ms"], r["reuse_p8_128_rows_ms"])
        cells = []
        for o in orders:
            t = r["reuse_p8_grouped_orders"][o]
            cells.append(" / ".join(f"{t[k] * 1e3:.1f} ({best / t[k]:.2f}×)"
                                    for k in ("one_cta_per_unit_ms", "persistent_ms")))
        rows.append(f"| {r['batch']} × {r['tokens']} | {best * 1e3:.1f} | " + " | ".join(cells)
                    + " |")
    return "\n".join(rows)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("ours")
    ap.add_argument("torch")
    args = ap.parse_args()
    ours, torch = (json.load(open(p)) for p in (args.ours, args.torch))
    print(f"{ours['device']}; {torch.get('torch', '')}; µs per launch (CUDA events), one layer, "
          f"{ours['config']['heads']} heads of {ours['config']['head_dim']}, "
          f"{ours['config']['kv_heads']} KV heads, causal\n")
    print(kernel_table(ours, torch))
    orders = order_table(ours)
    if orders:
        print("\nThe grouped reuse kernel's unit orders, P8, µs (× the faster row count):\n")
        print(orders)

if __name__ == "__main__":
    main()
