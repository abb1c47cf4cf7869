#!/usr/bin/env bash
# Sets everything up, then shows both halves of AttnCache on real text:
#  1. embeds a few real sentences with all-MiniLM-L6-v2 and prints their cosine-similarity table;
#  2. builds an attention-map database from 90 passages of the bundled fortune corpus and
#     evaluates AttnCache on a query stream with near-duplicates (128 tokens per input).
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
