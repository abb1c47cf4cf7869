#!/usr/bin/env bash
# The memory-tuning controller online, within one run of each workload: ours and Tuna's rule
# re-sizing the fast tier every tuning interval, against the static oracle (the one smallest size
# for the whole run). A phased micro-benchmark (hot set 4 → 48 → 4 MiB of 64) shows phase changes;
# GUPS's hot set moves halfway; the rest are the eval's real kernels. Then the tuning interval's
# effect on the phased run and GUPS. Needs the performance database of bench/tuna_eval.sh.
# Writes bench/results/tuna_online/*.json, bench/results/tuna_online.txt and
# docs/figures/tuna-online-phases.svg.
#
#   bench/tuna_online.sh        # about 15 minutes on 2 cores
set -euo pipefail
cd "$(dirname "$0")/.."
db=${DB:-build/tuna-perfdb}
machine=(--llc-mb 4)
out=bench/results/tuna_online
mkdir -p "$out"
[[ -f "$db/perf.tdb" ]] || build/tuna profile --out "$db" "${machine[@]}"
run() {  # name interval-ms extra-args workload...
  local name=$1 interval=$2 extra=$3
  shift 3
  echo "== $name, tuning interval $interval ms"
  # shellcheck disable=SC2086
  build/tuna tune --db "$db" "${machine[@]}" --interval-ms "$interval" $extra "$@" \
    --json "$out/${name}_${interval}ms.json" 2>&1
}
phased=(-w microbench --table-mb 64 --phase-hot-mb 4,48,4 --hot-fraction 0.99 --accesses 15000000)
gups=(-w gups --table-mb 256 --hot-mb 32 --updates 20000000)
{
  run phased 5000 "--oracle --plot docs/figures/tuna-online-phases.svg" "${phased[@]}"
  run gups256 5000 --oracle "${gups[@]}"
  run bfs-kron18 5000 --oracle -w bfs --graph kronecker --scale 18
  run pagerank-kron18 5000 --oracle -w pagerank --graph kronecker --scale 18
  run btree4m 5000 --oracle -w btree --records 4000000 --requests 2000000
  run xsbench-large 5000 --oracle -w xsbench --gridpoints 11303 --lookups 100000
  for interval in 1000 2000 20000; do
    run phased "$interval" "" "${phased[@]}"
    run gups256 "$interval" "" "${gups[@]}"
  done
} | tee bench/results/tuna_online.txt
python3 bench/render_tuna_online.py
