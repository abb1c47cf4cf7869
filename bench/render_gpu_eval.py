#!/usr/bin/env python3
"""Markdown table of AttnCache on the GPU over the query-stream workloads (attncache eval
--device cuda --paper; scripts/cuda/device_run.sh memo-gpu writes one JSON per workload).

    bench/render_gpu_eval.py bench/results/attncache_gpu/gpu_eval_*.json
"""
import json
import sys


def main():
    if len(sys.argv) < 2:
        sys.exit(__doc__)
    reports = [(p, json.load(open(p))) for p in sys.argv[1:]]
    print(f"Device: {reports[0][1]['device']}\n")
    print("| workload (maps) | queries × tokens | hit rate | cosine on hits (mean / min) | "
          "exact ms/query | AttnCache, cold maps | AttnCache, resident maps | "
          "exact-input cache | AttnCache: lookup / map cache / forward, ms/query (resident) | "
          "per hit, maps resident |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for path, r in reports:
        name = path.rsplit("gpu_eval_", 1)[-1].removesuffix(".json")
        t, s = r["timing"], r["speedup"]
        cos = r["fidelity"]["cosine_on_hits"]
        p = t["attncache_resident_maps_phases"]
        hit = r["per_hit"] or {}
        print(f"| {name} | {r['queries']} × {r['mean_tokens']:.0f} | {100 * r['hit_rate']:.1f}% | "
              f"{cos['mean']:.4f} / {cos['min']:.3f} | {t['exact']['mean_ms_per_query']:.4f} | "
              f"{s['attncache_cold_maps_vs_exact']:.2f}× | "
              f"{s['attncache_resident_maps_vs_exact']:.2f}× | "
              f"{s['exact_result_cache_vs_exact']:.2f}× | "
              f"{p['lookup_ms_per_query']:.4f} / {p['map_cache_ms_per_query']:.4f} / "
              f"{p['forward_ms_per_query']:.4f} | "
              f"{hit.get('end_to_end_speedup', float('nan')):.2f}× |")


if __name__ == "__main__":
    main()
