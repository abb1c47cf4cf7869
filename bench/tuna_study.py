#!/usr/bin/env python3
"""The simulator's validation study: slowdown curves (fast-memory ratio → slowdown against
all-fast) for BFS on Kronecker and uniform random graphs, and their sensitivity to the slow
tier's latency, bandwidth and the page-migration cost; and GUPS's migration burst when its hot
set moves. Writes bench/results/tuna_study.json and the figures under docs/figures/.

    python3 bench/tuna_study.py        # about 5 minutes on one core
"""
import json
import pathlib
import subprocess
import sys
import tempfile

ROOT = pathlib.Path(__file__).resolve().parents[1]
TUNA = ROOT / "build" / "tuna"
BFS = ["-w", "bfs", "--scale", "17", "--llc-mb", "4"]
TPP = ["--policy", "tpp", "--time-scale", "200"]
# 256 MiB table, 32 MiB hot set taking 99% of the updates, moving halfway through.
GUPS = ["-w", "gups", "--hot-fraction", "0.99", "--updates", "20000000"]


def run_tuna(shown, plot):
    """Runs `shown` (the command as the docs quote it) and returns its JSON report."""
    with tempfile.NamedTemporaryFile(suffix=".json") as f:
        cmd = [str(TUNA), *shown[1:], "--json", f.name]
        if plot:
            cmd += ["--plot", str(ROOT / "docs" / "figures" / plot)]
        print("+", " ".join(shown), file=sys.stderr, flush=True)
        subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
        return json.load(open(f.name))


def oracle(args, plot=None):
    shown = ["build/tuna", "oracle", *args, "--target", "0.05"]  # what reproduces the curve
    r = run_tuna(shown, plot)
    return {"command": " ".join(shown),
            "minimal_fast_ratio": r["minimal_fast_ratio"],
            "curve": [(p["fast_ratio"], p["slowdown"]) for p in r["curve"]]}


def sim(args, plot=None):
    shown = ["build/tuna", "sim", *args]
    r = run_tuna(shown, plot)
    promoted = [b["pgpromote_success"] - a["pgpromote_success"]
                for a, b in zip(r["series"], r["series"][1:])]
    return {"command": " ".join(shown), "slowdown": r["slowdown"],
            "promoted": r["counters"]["pgpromote_success"],
            "demoted": r["counters"]["pgdemote_kswapd"],
            "promoted_per_interval": promoted,
            "interval_ms": (r["series"][1]["time_ns"] - r["series"][0]["time_ns"]) / 1e6
            if len(r["series"]) > 1 else None}


def main():
    (ROOT / "docs" / "figures").mkdir(parents=True, exist_ok=True)
    study = {"shape": {}, "sensitivity": {}}
    for graph in ("kronecker", "uniform"):
        for policy, extra in (("static", ["--policy", "static"]), ("tpp", TPP)):
            study["shape"][f"bfs-{graph}-{policy}"] = oracle(
                [*BFS, "--graph", graph, *extra], plot=f"tuna-bfs-{graph}-{policy}.svg")
    static = ["--policy", "static"]
    for name, extra in (("static, slow latency 150 ns", ["--slow-latency-ns", "150", *static]),
                        ("static, slow latency 300 ns", ["--slow-latency-ns", "300", *static]),
                        ("static, slow bandwidth 10 GB/s", ["--slow-bandwidth-gbps", "10", *static]),
                        ("tpp, migration 1 us/page", ["--migrate-page-ns", "1000", *TPP]),
                        ("tpp, migration 10 us/page", ["--migrate-page-ns", "10000", *TPP])):
        study["sensitivity"][name] = oracle([*BFS, "--graph", "uniform", *extra])
    study["gups_burst"] = sim([*GUPS, "--fast-ratio", "0.25", "--time-scale", "1000"],
                              plot="tuna-gups-burst.svg")
    study["gups_static"] = sim([*GUPS, "--fast-ratio", "0.25", "--policy", "static"])
    # Time dilation is not neutral: the scaled hot threshold decides which pages count as hot.
    study["time_scale"] = {
        k: oracle([*GUPS, "--policy", "tpp", "--time-scale", k]) for k in ("100", "1000", "10000")}
    out = ROOT / "bench" / "results" / "tuna_study.json"
    out.write_text(json.dumps(study, indent=1) + "\n")
    for name, s in {**study["shape"], **study["sensitivity"],
                    **{f"gups tpp time scale {k}": v for k, v in study["time_scale"].items()}}.items():
        pts = " ".join(f"{x:.2f}:{100 * y:.1f}%" for x, y in s["curve"])
        print(f"{name:34s} minimal {s['minimal_fast_ratio']}  {pts}")
    b = study["gups_burst"]
    print(f"gups burst: slowdown {100 * b['slowdown']:.1f}% (static {100 * study['gups_static']['slowdown']:.1f}%), "
          f"promoted per {b['interval_ms']:.0f} ms: {b['promoted_per_interval']}")


if __name__ == "__main__":
    main()
