#!/usr/bin/env python3
"""Markdown tables from gpu_decoder_bench's JSON and gpu_decoder_torch.py's JSON for one model.

    bench/render_gpu_decoder_table.py bench/results/gpu_decoder_bench_3B_h100.json \\
        [bench/results/gpu_decoder_torch_3B_h100.json]
Without PyTorch's JSON (a run with DECODER_TORCH=0) its columns read "–".
"""
import json
import sys


GROUPED_NAMES = {"_grouped": " / grouped", "_grouped_persistent": " / persistent"}
# Peak DRAM bandwidth by device name (TB/s): the floor column's P·V reads its maps and values
# at this speed.
PEAK_TBPS = {"H100 80GB HBM3": 3.35, "H200": 4.8}


def ms(r, key):
    v = r.get(key)
    return v["median_ms"] if isinstance(v, dict) else None


def cell(v, fmt="{:.2f}"):
    return "–" if v is None else fmt.format(v)


def print_p4(ours, peak):
    """P4 maps (4-bit codes and a scale per row) against P8, per hit, maps in GPU memory."""
    c = ours["config"]
    pv_layers = c["layers"] - (1 if ours.get("last_layer_on_last_rows") else 0)
    print("\nP4 maps (4 bits a value and one fp32 scale per row) against P8, maps in GPU memory, "
          "ms per call and speed-up over our exact path; back to back and with exact calls "
          "alternating. The floor: the P4 hit if its P·V ran at the DRAM floor of its map and "
          "value reads. One layer's reuse kernel alone (µs): P8's fastest variant, P4 with "
          "64-row blocks and grouped (persistent, four bands):\n")
    print("| batch × tokens | exact | P8 | P8 alternating | P4 | P4 alternating | P4 floor | "
          "P4, maps in host memory | map bytes per hit (P8 / P4) | one layer: P8 / P4 / P4 grouped |")
    print("|---" * 10 + "|")
    for r in ours["results"]:
        exact = ms(r, "exact_graph")
        a = r["attention_kernels_one_layer"]
        p4 = ms(r, "reuse_device_p4")
        pv8 = min(a[k] for k in ("reuse_p8_ms", "reuse_p8_128_rows_ms", "reuse_p8_grouped_ms",
                                 "reuse_p8_grouped_persistent_ms") if a.get(k) is not None)
        pv4 = min(a[k] for k in ("reuse_p4_ms", "reuse_p4_grouped_bands_4_persistent_ms")
                  if a.get(k) is not None)
        left = p4 - pv_layers * pv4 if p4 else 0.0
        pv_bytes = (a["p4_map_bytes_per_layer"]
                    + r["batch"] * r["tokens"] * c["kv_heads"] * c["head_dim"] * 2)
        floor = (exact / (left + pv_layers * pv_bytes / (peak * 1e9))
                 if peak and left > 0 else None)

        def hit(key):
            t = ms(r, key)
            return "–" if t is None else f"{t:.2f} ({exact / t:.2f}×)"

        def alt(key):
            v = r.get(key)
            return cell(v["speedup_per_hit"] if v else None, "{:.2f}×")
        grouped = a.get("reuse_p4_grouped_bands_4_persistent_ms")
        print(f"| {r['batch']} × {r['tokens']} | {exact:.2f} | {hit('reuse_device_p8')} | "
              f"{alt('reuse_device_p8_alternating')} | {hit('reuse_device_p4')} | "
              f"{alt('reuse_device_p4_alternating')} | {cell(floor, '{:.2f}×')} | "
              f"{hit('reuse_host_p4')} | {r['map_bytes_per_hit_p8'] / 1e9:.2f} / "
              f"{r['map_bytes_per_hit_p4'] / 1e9:.2f} GB | {pv8 * 1e3:.1f} / "
              f"{a['reuse_p4_ms'] * 1e3:.1f} / {cell(grouped * 1e3 if grouped else None, '{:.1f}')} |")


def main():
    if len(sys.argv) not in (2, 3):
        sys.exit(__doc__)
    ours = json.load(open(sys.argv[1]))
    torch = ({(r["batch"], r["tokens"]): r for r in json.load(open(sys.argv[2]))["results"]}
             if len(sys.argv) == 3 else {})
    c = ours["config"]
    print(f"{ours['model']}: {c['layers']} layers, hidden {c['hidden']}, {c['heads']} heads "
          f"({c['kv_heads']} KV) of {c['head_dim']}, vocab {c['vocab']}; {ours['device']}\n")

    print("Exact path, ms per call (ids in host memory → last-token logits in host memory), "
          "median:\n")
    print("| batch × tokens | ours (graph) | PyTorch plain + graph | plain eager | HF sdpa eager | "
          "HF sdpa + graph | ours vs best PyTorch | ours tokens/s | logits vs HF: cosine, top-1 |")
    print("|---|---|---|---|---|---|---|---|---|")
    for r in ours["results"]:
        t = torch.get((r["batch"], r["tokens"]), {})
        mine = ms(r, "exact_graph")
        print(f"| {r['batch']} × {r['tokens']} | {mine:.2f} | {cell(ms(t, 'plain_graph'))} | "
              f"{cell(ms(t, 'plain_eager'))} | {cell(ms(t, 'hf_eager'))} | "
              f"{cell(ms(t, 'hf_graph'))} | "
              f"{cell(t['best_ms'] / mine if 'best_ms' in t else None, '{:.2f}×')} | "
              f"{r['exact_tokens_per_s'] / 1e3:.0f} k | "
              f"{cell(t.get('ours_vs_hf_cosine_min'), '{:.4f}')}, "
              f"{t.get('ours_vs_hf_top1_agree', '–')}/{r['batch']} |")

    peak = next((tbps for name, tbps in PEAK_TBPS.items() if name in ours["device"]), None)
    print("\nAttnCache per hit: every layer and head of every sequence reuses stored maps (all hits), "
          "ms per call and speed-up over our exact path. The bound is what a P8 hit would gain "
          "if P·V cost nothing: the P8 time less the layers' reuse kernels as timed alone "
          "(the fastest's); the floor, if P·V ran at the DRAM floor of its P8 map and value "
          f"reads ({peak or '–'} TB/s), i.e. the best any P8 reuse kernel can do:\n")
    # Newer runs also time exact and P8 hit calls alternating (robust to clock drift).
    alternating = any("reuse_device_p8_alternating" in r for r in ours["results"])
    print("| batch × tokens | exact | maps in GPU memory, bf16 | P8 | "
          + ("P8, calls alternating | " if alternating else "")
          + "bound, P·V free | floor, P·V at DRAM speed | maps in host memory, bf16 | P8 | "
          "map bytes per hit (bf16 / P8) |")
    print("|---" * (9 + alternating) + "|")
    for r in ours["results"]:
        exact = ms(r, "exact_graph")
        a = r["attention_kernels_one_layer"]
        pv = min(a[k] for k in ("reuse_p8_ms", "reuse_p8_128_rows_ms", "reuse_p8_grouped_ms",
                                "reuse_p8_grouped_persistent_ms") if a.get(k) is not None)
        p8 = ms(r, "reuse_device_p8")
        # Layers whose P·V covers every query block (the last one's covers one block per
        # sequence where the run says so, counted as left).
        pv_layers = c["layers"] - (1 if ours.get("last_layer_on_last_rows") else 0)
        left = p8 - pv_layers * pv if p8 else 0.0  # a hit's time without P·V
        bound = exact / left if left > 0 else None
        # One layer's P8 maps (half the bf16 bytes) and its value rows, read once.
        pv_bytes = (a["map_bytes_per_layer"] / 2
                    + r["batch"] * r["tokens"] * c["kv_heads"] * c["head_dim"] * 2)
        floor = (exact / (left + pv_layers * pv_bytes / (peak * 1e9))
                 if peak and left > 0 else None)

        def hit(key):
            t = ms(r, key)
            if t is None:
                est = r.get(key + "_copy_ms_estimate")
                return f"not run (copies alone ≥ {est:.0f} ms)" if est else "–"
            return f"{t:.2f} ({exact / t:.2f}×)"
        alt = r.get("reuse_device_p8_alternating")
        alt_cell = (cell(alt["speedup_per_hit"] if alt else None, "{:.2f}×") + " | "
                    if alternating else "")
        print(f"| {r['batch']} × {r['tokens']} | {exact:.2f} | {hit('reuse_device_bf16')} | "
              f"{hit('reuse_device_p8')} | {alt_cell}{cell(bound, '{:.2f}×')} | "
              f"{cell(floor, '{:.2f}×')} | "
              f"{hit('reuse_host_bf16')} | "
              f"{hit('reuse_host_p8')} | "
              f"{r['map_bytes_per_hit_bf16'] / 1e9:.2f} / {r['map_bytes_per_hit_p8'] / 1e9:.2f} GB |")

    if any("reuse_device_p4" in r for r in ours["results"]):
        print_p4(ours, peak)

    # Newer runs also time the grouped reuse kernel, one CTA per unit and persistent (null
    # where it does not apply).
    grouped = [suffix for suffix in ("_grouped", "_grouped_persistent")
               if any(r["attention_kernels_one_layer"].get(f"reuse_p8{suffix}_ms") is not None
                      for r in ours["results"])]

    def pair(a, key):  # the 64-row, 128-row and, where timed, grouped kernels (µs)
        times = [a.get(key + suffix + "_ms") for suffix in ["", "_128_rows"] + grouped]
        return " / ".join(f"{t * 1e3:.1f}" if t else "–" for t in times)

    print("\nOne layer's attention alone, µs (CUDA events; maps rotate through ≥ 256 MB so they "
          "come from HBM):\n")
    print("| batch × tokens | ours, 64-row blocks | ours, 128-row blocks | TFLOP/s | PyTorch flash | "
          "ours vs flash | PyTorch SDPA default | ours vs it | reuse bf16, 64 / 128 rows"
          + "".join(GROUPED_NAMES[g] for g in grouped) + " | reuse P8, 64 / 128"
          + "".join(GROUPED_NAMES[g] for g in grouped) + " | exact + record P |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for r in ours["results"]:
        a = r["attention_kernels_one_layer"]
        t = torch.get((r["batch"], r["tokens"]), {})
        flash = t.get("flash_attention_one_layer_ms")
        sdpa = t.get("sdpa_attention_one_layer_ms")  # cuDNN's kernel on Hopper
        wide = a.get("exact_128_rows_ms")  # absent before the 128-row kernel existed
        best = min(a["exact_ms"], wide or a["exact_ms"])
        tflops = max(a["exact_tflops"], a.get("exact_128_rows_tflops", 0))
        print(f"| {r['batch']} × {r['tokens']} | {a['exact_ms'] * 1e3:.1f} | "
              f"{cell(wide * 1e3 if wide else None, '{:.1f}')} | {tflops:.0f} | "
              f"{cell(flash * 1e3 if flash else None, '{:.1f}')} | "
              f"{cell(flash / best if flash else None, '{:.2f}×')} | "
              f"{cell(sdpa * 1e3 if sdpa else None, '{:.1f}')} | "
              f"{cell(sdpa / best if sdpa else None, '{:.2f}×')} | {pair(a, 'reuse')} | "
              f"{pair(a, 'reuse_p8')} | {a['exact_record_ms'] * 1e3:.1f} |")

    print("\nWhere our exact path's time goes (eager calls, CUDA events between phases), ms:\n")
    print("| batch × tokens | Q/K/V GEMM + RoPE | attention | other GEMMs | norms, copies, LM head | "
          "attention share |")
    print("|---|---|---|---|---|---|")
    for r in ours["results"]:
        p = r["phases_exact_eager"]
        total = p["qkv_ms"] + p["attention_ms"] + p["gemm_ms"] + p["other_ms"]
        print(f"| {r['batch']} × {r['tokens']} | {p['qkv_ms']:.2f} | {p['attention_ms']:.2f} | "
              f"{p['gemm_ms']:.2f} | {p['other_ms']:.2f} | {p['attention_ms'] / total:.0%} |")


if __name__ == "__main__":
    main()
