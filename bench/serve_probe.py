#!/usr/bin/env python3
"""Raw per-request latencies of one keep-alive client against a running `attncache serve`, and
every slow request with its position in the run.

wrk corrects its latency histogram for coordinated omission (stats_correct: each request slower
than the mean interval between requests on a connection adds copies of itself at that interval
below it), so at one client and thousands of requests per second, two or three stalls of 40 ms
make a "p99" of 40 ms. This client records each request once, so its percentiles count real
requests, and it lists the slow ones: how many, when, and whether they followed a reconnect (the
server closes a keep-alive connection after 1,000 requests).

    python3 bench/serve_probe.py --port 8080 --bodies bodies.jsonl [--path /v1/embeddings] \\
        [--requests 20000] [--slow-ms 5] [--out probe.json]
"""
import argparse
import http.client
import json
import socket
import sys
import time


def connect(port):
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    c.connect()
    c.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return c


def percentile(sorted_values, q):
    return sorted_values[min(len(sorted_values) - 1, int(q * len(sorted_values)))]


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--bodies", required=True, help="one JSON request body per line, round robin")
    ap.add_argument("--path", default="/v1/embeddings")
    ap.add_argument("--requests", type=int, default=20000)
    ap.add_argument("--slow-ms", type=float, default=5.0)
    ap.add_argument("--out", help="JSON summary (default: stdout only)")
    a = ap.parse_args()
    bodies = [line.strip() for line in open(a.bodies, encoding="utf-8") if line.strip()]
    if not bodies:
        sys.exit(f"{a.bodies}: no request bodies")
    conn = connect(a.port)
    latencies, slow, reconnects = [], [], []
    reconnected = False
    start = time.perf_counter()
    for i in range(a.requests):
        t = time.perf_counter()
        conn.request("POST", a.path, bodies[i % len(bodies)], {"Content-Type": "application/json"})
        response = conn.getresponse()
        response.read()
        ms = (time.perf_counter() - t) * 1e3
        if response.status != 200:
            sys.exit(f"request {i}: HTTP {response.status}")
        latencies.append(ms)
        if ms > a.slow_ms:
            slow.append({"request": i, "at_s": round(t - start, 3), "ms": round(ms, 2),
                         "after_reconnect": reconnected})
        reconnected = False
        if response.getheader("Connection", "").lower() == "close":
            conn.close()
            conn = connect(a.port)
            reconnects.append(i)
            reconnected = True
    seconds = time.perf_counter() - start
    ordered = sorted(latencies)
    summary = {
        "requests": a.requests,
        "seconds": round(seconds, 3),
        "requests_per_second": round(a.requests / seconds, 1),
        "latency_ms": {name: round(percentile(ordered, q), 3) for name, q in
                       [("p50", 0.5), ("p90", 0.9), ("p99", 0.99), ("p99.9", 0.999)]} |
                      {"max": round(ordered[-1], 3), "mean": round(sum(ordered) / len(ordered), 3)},
        "slow_ms": a.slow_ms,
        "slow_requests": len(slow),
        "slow": slow,
        "reconnects": len(reconnects),
    }
    print(f"{a.requests} requests in {seconds:.1f} s: p50 {summary['latency_ms']['p50']:.2f} ms, "
          f"p99 {summary['latency_ms']['p99']:.2f}, p99.9 {summary['latency_ms']['p99.9']:.2f}, "
          f"max {summary['latency_ms']['max']:.1f}; {len(slow)} over {a.slow_ms} ms "
          f"({sum(s['after_reconnect'] for s in slow)} right after one of {len(reconnects)} "
          "reconnects)")
    for s in slow[:30]:
        print(f"  request {s['request']} at {s['at_s']:.3f} s: {s['ms']:.1f} ms"
              f"{' (after a reconnect)' if s['after_reconnect'] else ''}")
    if a.out:
        with open(a.out, "w") as f:
            json.dump(summary, f, indent=2)
            f.write("\n")


if __name__ == "__main__":
    main()
