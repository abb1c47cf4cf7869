#!/usr/bin/env python3
"""Renders bench/results/decoder_mmlu/*.json (from bench/decoder_mmlu.sh) as the AttnCache-on-a-
decoder table of docs/decoders.md, between <!-- decoder-mmlu --> and <!-- /decoder-mmlu -->.

    python3 bench/render_decoder_mmlu.py
"""
import json
import pathlib
import re

ROOT = pathlib.Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results" / "decoder_mmlu"
MODES = {"ours": "AttnCache, ours (0.995 + layer-0 check)",
         "paper": "AttnCache, paper's rule (0.995)",
         "paper-any": "AttnCache, any same-length prompt"}


def pct(x):
    return "-" if x is None else f"{100 * x:.1f}%"


def main():
    lines = ["| shots | path | accuracy | agrees with exact | hit rate | agrees on hits "
             "| ms / question | speedup vs exact | tokens computed | stored bytes |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for shots in (0, 1, 2):
        first = True
        for mode, label in MODES.items():
            path = RESULTS / f"shots{shots}_{mode}.json"
            if not path.exists():
                continue
            r = json.loads(path.read_text())
            by_path = {p["path"]: p for p in r["paths"]}
            rows = []
            if first:
                for name, title in (("exact", "exact"), ("prefix_kv", "prefix KV (header reused)")):
                    p = by_path[name]
                    stored = (f"{p['kv_cache_bytes'] / 1e6:.1f} MB KV" if name == "prefix_kv"
                              else "-")
                    rows.append((title, p, stored))
                first = False
            p = by_path["attncache"]
            db = r["db"]
            rows.append((label, p, f"{db['bytes_on_disk'] / 1e9:.2f} GB, "
                                   f"{db['bytes_on_disk'] / db['entries'] / 1e6:.1f} MB/prompt"))
            for title, p, stored in rows:
                lines.append(
                    f"| {shots} | {title} | {pct(p.get('accuracy'))} "
                    f"| {pct(p.get('agreement_with_exact'))} | {pct(p.get('hit_rate'))} "
                    f"| {pct(p.get('agreement_on_hits'))} | {p['ms_per_question']:.0f} "
                    f"| {p.get('speedup_vs_exact', 1.0):.2f}× "
                    f"| {pct(p['computed_tokens'] / p['prompt_tokens'])} | {stored} |")
    any_run = next(iter(sorted(RESULTS.glob("*.json"))), None)
    if any_run is None:
        raise SystemExit(f"no results in {RESULTS}")
    r = json.loads(any_run.read_text())
    header = (f"{r['model']}, {r['questions']} test questions, batch {r['batch']}, "
              f"{r['threads']} threads.\n\n")
    doc = ROOT / "docs" / "decoders.md"
    text = doc.read_text()
    table = "<!-- decoder-mmlu -->\n" + header + "\n".join(lines) + "\n<!-- /decoder-mmlu -->"
    text, n = re.subn(r"<!-- decoder-mmlu -->.*?<!-- /decoder-mmlu -->", lambda _: table, text,
                      flags=re.S)
    if n != 1:
        raise SystemExit(f"{doc}: no <!-- decoder-mmlu --> markers")
    doc.write_text(text)
    print(f"updated {doc}")


if __name__ == "__main__":
    main()
