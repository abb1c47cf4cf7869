#!/usr/bin/env bash
# AttnCache on a decoder, on MMLU, against the exact path and exact prefix-KV reuse of the k-shot
# header, at 0 and 1 shots (SHOTS="0 1 2" for more: at 2 shots the maps take about 1.7 GB). Subjects: high_school_geography, us_foreign_policy,
# computer_security, marketing. The first half of each subject's test questions is stored (their
# prompts' maps, P8), the second half are the queries: a stored prompt is never its own query.
# AttnCache runs three ways: ours (projector hit at 0.995, then the layer-0 check at mean TV
# 0.02), the paper's rule at the same threshold (no check), and the paper's rule with threshold 0
# (every stored prompt of the same length is reused: what reuse alone does to answers).
# Scoring runs on one thread: this 2-core machine is shared, and single-threaded paths taking
# turns batch by batch keep their ratios when other jobs come and go (two OpenMP threads spinning
# at barriers do not). Writes bench/results/decoder_mmlu/*.json and the table in docs/decoders.md.
#
#   bench/decoder_mmlu.sh        # about 40 minutes on 2 cores; needs about 1.3 GB in $TMPDIR
#
# MAP_DTYPE=P4 stores the maps as P4 instead (its JSON files end in _p4 and the table is not
# rendered); MODES="paper paper-any" runs only those AttnCache modes.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/fetch-models.sh SmolLM2-135M-Instruct >/dev/null
scripts/fetch-datasets.sh mmlu >/dev/null
out=bench/results/decoder_mmlu
work=$(mktemp -d "${TMPDIR:-/tmp}/decoder_mmlu.XXXXXX")
trap 'rm -rf "$work"' EXIT
mkdir -p "$out" "$work/mmlu/dev" "$work/mmlu/validation" "$work/mmlu/test"
for s in high_school_geography us_foreign_policy computer_security marketing; do
  cp "data/mmlu/dev/${s}_dev.csv" "$work/mmlu/dev/"
  python3 - "$s" "$work/mmlu" <<'PY'
import csv, sys
subject, dest = sys.argv[1], sys.argv[2]
rows = list(csv.reader(open(f"data/mmlu/test/{subject}_test.csv", encoding="utf-8")))
half = len(rows) // 2
for split, part in (("validation", rows[:half]), ("test", rows[half:])):
    with open(f"{dest}/{split}/{subject}_{split}.csv", "w", newline="", encoding="utf-8") as f:
        csv.writer(f).writerows(part)
PY
done
suffix=""
[[ ${MAP_DTYPE:-P8} == P8 ]] || suffix=_$(echo "$MAP_DTYPE" | tr A-Z a-z)
for shots in ${SHOTS:-0 1}; do
  db="$work/db$shots"
  echo "== $shots-shot: storing the first halves"
  build/attncache build -m SmolLM2-135M-Instruct --mmlu "$work/mmlu" --mmlu-split validation \
    --shots "$shots" --map-dtype "${MAP_DTYPE:-P8}" --db "$db" 2>&1 | grep -v "^collecting\|^labelling"
  for mode in ${MODES:-ours paper paper-any}; do
    case $mode in
      ours) flags=() ;;
      paper) flags=(--paper) ;;
      paper-any) flags=(--paper --threshold 0) ;;
    esac
    echo "== $shots-shot, AttnCache $mode: the second halves"
    build/attncache score mmlu -m SmolLM2-135M-Instruct --data "$work/mmlu" --split test \
      --shots "$shots" --db "$db" "${flags[@]}" --threads 1 --json "$out/shots${shots}_$mode$suffix.json" 2>&1 |
      grep -v "^scoring"
  done
done
[[ -n $suffix ]] || python3 bench/render_decoder_mmlu.py
