#!/usr/bin/env bash
# Tuna against the oracle, ours and a static fraction over every workload at two scales:
# profiles the micro-benchmarks into a performance database (resumable), then evaluates.
# Writes bench/results/tuna_eval.{json,txt} and docs/figures/tuna-eval-saving.svg.
#
#   bench/tuna_eval.sh            # about 25 minutes on 2 cores; JOBS=N to set parallelism
#   SENSITIVITY=1 bench/tuna_eval.sh   # also τ = 2% and 10%: bench/results/tuna_eval_tau{2,10}.json
set -euo pipefail
cd "$(dirname "$0")/.."
db=${DB:-build/tuna-perfdb}
jobs=${JOBS:-0}
# A 4 MiB LLC: the workloads' footprints (5–256 MiB) then exceed it as real ones (GBs) exceed a
# server's 32 MiB; with 32 MiB most of them would fit in the cache and never feel the slow tier.
machine=(--llc-mb 4)
build/tuna profile --out "$db" -j "$jobs" "${machine[@]}"
build/tuna eval --db "$db" -j "$jobs" "${machine[@]}" --target "${TARGET:-0.05}" \
  --json bench/results/tuna_eval.json --plot docs/figures/tuna-eval-saving.svg |
  tee bench/results/tuna_eval.txt
python3 bench/render_tuna_eval.py
if [[ "${SENSITIVITY:-0}" == 1 ]]; then
  for tau in 2 10; do
    build/tuna eval --db "$db" -j "$jobs" "${machine[@]}" --target "0.$(printf %02d "$tau")" -q \
      --json "bench/results/tuna_eval_tau$tau.json" | tee "bench/results/tuna_eval_tau$tau.txt"
  done
fi
