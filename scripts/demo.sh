#!/usr/bin/env bash
# Sets everything up, then shows both halves of AttnCache on real text:
#  1. embeds a few real sentences with all-MiniLM-L6-v2 and prints their cosine-similarity table;
#  2. builds an attention-map database from 90 passages of the bundled fortune corpus and
#     evaluates AttnCache on a query stream with near-duplicates (128 tokens per input);
#  3. Tuna: profiles a small micro-benchmark grid on the simulated tiered machine and sizes the
#     fast memory of a BFS on a Kronecker graph for a 5% slowdown target, Tuna's way and ours.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
"$root/scripts/setup.sh"
echo
"$root/build/attncache" similarity --model all-MiniLM-L6-v2 --input "$root/docs/demo-sentences.txt"
echo
demo="$root/build/demo"
python3 "$root/scripts/make_workloads.py" "$demo/workload" --from "$root/tests/data/corpus.txt" \
  --only passage128 --scale 0.15
"$root/build/attncache" build --model all-MiniLM-L6-v2 --corpus "$demo/workload/passage128/corpus.txt" \
  --db "$demo/db" --max-length 128
echo
"$root/build/attncache" eval --model all-MiniLM-L6-v2 --db "$demo/db" \
  --queries "$demo/workload/passage128/stream.txt" --json "$demo/report.json"
echo "full report: $demo/report.json"
echo
# A 4 MiB LLC keeps the small footprints of this demo from fitting in the cache.
"$root/build/tuna" profile --out "$demo/tuna-db" --grid "$root/bench/grids/quick.json" --llc-mb 4
"$root/build/tuna" advise --db "$demo/tuna-db" -w bfs --graph kronecker --scale 16 --llc-mb 4 \
  --target 0.05 --json "$demo/tuna-advice.json"
echo "full report: $demo/tuna-advice.json"
