#!/usr/bin/env python3
"""Two `attncache serve` configurations on the same machine, by default `--device cuda` against
`--device cpu`, under wrk on loopback: an encoder's embeddings and a decoder's scoring
(`/v1/completions`, echo), one text per request, at 1, 8 and 64 concurrent clients (the two
servers take turns point by point).

    python3 bench/serve_gpu_load.py --binary build/attncache --encoder models/all-MiniLM-L6-v2 \\
        [--decoder DIR] --texts tests/data/corpus.txt --out serve_gpu_load.json \\
        [--servers "fixed=--device cuda --batch-wait always" "arrivals=--device cuda"]

Runs on the GPU machine (scripts/cuda/device_run.sh serve-load). Texts: one per line, cut to
--max-chars characters; the servers truncate to 128 tokens. Reuses bench/serve_load.py's server
wrapper and wrk script.
"""
import argparse
import datetime
import json
import os
import pathlib
import shlex
import sys

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
from serve_load import (Server, cpu_name, histogram_quantile, log, mean_batch,  # noqa: E402
                        wrk)


def bodies(path, texts, api):
    with open(path, "w") as f:
        for text in texts:
            body = ({"model": "m", "input": text} if api == "embeddings" else
                    {"model": "m", "prompt": text, "echo": True, "max_tokens": 0, "logprobs": 0})
            f.write(json.dumps(body) + "\n")
    return path


def quantiles(before, after, name, labels=""):
    """p50 and p99 in ms of a server histogram between two /metrics readings."""
    return {f"p{round(q * 100)}": (None if v is None else v * 1e3)
            for q in (0.5, 0.99) for v in [histogram_quantile(before, after, name, q, labels)]}


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--binary", type=pathlib.Path, required=True)
    ap.add_argument("--encoder", type=pathlib.Path, required=True)
    ap.add_argument("--decoder", type=pathlib.Path, help="a decoder for /v1/completions")
    ap.add_argument("--texts", type=pathlib.Path, required=True)
    ap.add_argument("--max-chars", type=int, default=400)
    ap.add_argument("--duration", type=int, default=5, help="seconds per point")
    ap.add_argument("--clients", default="1,8,64")
    ap.add_argument("--warmup", type=int, default=2,
                    help="seconds of load at the most clients on each server before the points "
                         "(CUDA graphs and GEMM plans of the shapes that load brings)")
    ap.add_argument("--servers", nargs=2, metavar="NAME=OPTIONS",
                    default=["cuda=--device cuda", "cpu=--device cpu"],
                    help="the two servers compared: a name, '=', and their `attncache serve` "
                         "options")
    ap.add_argument("--work", type=pathlib.Path, default=pathlib.Path("/tmp/serve-gpu-load"))
    ap.add_argument("--out", type=pathlib.Path, required=True)
    a = ap.parse_args()
    a.work.mkdir(parents=True, exist_ok=True)
    configs = []
    for spec in a.servers:
        name, sep, options = spec.partition("=")
        if not sep or not name or "-" in name:
            sys.exit(f"--servers: '{spec}' is not NAME=OPTIONS (a name without '-')")
        configs.append((name, shlex.split(options)))
    client_counts = [int(c) for c in a.clients.split(",")]
    texts = [l.strip()[:a.max_chars] for l in open(a.texts, encoding="utf-8") if l.strip()]
    result = {
        "date": datetime.date.today().isoformat(),
        "command": "python3 bench/serve_gpu_load.py " + shlex.join(sys.argv[1:]),
        "machine": {"cpu": cpu_name(), "cores": os.cpu_count(),
                    "note": "servers and wrk share the machine's cores on loopback; the CPU "
                            "server uses all of them"},
        "texts": f"{len(texts)} lines of {a.texts.name}, ≤ {a.max_chars} characters, one per "
                 "request; servers accept up to 512 (encoder) and 1024 (decoder) tokens, so none "
                 "is refused (the longest is 380 MiniLM and 759 SmolLM2 tokens at 400 "
                 "characters, the median 37 and 43)",
        "server": {"max_batch": 32, "max_wait_ms": 5},
        "servers": {name: " ".join(options) for name, options in configs},
        "points": [],
    }
    models = [("embeddings", a.encoder, 512)] + (
        [("completions", a.decoder, 1024)] if a.decoder else [])
    for api, model, max_length in models:
        body_file = bodies(a.work / f"{api}.jsonl", texts, api)
        path = f"/v1/{api}"
        servers = [Server(f"{api}-{name}", options + ["--served-model-name", "m"], a.binary,
                          model, max_length) for name, options in configs]
        try:
            for s in servers:
                wrk(s, max(client_counts), a.warmup, body_file, path=path, threads=4)
            for clients in client_counts:
                for s in servers:
                    before = s.metrics()
                    point = wrk(s, clients, a.duration, body_file, path=path, threads=4)
                    after = s.metrics()
                    # Where the tail lies: the server's own request times (routing to
                    # response) and its model time per batch, from its histograms.
                    point.update(api=api, server=s.name.split("-", 1)[1],
                                 server_request_ms=quantiles(
                                     before, after, "attncache_http_request_duration_seconds",
                                     f'route="{path}"'),
                                 batch_ms=quantiles(before, after,
                                                    "attncache_batch_duration_seconds"),
                                 mean_batch_inputs=mean_batch(before, after),
                                 gpu_batches=after.get('attncache_batches_total{device="gpu"}', 0) -
                                 before.get('attncache_batches_total{device="gpu"}', 0))
                    result["points"].append(point)
                    log(f"  {s.name} c={clients}: {point['requests_per_second']:.0f} req/s, "
                        f"p50 {point['latency_ms']['p50']:.1f} ms, "
                        f"p99 {point['latency_ms']['p99']:.1f} ms (server "
                        f"{point['server_request_ms']['p99'] or 0:.1f}, batch "
                        f"{point['batch_ms']['p99'] or 0:.1f}), "
                        f"mean batch {point['mean_batch_inputs'] or 0:.1f}")
            result.setdefault("exit_codes", {}).update({s.name: s.stop() for s in servers})
        finally:
            for s in servers:
                if s.proc.poll() is None:
                    s.proc.kill()
        a.out.write_text(json.dumps(result, indent=2) + "\n")  # after each model
    first, second = (name for name, _ in configs)
    print(f"| api | clients | {first} req/s | {second} req/s | {first} / {second} | "
          f"{first} p50 / p99 ms | {second} p50 / p99 ms | {first} mean batch |")
    print("|---|---|---|---|---|---|---|---|")
    pts = {(p["api"], p["clients"], p["server"]): p for p in result["points"]}
    for api, _, _ in models:
        for clients in client_counts:
            g, c = pts[(api, clients, first)], pts[(api, clients, second)]
            print(f"| {api} | {clients} | {g['requests_per_second']:.0f} | "
                  f"{c['requests_per_second']:.0f} | "
                  f"{g['requests_per_second'] / c['requests_per_second']:.2f}× | "
                  f"{g['latency_ms']['p50']:.1f} / {g['latency_ms']['p99']:.1f} | "
                  f"{c['latency_ms']['p50']:.1f} / {c['latency_ms']['p99']:.1f} | "
                  f"{g['mean_batch_inputs'] or 0:.1f} |")


if __name__ == "__main__":
    main()
