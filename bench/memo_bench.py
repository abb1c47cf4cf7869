#!/usr/bin/env python3
"""AttnCache on real workloads: builds each workload's map database and runs `attncache eval`
on its plain held-out split and on its query stream with repetition; writes one JSON with all
reports, then renders docs/results-attncache.md and the fidelity-vs-speedup figure.

    scripts/setup.sh && apt-get install fortunes fortunes-min
    python3 bench/memo_bench.py                      # all workloads, about 15 minutes on 2 cores
    python3 bench/memo_bench.py --workloads short    # one
    python3 bench/memo_bench.py --workloads passage512:P8   # 8-bit maps instead of fp16

Databases go to build/memo-dbs/<model>/<workload> (reused unless --rebuild), workloads to
build/workloads (scripts/make_workloads.py), results to bench/results/attncache_cpu.json.
"""
import argparse
import datetime
import json
import os
import pathlib
import platform
import subprocess
import sys
import time

ROOT = pathlib.Path(__file__).resolve().parents[1]
BIN = ROOT / "build" / "attncache"
MAX_LENGTH = {"short": 0, "passage128": 128, "passage512": 512}


def run(cmd):
    cmd = [str(c) for c in cmd]
    print("+", " ".join(cmd), file=sys.stderr, flush=True)
    start = time.time()
    out = subprocess.run(cmd, check=True, stdout=subprocess.PIPE, text=True).stdout
    return out, time.time() - start


def cpu_name():
    for line in pathlib.Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor()


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", default="all-MiniLM-L6-v2")
    ap.add_argument("--workloads",
                    default="short,passage128,passage512,passage128:P8,passage512:P8",
                    help="names, each with an optional :MAP_DTYPE (default F16)")
    ap.add_argument("--out", type=pathlib.Path, default=ROOT / "bench/results/attncache_cpu.json")
    ap.add_argument("--rebuild", action="store_true")
    ap.add_argument("--threads", type=int, default=0)
    args = ap.parse_args()
    if not BIN.exists():
        sys.exit("build first: scripts/setup.sh")
    wl_dir = ROOT / "build" / "workloads"
    if not (wl_dir / "short" / "corpus.txt").exists():
        run([sys.executable, ROOT / "scripts/make_workloads.py", wl_dir])
    results = {}
    if args.out.exists():
        results = json.loads(args.out.read_text())
    results.setdefault("workloads", {})
    results.update({
        "machine": {"cpu": cpu_name(), "cores": os.cpu_count(), "threads": args.threads or os.cpu_count()},
        "date": datetime.date.today().isoformat(),
        "commit": subprocess.run(["git", "-C", ROOT, "rev-parse", "--short", "HEAD"],
                                 stdout=subprocess.PIPE, text=True).stdout.strip(),
        "model": args.model,
        "command": "python3 bench/memo_bench.py",  # all workloads; see each one's own command
    })
    threads = ["--threads", str(args.threads)] if args.threads else []
    for spec in args.workloads.split(","):
        name, _, dtype = spec.partition(":")
        dtype = dtype or "F16"
        key = name if dtype == "F16" else f"{name} {dtype}"
        src = wl_dir / name
        db = ROOT / "build" / "memo-dbs" / args.model / f"{name}-{dtype}"
        entry = {"info": json.loads((src / "info.json").read_text()),
                 "max_length": MAX_LENGTH[name], "map_dtype": dtype,
                 "command": f"python3 bench/memo_bench.py --workloads {spec}"}
        if args.rebuild or not (db / "db.json").exists():
            out, seconds = run([BIN, "build", "--model", args.model, "--corpus", src / "corpus.txt",
                                "--db", db, "--max-length", MAX_LENGTH[name], "--map-dtype", dtype,
                                *threads])
            entry["build"] = {"seconds": seconds, "output": out.strip()}
        else:
            entry["build"] = results["workloads"].get(key, {}).get("build")
        entry["manifest"] = json.loads((db / "db.json").read_text())
        for split in ("heldout", "stream"):
            report = ROOT / "build" / "memo-results" / f"{args.model}-{name}-{dtype}-{split}.json"
            report.parent.mkdir(parents=True, exist_ok=True)
            run([BIN, "eval", "--model", args.model, "--db", db, "--queries", src / f"{split}.txt",
                 "--json", report, *threads])
            entry[split] = json.loads(report.read_text())
        results["workloads"][key] = entry
        args.out.write_text(json.dumps(results, indent=1) + "\n")
    run([sys.executable, ROOT / "bench/render_memo_results.py", args.out])


if __name__ == "__main__":
    main()
