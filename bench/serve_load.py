#!/usr/bin/env python3
"""Load test of `attncache serve` on loopback with wrk: the exact path and AttnCache side by
side at 1, 8 and 64 concurrent clients (the two servers take turns point by point), the openai
package's compatibility check, and a bounded soak under overload (small queue, 64 clients) that
checks every request is answered or shed with 429/503, no socket errors, the server alive and
its memory flat. Writes bench/results/serve/load.json, then renders docs/serving.md's table.

    bench/serve_load.sh            # installs wrk, the openai venv and the workload, then this
    python3 bench/serve_load.py --duration 10 --soak 30

Workload: scripts/make_workloads.py's passage128 (Debian fortunes; 600 stored passages, a query
stream of 300 with 25% exact repeats, 50% near-duplicates, 25% fresh texts), 128 tokens after
truncation, one text per request (OpenAI embeddings body). The map database (P8 maps) is built
once into build/serve-bench/db.
"""
import argparse
import datetime
import json
import os
import pathlib
import platform
import re
import signal
import subprocess
import threading
import sys
import time
import urllib.request

ROOT = pathlib.Path(__file__).resolve().parents[1]
BIN = ROOT / "build" / "attncache"
MODEL = "all-MiniLM-L6-v2"
WORK = ROOT / "build" / "serve-bench"
WORKLOAD = ROOT / "build" / "workloads" / "passage128"
OUT = ROOT / "bench" / "results" / "serve" / "load.json"


def log(*a):
    print(*a, file=sys.stderr, flush=True)


class Server:
    def __init__(self, name, extra, binary=BIN, model=ROOT / "models" / MODEL, max_length=128):
        self.name = name
        cmd = [str(binary), "serve", "--model", str(model), "--port", "0",
               "--max-length", str(max_length)] + extra
        log("+", " ".join(cmd))
        self.proc = subprocess.Popen(cmd, stderr=subprocess.PIPE, text=True)
        for line in self.proc.stderr:
            log(f"  [{name}] {line.rstrip()}")
            m = re.search(r"listening on http://127\.0\.0\.1:(\d+)", line)
            if m:
                self.port = int(m.group(1))
                break
        else:
            raise SystemExit(f"{name}: the server did not start")
        # Read the rest of stderr in the background so the pipe never fills.
        threading.Thread(target=lambda: [log(f"  [{name}] {l.rstrip()}") for l in self.proc.stderr],
                         daemon=True).start()

    def url(self, path=""):
        return f"http://127.0.0.1:{self.port}{path}"

    def metrics(self):
        text = urllib.request.urlopen(self.url("/metrics")).read().decode()
        out = {}
        for line in text.splitlines():
            if line and not line.startswith("#"):
                key, value = line.rsplit(" ", 1)
                out[key] = float(value)
        return out

    def rss_kb(self):
        # Anonymous memory only: the mapped database's file pages come and go with the page cache.
        for line in open(f"/proc/{self.proc.pid}/status"):
            if line.startswith("RssAnon:"):
                return int(line.split()[1])
        return 0

    def stop(self):
        self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout=60)


def wrk(server, clients, duration, bodies, key=None, path="/v1/embeddings", threads=2):
    threads = min(clients, threads)
    cmd = ["wrk", f"-t{threads}", f"-c{clients}", f"-d{duration}s", "--timeout", "30s", "-s",
           str(ROOT / "bench" / "serve_load.lua"), server.url(), "--", str(bodies),
           path] + ([key] if key else [])
    log("+", " ".join(cmd))
    out = subprocess.run(cmd, check=True, stdout=subprocess.PIPE, text=True).stdout
    line = next(l for l in out.splitlines() if l.startswith("WRK_JSON "))
    r = json.loads(line[len("WRK_JSON "):])
    seconds = r["duration_us"] / 1e6
    ok = r["status"].get("200", 0)
    return {
        "clients": clients,
        "wrk_threads": threads,
        "seconds": seconds,
        "requests": r["requests"],
        "ok": ok,
        "status": r["status"],
        "socket_errors": {k: v for k, v in r["errors"].items() if k != "status"},
        "requests_per_second": ok / seconds,
        "latency_ms": {"p50": r["p50_us"] / 1e3, "p90": r["p90_us"] / 1e3,
                       "p99": r["p99_us"] / 1e3, "max": r["max_us"] / 1e3,
                       "mean": r["mean_us"] / 1e3},
    }


def hit_rate(before, after, tenant="shared"):
    key_h = f'attncache_cache_hits_total{{tenant="{tenant}"}}'
    key_l = f'attncache_cache_lookups_total{{tenant="{tenant}"}}'
    lookups = after.get(key_l, 0) - before.get(key_l, 0)
    return (after.get(key_h, 0) - before.get(key_h, 0)) / lookups if lookups else None


def histogram_quantile(before, after, name, q, labels=""):
    """The q-quantile of a server histogram's observations between two /metrics readings, in
    seconds, interpolated within its bucket as Prometheus does (None when nothing was observed;
    the last finite bound when the quantile lies past it)."""
    prefix = f"{name}_bucket{{{labels + ',' if labels else ''}le=\""
    bounds = sorted((float(k[len(prefix):-2]), after[k] - before.get(k, 0)) for k in after
                    if k.startswith(prefix) and not k.endswith('+Inf"}'))
    count = f"{name}_count{{{labels}}}" if labels else f"{name}_count"
    total = after.get(count, 0) - before.get(count, 0)
    if not total or not bounds:
        return None
    rank, lower, below = q * total, 0.0, 0
    for bound, cumulative in bounds:
        if cumulative >= rank:
            inside = cumulative - below
            return lower + (bound - lower) * ((rank - below) / inside if inside else 1.0)
        lower, below = bound, cumulative
    return bounds[-1][0]


def mean_batch(before, after):
    n = after.get("attncache_batch_inputs_count", 0) - before.get("attncache_batch_inputs_count", 0)
    s = after.get("attncache_batch_inputs_sum", 0) - before.get("attncache_batch_inputs_sum", 0)
    return s / n if n else None


def prepare():
    WORK.mkdir(parents=True, exist_ok=True)
    if not (WORKLOAD / "stream.txt").exists():
        subprocess.run([sys.executable, str(ROOT / "scripts" / "make_workloads.py"),
                        str(WORKLOAD.parent), "--only", "passage128"], check=True)
    db = WORK / "db"
    if not (db / "db.json").exists():
        subprocess.run([str(BIN), "build", "--model", str(ROOT / "models" / MODEL), "--corpus",
                        str(WORKLOAD / "corpus.txt"), "--db", str(db), "--max-length", "128",
                        "--map-dtype", "P8"], check=True)
    bodies = WORK / "bodies.jsonl"
    with open(bodies, "w") as f:
        for line in open(WORKLOAD / "stream.txt", encoding="utf-8"):
            f.write(json.dumps({"model": MODEL, "input": line.rstrip("\n")}) + "\n")
    return db, bodies


def openai_check(server):
    texts = WORK / "check_texts.txt"
    lines = open(WORKLOAD / "stream.txt", encoding="utf-8").read().splitlines()[:32]
    texts.write_text("\n".join(lines) + "\n", encoding="utf-8")
    expected = WORK / "check_embed.jsonl"
    subprocess.run([str(BIN), "embed", "--model", str(ROOT / "models" / MODEL), "--input",
                    str(texts), "--output", str(expected), "--max-length", "128"], check=True)
    py = ROOT / "bench" / ".venv-openai" / "bin" / "python"
    out = subprocess.run([str(py), str(ROOT / "bench" / "serve_openai_check.py"), "--base-url",
                          server.url("/v1"), "--model", MODEL, "--texts", str(texts),
                          "--expected", str(expected)], stdout=subprocess.PIPE, text=True)
    report = json.loads(out.stdout)
    report["exit_code"] = out.returncode
    return report


def cpu_name():
    for line in open("/proc/cpuinfo"):
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--duration", type=int, default=10, help="seconds per point")
    ap.add_argument("--clients", default="1,8,64")
    ap.add_argument("--soak", type=int, default=30, help="seconds of the overload soak (0: none)")
    ap.add_argument("--out", type=pathlib.Path, default=OUT)
    a = ap.parse_args()
    db, bodies = prepare()
    exact = Server("exact", [])
    cached = Server("attncache", ["--db", str(db)])
    result = {
        "date": datetime.date.today().isoformat(),
        "command": "bench/serve_load.sh (python3 bench/serve_load.py " + " ".join(sys.argv[1:]) + ")",
        "machine": {"cpu": cpu_name(), "cores": os.cpu_count(), "kernel": platform.release(),
                    "note": "server (2 model threads) and wrk share the same cores on loopback"},
        "model": MODEL,
        "workload": "passage128 stream (300 queries: 25% repeats, 50% near-duplicates, 25% "
                    "fresh), 128 tokens, one text per request",
        "server": {"max_batch": 32, "max_wait_ms": 5, "batch_wait": "arrivals", "max_queue": 1024,
                   "db_entries": 600, "map_dtype": "P8"},
        "points": [],
    }
    try:
        result["openai_check"] = openai_check(exact)
        # Warm both (page in weights and the database's maps).
        for s in (exact, cached):
            wrk(s, 2, 3, bodies)
        for clients in [int(c) for c in a.clients.split(",")]:
            for s in (exact, cached):
                before = s.metrics()
                point = wrk(s, clients, a.duration, bodies)
                after = s.metrics()
                point["path"] = s.name
                point["mean_batch_inputs"] = mean_batch(before, after)
                if s is cached:
                    point["hit_rate"] = hit_rate(before, after)
                result["points"].append(point)
                log(f"  {s.name} c={clients}: {point['requests_per_second']:.1f} req/s, "
                    f"p50 {point['latency_ms']['p50']:.1f} ms, p99 {point['latency_ms']['p99']:.1f} ms")
        result["exit_codes"] = {"exact": exact.stop(), "attncache": cached.stop()}
        if a.soak > 0:
            result["soak"] = soak(a.soak, db, bodies)
    finally:
        for s in (exact, cached):
            if s.proc.poll() is None:
                s.proc.kill()
    a.out.parent.mkdir(parents=True, exist_ok=True)
    a.out.write_text(json.dumps(result, indent=2) + "\n")
    log(f"wrote {a.out}")
    subprocess.run([sys.executable, str(ROOT / "bench" / "render_serve_table.py"), str(a.out)],
                   check=True)


def soak(seconds, db, bodies):
    """Overload: 64 clients of one tenant against a queue of 16 inputs and at most 48 requests
    in flight per tenant, so requests are shed with 503 and 429; every one must be answered,
    with no socket errors, and the server's memory must stay flat."""
    keys = WORK / "keys.txt"
    keys.write_text("sk-soak soak\n")
    s = Server("soak", ["--db", str(db), "--share-db", "--api-key-file", str(keys), "--max-queue",
                        "16", "--max-inputs", "16", "--max-inflight-per-key", "48"])
    try:
        warm = wrk(s, 64, 5, bodies, key="sk-soak")  # steady state before measuring memory
        rss = [s.rss_kb()]
        runs = []
        for _ in range(max(1, seconds // 10)):
            runs.append(wrk(s, 64, 10, bodies, key="sk-soak"))
            rss.append(s.rss_kb())
        health = urllib.request.urlopen(s.url("/health")).status
        status = {}
        for r in runs:
            for k, v in r["status"].items():
                status[k] = status.get(k, 0) + v
        return {
            "seconds": sum(r["seconds"] for r in runs),
            "clients": 64,
            "server": {"max_queue": 16, "max_inflight_per_key": 48},
            "requests": sum(r["requests"] for r in runs),
            "status": status,
            "socket_errors": [r["socket_errors"] for r in runs],
            "only_200_429_503": all(k in ("200", "429", "503") for k in status),
            "warmup_status": warm["status"],
            "rss_anon_mb_after_each_10s": [round(k / 1024, 1) for k in rss],
            "health_after": health,
            "exit_code_after_sigterm": s.stop(),
        }
    finally:
        if s.proc.poll() is None:
            s.proc.kill()


if __name__ == "__main__":
    main()
