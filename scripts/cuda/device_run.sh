#!/usr/bin/env bash
# Runs on the lent GPU machine, from the root of the checkout the device tool sent, with the
# bundle of scripts/cuda/bundle.sh carried in .carry-cuda. Prints the environment, unpacks,
# then runs the stages asked for (default: tests bench torch) and leaves logs and JSON in $OUT.
#
#   bash .carry-cuda/device_run.sh [tests] [bench] [torch] [bench-repeat] [sanitize]
#                                  [decoder-1B] [decoder-3B] [decoder-smoke]
#
# decoder-SIZE writes the random-weight Llama-3.2-SIZE-shaped model once (kept in /tmp while
# the machine stays warm), runs gpu_decoder_bench on it, then PyTorch on the same ids.
# DECODER_BATCHES / DECODER_LENGTHS narrow the grid; DECODER_TORCH=0 skips PyTorch;
# GPU_TESTS_FILTER narrows the tests (a gtest filter).
set -u
root=$PWD
carry=$root/.carry-cuda
out=${OUT:-/tmp/out}
mkdir -p "$out"
stages=${*:-tests bench torch}

echo "== machine"
nvidia-smi --query-gpu=name,driver_version,memory.total,memory.used,clocks.sm,clocks.max.sm,temperature.gpu,power.draw --format=csv
grep -m1 PRETTY_NAME /etc/os-release; nproc
command -v nvcc >/dev/null && nvcc --version | tail -1
python3 -c 'import torch, transformers; print("torch", torch.__version__, "transformers", transformers.__version__, torch.cuda.get_device_name())' 2>&1 | tail -1

work=/tmp/attncache-gpu
rm -rf "$work"; mkdir -p "$work/src/tests"
tar -C "$work" -xJf "$carry/bundle.tar.xz"
tar -C "$work/src" -xJf "$carry/model.tar.xz"
ln -s "$root/tests/data" "$work/src/tests/data"
cublas=""
for d in /usr/local/cuda/lib64 /usr/local/cuda/targets/x86_64-linux/lib \
  $(python3 -c 'import nvidia, os; [print(os.path.join(p, "cu13", "lib")) for p in nvidia.__path__]; [print(os.path.join(p, "cublas", "lib")) for p in nvidia.__path__]' 2>/dev/null); do
  if [[ -e $d/libcublasLt.so.13 ]]; then cublas=$d; break; fi
done
echo "cuBLASLt from: ${cublas:-NOT FOUND}"
export LD_LIBRARY_PATH=$work/lib${cublas:+:$cublas}${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
export ATTNCACHE_SOURCE_DIR=$work/src
model=$work/src/models/all-MiniLM-L6-v2
missing=$(ldd "$work/bin/gpu_tests" "$work/bin/gpu_bench" "$work/bin/gpu_decoder_bench" | grep "not found")
[[ -n $missing ]] && echo "MISSING LIBRARIES: $missing"

for stage in $stages; do
  echo "== $stage"
  case $stage in
    tests)
      timeout 300 "$work/bin/gpu_tests" --gtest_filter="${GPU_TESTS_FILTER:-*}" 2>&1 | tee "$out/gpu_tests.log"
      echo "-- without a visible device:"
      CUDA_VISIBLE_DEVICES= timeout 60 "$work/bin/gpu_tests" --gtest_brief=1 2>&1 | tail -4
      ;;
    bench)
      timeout 240 "$work/bin/gpu_bench" --model "$model" --corpus "$root/tests/data/corpus.txt" \
        --out "$out/gpu_bench.json" --ids-out "$work/ids.json" > /dev/null
      ;;
    bench-repeat)  # the same benchmark again after the others: run-to-run spread
      timeout 240 "$work/bin/gpu_bench" --model "$model" --corpus "$root/tests/data/corpus.txt" \
        --out "$out/gpu_bench_repeat.json" > /dev/null
      ;;
    torch)
      PYTHONUNBUFFERED=1 timeout 360 python3 "$work/gpu_torch_bench.py" --model "$model" \
        --ids "$work/ids.json" --out "$out/torch_bench.json" --compile > /dev/null
      ;;
    decoder-*)
      size=${stage#decoder-}
      batches=${DECODER_BATCHES:-1,8,32}
      lengths=${DECODER_LENGTHS:-189,835,2048,4096}
      if [[ $size == smoke ]]; then size=1B; batches=1,8; lengths=189,835; fi
      dir=/tmp/attncache-models/llama-$size
      [[ -f $dir/config.json ]] || timeout 300 python3 "$work/gpu_decoder_torch.py" make --size "$size" --dir "$dir"
      timeout 420 "$work/bin/gpu_decoder_bench" --model "$dir" --batches "$batches" \
        --lengths "$lengths" --pool-gib 8 --out "$out/gpu_decoder_bench_$size.json" \
        --logits-dir "$work/logits-$size" > /dev/null
      [[ ${DECODER_TORCH:-1} == 0 ]] || PYTHONUNBUFFERED=1 timeout 400 python3 "$work/gpu_decoder_torch.py" time --model "$dir" \
        --batches "$batches" --lengths "$lengths" --ours-logits "$work/logits-$size" \
        --out "$out/gpu_decoder_torch_$size.json"
      ;;
    sanitize)
      timeout 300 compute-sanitizer --tool memcheck --error-exitcode 9 "$work/bin/gpu_tests" \
        --gtest_filter='*Reusing*:*Recorded*:*BadBatches*' 2>&1 | tail -25
      echo "memcheck exit: ${PIPESTATUS[0]}"
      ;;
  esac
done
echo "== done"
