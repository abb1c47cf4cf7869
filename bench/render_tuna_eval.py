#!/usr/bin/env python3
"""Renders bench/results/tuna_eval.json (from bench/tuna_eval.sh) as the results table of
docs/tuna.md, between the markers <!-- tuna-eval --> and <!-- /tuna-eval -->.

    python3 bench/render_tuna_eval.py
"""
import json
import pathlib
import re

ROOT = pathlib.Path(__file__).resolve().parents[1]


def pct(x):
    return f"{100 * x:.1f}%"


def main():
    r = json.loads((ROOT / "bench" / "results" / "tuna_eval.json").read_text())
    tau = r["target"]
    lines = [
        f"Target τ = {pct(tau)}. Sizes are fractions of the workload's footprint; "
        "“actual” is the slowdown measured at that size against all-fast; ✗ marks a violation.",
        "",
        "| workload | oracle | Tuna | actual | ours | actual | static | actual | Pond | actual | TPP, all fast |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for w in r["workloads"]:
        oracle = w["oracle"]["fast_ratio"]
        mark = lambda bad: " ✗" if bad else ""
        lines.append(
            f"| `{w['workload']}` | {f'{oracle:.2f}' if oracle is not None else 'none'} "
            f"| {w['tuna']['fast_ratio']:.2f} | {pct(w['tuna_actual_slowdown'])}{mark(w['tuna_violation'])} "
            f"| {w['ours']['fast_ratio']:.2f} | {pct(w['ours_actual_slowdown'])}{mark(w['ours_violation'])} "
            f"| {w['static_fraction']['fast_ratio']:.2f} | {pct(w['static_fraction']['actual_slowdown'])} "
            f"| {w['pond']['fast_ratio']:.0f} | {pct(w['pond']['actual_slowdown'])} "
            f"| {pct(w['tpp_all_fast_slowdown'])} |")
    s = r["summary"]
    lines += [
        "",
        "| sizing | mean fast-memory saving | violations | share of the oracle's saving |",
        "|---|---:|---:|---:|",
        f"| oracle | {pct(s['oracle_mean_saving'])} | 0 | 100% |",
        f"| Tuna (faithful) | {pct(s['tuna_mean_saving'])} | {s['tuna_violations']} | {pct(s['captured_of_oracle'])}"
        f"{' (beyond 100% only by violating τ)' if s['captured_of_oracle'] > 1 else ''} |",
        f"| ours | {pct(s['ours_mean_saving'])} | {s['ours_violations']} | {pct(s['ours_captured_of_oracle'])} |",
        f"| static fraction {s['static_fraction']:.2f} | {pct(s['static_fraction_mean_saving'])} | {s['static_fraction_violations']} | |",
        f"| Pond-style | {pct(s['pond_mean_saving'])} | {s['pond_violations']} | |",
    ]
    if "tuna_prediction_error" in s:
        t, o = s["tuna_prediction_error"], s["ours_prediction_error"]
        lines += [
            "",
            "Each model's first prediction (from the observation at full fast memory) against every "
            "point the oracle measured; no workload was in the database, so this is "
            "leave-every-workload-out:",
            "",
            "| model | mean error | p95 | max | points |",
            "|---|---:|---:|---:|---:|",
            f"| Tuna | {pct(t['mean'])} | {pct(t['p95'])} | {pct(t['max'])} | {t['points']} |",
            f"| ours | {pct(o['mean'])} | {pct(o['p95'])} | {pct(o['max'])} | {o['points']} |",
        ]
    if s.get("infeasible_workloads"):
        lines.append(f"\n{s['infeasible_workloads']} workload(s) miss τ even with all fast memory; "
                     "they are not counted as violations.")
    runs = [(f"{100 * tau:.0f}%", s)]
    for name in ("tuna_eval_tau2.json", "tuna_eval_tau10.json"):
        path = ROOT / "bench" / "results" / name
        if path.exists():
            other = json.loads(path.read_text())
            runs.append((f"{100 * other['target']:.0f}%", other["summary"]))
    if len(runs) > 1:
        runs.sort(key=lambda run: float(run[0].rstrip("%")))
        lines += [
            "",
            "Sensitivity to τ (same database, `SENSITIVITY=1 bench/tuna_eval.sh`):",
            "",
            "| τ | oracle saving | Tuna saving | Tuna violations | ours saving | ours violations | static saving | static violations |",
            "|---:|---:|---:|---:|---:|---:|---:|---:|",
        ]
        for name, t in runs:
            lines.append(
                f"| {name} | {pct(t['oracle_mean_saving'])} | {pct(t['tuna_mean_saving'])} "
                f"| {t['tuna_violations']} | {pct(t['ours_mean_saving'])} | {t['ours_violations']} "
                f"| {pct(t['static_fraction_mean_saving'])} | {t['static_fraction_violations']} |")
    doc = ROOT / "docs" / "tuna.md"
    text = doc.read_text()
    block = "<!-- tuna-eval -->\n" + "\n".join(lines) + "\n<!-- /tuna-eval -->"
    text, n = re.subn(r"<!-- tuna-eval -->.*?<!-- /tuna-eval -->", lambda m: block, text, flags=re.S)
    if n != 1:
        raise SystemExit("docs/tuna.md has no <!-- tuna-eval --> block")
    doc.write_text(text)


if __name__ == "__main__":
    main()
