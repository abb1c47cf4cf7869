#!/usr/bin/env python3
"""Renders bench/results/tuna_online/*.json (from bench/tuna_online.sh) as the online-tuning
tables of docs/tuna.md, between the markers <!-- tuna-online --> and <!-- /tuna-online -->.

    python3 bench/render_tuna_online.py
"""
import json
import pathlib
import re

ROOT = pathlib.Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results" / "tuna_online"


def pct(x):
    return f"{100 * x:.1f}%"


def row(name, r, p):
    over = p["intervals_over_target"]
    bad = " ✗" if p["actual_slowdown"] > r["target"] else ""
    settled = p["first_settled_ms"]
    return (f"| {name} | {r['interval_ms'] / 1000:g} s | {p['policy']} | {pct(p['saving'])} "
            f"| {pct(p['actual_slowdown'])}{bad} | {over} of {p['intervals']} "
            f"| {pct(p['time_over_target'])} | {p['size_changes']} "
            f"| {'never' if settled is None else f'{settled:.0f} ms'} |")


def main():
    runs = {}
    for f in sorted(RESULTS.glob("*.json")):
        name, interval = f.stem.rsplit("_", 1)
        runs[(name, int(interval[:-2]))] = json.loads(f.read_text())
    header = [
        "| workload | interval | policy | saving | actual | intervals over τ | time over τ | size changes | first settled |",
        "|---|---:|---|---:|---:|---:|---:|---:|---:|",
    ]
    main_rows, oracle_rows = [], []
    for (name, interval), r in sorted(runs.items()):
        if "static_oracle_ratio" in r:
            o = r["static_oracle_ratio"]
            oracle_rows.append(f"| {name} | {'none' if o is None else f'{o:.2f}'} "
                               f"| {'—' if o is None else pct(1 - o)} |")
            main_rows += [row(name, r, p) for p in r["policies"]]
    # Sensitivity: every interval of the workloads that were run at more than one.
    multi = {n for (n, i) in runs if sum(1 for (m, _) in runs if m == n) > 1}
    sens = [row(n, runs[(n, i)], p) for (n, i) in sorted(runs) if n in multi
            for p in runs[(n, i)]["policies"]]
    tau = next(iter(runs.values()))["target"]
    lines = [
        f"Target τ = {pct(tau)}, tuning every 5 s of Linux time (5 ms simulated at time scale 1000). "
        "“Saving” is 1 − the time-averaged fast-memory size; “actual” the whole run's slowdown "
        "against an all-fast run (✗: over τ); an interval's actual slowdown compares its time "
        "with the all-fast run's over the same accesses.",
        "",
        *header, *main_rows,
        "",
        "The static oracle: one size for the whole run, the smallest within τ.",
        "",
        "| workload | static oracle | its saving |",
        "|---|---:|---:|",
        *oracle_rows,
        "",
        "Sensitivity to the tuning interval:",
        "",
        *header, *sens,
    ]
    doc = ROOT / "docs" / "tuna.md"
    text = doc.read_text()
    block = "<!-- tuna-online -->\n" + "\n".join(lines) + "\n<!-- /tuna-online -->"
    if "<!-- tuna-online -->" not in text:
        raise SystemExit("docs/tuna.md has no <!-- tuna-online --> block")
    doc.write_text(re.sub(r"<!-- tuna-online -->.*?<!-- /tuna-online -->", lambda _: block, text,
                          flags=re.S))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
