#!/usr/bin/env bash
# Packs what a run on the lent GPU machine needs into DEST (default: .carry-cuda in the checkout
# that the device tool sends, ignored through .git/info/exclude): the GPU test and benchmark
# binaries and the attncache CLI built here, the shared libraries they need that the GPU
# machine's image lacks (oneDNN, OpenCL loader, utf8proc, GNU OpenMP, cpp-httplib), the fp16
# copy of all-MiniLM-L6-v2, SmolLM2's config and tokenizer (the CLI check builds a random-weight
# model from them there), wrk with its LuaJIT (the serve-load stage) when installed here, and the
# scripts that run there. The machine's own CUDA toolkit provides cuBLASLt.
#
#   scripts/cuda/bundle.sh BUILD_DIR [DEST]
set -euo pipefail
here=$(cd "$(dirname "$0")/../.." && pwd)
build=$(cd "${1:?usage: bundle.sh BUILD_DIR [DEST]}" && pwd)
dest=${2:-$(git -C "$here" rev-parse --path-format=absolute --git-common-dir)/../.carry-cuda}
mkdir -p "$dest"
dest=$(cd "$dest" && pwd)
stage=$(mktemp -d)
trap 'rm -rf "$stage"' EXIT

mkdir -p "$stage/bin" "$stage/lib"
# BUNDLE_BINS="gpu_tests ...": pack only these binaries, when all of them with the model would
# pass the 64 MiB the device tool carries (a tests-only call needs only gpu_tests).
for bin in ${BUNDLE_BINS:-gpu_tests gpu_bench gpu_decoder_bench attncache}; do
  case $bin in
    gpu_tests) cp "$build/tests/gpu_tests" "$stage/bin/" ;;
    attncache) cp "$build/attncache" "$stage/bin/" ;;
    *) cp "$build/bench/$bin" "$stage/bin/" ;;
  esac
done
strip "$stage"/bin/*  # the device tool carries at most 64 MiB
cp "$here/bench/gpu_torch_bench.py" "$here/bench/gpu_decoder_torch.py" "$here/bench/torch_timing.py" \
  "$stage/"
for lib in libdnnl.so.2 libOpenCL.so.1 libutf8proc.so.2 libgomp.so.1 libcpp-httplib.so.0.11; do
  cp -L "$(ldconfig -p | awk -v l="$lib" '$1 == l && /x86-64/ {print $NF; exit}')" "$stage/lib/$lib"
done
if command -v wrk > /dev/null; then  # for the serve-load stage (apt-get install wrk)
  cp "$(command -v wrk)" "$stage/bin/"
  cp -L "$(ldconfig -p | awk '$1 == "libluajit-5.1.so.2" && /x86-64/ {print $NF; exit}')" "$stage/lib/"
else
  echo "bundle.sh: no wrk here (apt-get install wrk); the serve-load stage lacks it" >&2
fi
smol=$here/models/SmolLM2-135M-Instruct-hf  # for the cli and serve-load stages
if [[ -f $smol/config.json ]]; then
  mkdir -p "$stage/smol"
  cp "$smol/config.json" "$smol/tokenizer.json" "$smol/tokenizer_config.json" "$stage/smol/"
else
  echo "bundle.sh: no $smol (scripts/reference/gguf_to_hf.py makes it); the cli stage lacks it" >&2
fi
# BUNDLE_ALT="NAME=PATH ...": other gpu_decoder_bench builds for the decoder-alt stages, as alt/NAME.
# Inside the bundle xz stores what they share with this build once; a separate archive of each
# would not fit beside the model in the 64 MiB the device tool carries.
for alt in ${BUNDLE_ALT:-}; do
  mkdir -p "$stage/alt"
  cp "${alt#*=}" "$stage/alt/${alt%%=*}"
  strip "$stage/alt/${alt%%=*}"
done
tar -C "$stage" -cf - . | xz -T2 -9 > "$dest/bundle.tar.xz"
cp "$here/scripts/cuda/device_run.sh" "$dest/device_run.sh"

# The model changes rarely: rebuild its archive only when missing.
if [[ ! -f "$dest/model.tar.xz" ]]; then
  mkdir -p "$stage/model/models"
  python3 "$here/scripts/cuda/to_fp16.py" "$here/models/all-MiniLM-L6-v2" \
    "$stage/model/models/all-MiniLM-L6-v2"
  tar -C "$stage/model" -cf - models | xz -T2 -6 > "$dest/model.tar.xz"
fi
# The AttnCache workloads (scripts/make_workloads.py, as bench/memo_bench.py makes them), when
# present: the memo-gpu stage builds their databases there and evaluates AttnCache on the GPU.
workloads=$here/build/workloads
if [[ -f $workloads/short/stream.txt ]]; then
  tar -C "$workloads" -cf - short/corpus.txt short/stream.txt passage128/corpus.txt \
    passage128/stream.txt passage512/corpus.txt passage512/stream.txt |
    xz -T2 -9 > "$dest/workloads.tar.xz"
fi
du -ch "$dest"/* | tail -1
