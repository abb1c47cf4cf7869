#!/usr/bin/env python3
"""Renders bench/results/serve/load.json (bench/serve_load.py) as the load-test table of
docs/serving.md, between the markers <!-- serve-load:begin --> and <!-- serve-load:end -->.

    python3 bench/render_serve_table.py [bench/results/serve/load.json]
"""
import json
import pathlib
import sys

ROOT = pathlib.Path(__file__).resolve().parents[1]
DOC = ROOT / "docs" / "serving.md"
BEGIN, END = "<!-- serve-load:begin -->", "<!-- serve-load:end -->"


def render(r):
    m = r["machine"]
    lines = [
        f"{r['model']}, {r['workload']}; {m['cpu']}, {m['cores']} cores ({m['note']}), "
        f"{r['date']}. Server: batches of up to {r['server']['max_batch']} inputs, "
        + (f"gathering up to {r['server']['max_wait_ms']} ms while requests are arriving"
           if r["server"].get("batch_wait") == "arrivals" else
           f"{r['server']['max_wait_ms']} ms gathering") + "; AttnCache database of "
        f"{r['server']['db_entries']} passages, {r['server']['map_dtype']} maps.",
        "",
        "| clients | path | requests/s | p50 ms | p99 ms | mean batch | hit rate | non-200 | "
        "socket errors | vs exact |",
        "|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    exact = {p["clients"]: p for p in r["points"] if p["path"] == "exact"}
    for p in r["points"]:
        base = exact[p["clients"]]["requests_per_second"]
        non200 = sum(v for k, v in p["status"].items() if k != "200")
        sock = sum(p["socket_errors"].values())
        hit = f"{100 * p['hit_rate']:.0f}%" if p.get("hit_rate") is not None else "-"
        lines.append(
            f"| {p['clients']} | {p['path']} | {p['requests_per_second']:.1f} | "
            f"{p['latency_ms']['p50']:.1f} | {p['latency_ms']['p99']:.1f} | "
            f"{p['mean_batch_inputs']:.1f} | {hit} | {non200} | {sock} | "
            f"{p['requests_per_second'] / base:.2f}× |")
    c = r.get("openai_check")
    if c:
        lines += ["", f"openai {c['openai_version']} client, {c['texts']} texts in one request: "
                  f"identical to `attncache embed` bit for bit: **{c['identical_to_attncache_embed']}** "
                  f"(base64 and float transfers; one text alone: max |Δ| "
                  f"{c['checks']['single_text']['max_abs_diff']:.1e}); unknown model → "
                  f"{c['checks']['unknown_model']}, empty input → "
                  f"{c['checks']['empty_input'].split(':')[0]}."]
    s = r.get("soak")
    if s:
        sock = sum(sum(e.values()) for e in s["socket_errors"])
        status = ", ".join(f"{k}: {v}" for k, v in sorted(s["status"].items()))
        lines += ["", f"Soak under overload ({s['clients']} clients, {s['seconds']:.0f} s, queue "
                  f"{s['server']['max_queue']} inputs, {s['server']['max_inflight_per_key']} "
                  f"requests in flight per tenant): {s['requests']} requests, {status}; only "
                  f"200/429/503: **{s['only_200_429_503']}**; socket errors {sock}; anonymous RSS "
                  f"after warm-up and each 10 s: "
                  f"{', '.join(str(x) for x in s['rss_anon_mb_after_each_10s'])} MB; "
                  f"/health {s['health_after']} afterwards; exit code after SIGTERM "
                  f"{s['exit_code_after_sigterm']}."]
    return "\n".join(lines)


def main():
    path = pathlib.Path(sys.argv[1]) if len(sys.argv) > 1 else ROOT / "bench/results/serve/load.json"
    table = render(json.loads(path.read_text()))
    doc = DOC.read_text()
    i, j = doc.index(BEGIN), doc.index(END)
    DOC.write_text(doc[: i + len(BEGIN)] + "\n" + table + "\n" + doc[j:])
    print(table)


if __name__ == "__main__":
    main()
