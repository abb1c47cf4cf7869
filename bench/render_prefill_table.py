#!/usr/bin/env python3
"""Renders bench/results/prefill_cpu.json as the Markdown table in docs/decoders.md, between the
markers <!-- prefill-speed --> and <!-- /prefill-speed -->.

    python3 bench/render_prefill_table.py [bench/results/prefill_cpu.json]
"""
import json
import pathlib
import re
import sys

ROOT = pathlib.Path(__file__).resolve().parents[1]
DOC = ROOT / "docs" / "decoders.md"
BEGIN, END = "<!-- prefill-speed -->", "<!-- /prefill-speed -->"
LABELS = {"pytorch-fp32": "PyTorch fp32", "pytorch-bf16": "PyTorch bf16", "ik_llama": "ik_llama Q4_1",
          "llama.cpp": "llama.cpp Q4_1"}


def correctness(row, name):
    e = row[name]
    cell = f"{round(e['top1_agreement'] * row['batch'])}/{row['batch']}"
    if "max_abs_logit_delta_vs_attncache" in e:
        cell += f", {e['max_abs_logit_delta_vs_attncache']:.2g}"
    if "max_abs_top1_logprob_delta_vs_attncache" in e:
        cell += f", {e['max_abs_top1_logprob_delta_vs_attncache']:.2g} (log-prob)"
    return cell


def table(r):
    peers = [p for p in LABELS if p in r["peers"]]
    cpu = r["cpu"]
    lines = [
        f"Measured {r['date']} on {cpu.get('model', '?')} ({cpu['cores']} cores, "
        f"{cpu['memory_gib']} GiB), {r['threads']} threads for every engine, with `{r['command']}` "
        f"({r['wall_seconds'] / 60:.0f} min). Model `{r['model']}`. Peers: "
        + "; ".join(f"{LABELS[p]}: {r['peers'][p]}" for p in peers) + ".",
        "",
        "Prefill throughput in tokens per second (higher is better) and attncache's ratio to each "
        "peer (above 1: attncache is faster). 'Others' is the share of all CPU time that "
        "processes outside the benchmark took while the shape ran (a shared machine's noise).",
        "",
        "| batch × tokens | attncache | " + " | ".join(LABELS[p] for p in peers)
        + " | " + " | ".join(f"vs {LABELS[p]}" for p in peers) + " | attncache ms/seq | others |",
        "|---|" + "---:|" * (1 + 2 * len(peers)) + "---:|---:|",
    ]
    for row in r["results"]:
        ours = row["attncache"]
        cells = [f"{row['batch']} × {row['seq_len']}", f"**{ours['tokens_per_second']:.0f}**"]
        cells += [f"{row[p]['tokens_per_second']:.0f}" for p in peers]
        cells += [f"{row['speedup'][p]:.2f}×" for p in peers]
        cells += [f"{ours['per_sequence_ms']:.0f}", f"{row['others_cpu_share']:.0%}"]
        lines.append("| " + " | ".join(cells) + " |")
    lines += [
        "",
        "Agreement with attncache: sequences whose top-1 next token is the same, and the largest "
        "|difference| of the last token's logits (of the top-1 token's log-probability for "
        "llama-server, which returns no logits).",
        "",
        "| batch × tokens | " + " | ".join(LABELS[p] for p in peers) + " |",
        "|---|" + "---|" * len(peers),
    ]
    for row in r["results"]:
        lines.append(f"| {row['batch']} × {row['seq_len']} | "
                     + " | ".join(correctness(row, p) for p in peers) + " |")
    lines += [
        "",
        "Where attncache's time goes (shares of its prefill; GEMM GFLOP/s over the Q/K/V, output "
        "and MLP projections; attention GFLOP/s counts QKᵀ and P·V over the causal triangle):",
        "",
        "| batch × tokens | Q/K/V proj | attention | other GEMMs | LM head | other | GEMM GFLOP/s "
        "(of peak) | attention GFLOP/s |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for row in r["results"]:
        p = row["attncache"]["profile"]
        lines.append(
            f"| {row['batch']} × {row['seq_len']} | {p['qkv_share']:.0%} | "
            f"{p['attention_share']:.0%} | {p['other_gemm_share']:.0%} | {p['lm_head_share']:.1%} | "
            f"{p['other_share']:.0%} | {p['gemm_gflops']:.0f} ({p['gemm_fraction_of_peak']:.0%}) | "
            f"{p['attention_gflops']:.0f} |")
    clocks = [row["attncache"]["profile"]["clock_ghz_measured"] for row in r["results"]]
    lines += ["", f"Peak = measured core clock ({min(clocks):.2f}–{max(clocks):.2f} GHz) × 32 fp32 "
              f"FLOP/cycle × {r['threads']} cores. Load average (1 min) {r['loadavg_before'][0]:.2f} "
              f"before the run, {r['loadavg_after'][0]:.2f} after."]
    return "\n".join(lines)


def main():
    path = pathlib.Path(sys.argv[1] if len(sys.argv) > 1 else ROOT / "bench/results/prefill_cpu.json")
    r = json.loads(path.read_text())
    text = DOC.read_text()
    block = BEGIN + "\n" + table(r) + "\n" + END
    text, n = re.subn(re.escape(BEGIN) + ".*?" + re.escape(END), lambda m: block, text, flags=re.S)
    if n != 1:
        raise SystemExit(f"{DOC} has no {BEGIN} ... {END} block")
    DOC.write_text(text)
    print("updated", DOC)


if __name__ == "__main__":
    main()
