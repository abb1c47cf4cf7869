#!/usr/bin/env bash
# Runs on the lent GPU machine, from the root of the checkout the device tool sent, with the
# bundle of scripts/cuda/bundle.sh carried in .carry-cuda. Prints the environment, unpacks,
# then runs the stages asked for (default: tests bench torch) and leaves their logs and JSON in
# $OUT/device_results.tar.gz (files of 4 MiB and more beside it).
#
#   bash .carry-cuda/device_run.sh [tests] [bench] [torch] [bench-repeat] [sanitize]
#                                  [decoder-1B] [decoder-3B] [decoder-smoke] [cli] [memo-gpu]
#                                  [attention-1B] [attention-3B] [serve-load] [profile]
#                                  [variants] [decoder-alt-1B] [decoder-alt-3B] [memo-build]
#                                  [serve-probe] [map-cache] [pin-maps]
#
# decoder-SIZE writes the random-weight Llama-3.2-SIZE-shaped model once (kept in /tmp while
# the machine stays warm), runs gpu_decoder_bench on it, then PyTorch on the same ids.
# DECODER_BATCHES / DECODER_LENGTHS narrow the grid; DECODER_TORCH=0 skips PyTorch; nvidia-smi
# logs the SM clock and power every 100 ms while the bench runs (gpu_clocks_SIZE.csv);
# GPU_TESTS_FILTER narrows the tests (a gtest filter); SANITIZE_FILTER picks those that sanitize
# runs under compute-sanitizer's memcheck. attention-SIZE times one layer's attention kernels
# alone at that model's shapes (no model; gpu_decoder_bench --attention-only), then PyTorch's
# SDPA on the same shapes. cli runs `attncache embed`, `attncache score mmlu --paths exact`,
# `score mmlu --paths exact,attncache --paper` (its own prompts' maps) and `attncache score text`
# with --device cuda and cpu and compares them, then serves embeddings
# and scoring from the GPU. serve-load puts the server on the GPU and on the CPU under wrk
# (bench/serve_gpu_load.py; SERVE_SECONDS per point, SERVE_ARGS more of its options, SERVE_TAG a
# suffix for its JSON, SERVE_SERVERS two quoted NAME=OPTIONS servers to compare instead of cuda
# and cpu). serve-probe runs bench/serve_probe.py (one keep-alive client, raw latencies, the slow
# requests listed) against the GPU server (PROBE_REQUESTS) and the CPU one. profile runs Nsight Compute (all sections) on the exact and reuse attention kernels
# at PROFILE_SHAPE
# (heads,kv_heads,head_dim,batch,tokens; PROFILE_GROUPED=1: the grouped reuse kernel). memo-gpu
# builds the AttnCache workloads' databases (MEMO_WORKLOADS, name:max-length:map-dtype) and runs
# `attncache eval --device cuda --paper` on each query stream. memo-build times `attncache build`
# recording the maps on the GPU and on the CPU, for MiniLM and the SmolLM2-shaped decoder, with
# each binary of MEMO_BUILD_BINARIES (name=path ...; default: this bundle's) in turn. map-cache
# times the device map cache loading 3B-shaped entries (bench/map_cache_bench.cc;
# MAP_CACHE_LENGTHS). pin-maps scores 20 MMLU questions through AttnCache on the GPU (P8, P4 and
# fp16 databases of their own prompts; misses staged, with --pin-maps, held as P4) against the CPU.
set -u
root=$PWD
carry=$root/.carry-cuda
stages=${*:-tests bench torch}
# Stages write into $out; after each one, and however the script ends, everything under 4 MiB
# there is packed into $OUT/device_results.tar.gz and anything larger is copied beside it: the
# device tool brings back at most 8 files from $OUT (a run once lost its logs that way).
returned=${OUT:-/tmp/out}
out=/tmp/attncache-out
rm -rf "$out"; mkdir -p "$out" "$returned"
pack() {
  (cd "$out" && find . -type f -size -4194304c -print0 |
    tar --null -czf "$returned/device_results.tar.gz" -T -)
  find "$out" -type f ! -size -4194304c -exec cp {} "$returned/" \;
}
trap pack EXIT
trap 'exit 143' TERM INT

echo "== machine"
nvidia-smi --query-gpu=name,driver_version,memory.total,memory.used,clocks.sm,clocks.max.sm,temperature.gpu,power.draw --format=csv
grep -m1 PRETTY_NAME /etc/os-release; nproc
command -v nvcc >/dev/null && nvcc --version | tail -1
python3 -c 'import torch, transformers; print("torch", torch.__version__, "transformers", transformers.__version__, torch.cuda.get_device_name())' 2>&1 | tail -1

# Every bounded step says so when it runs out of time, rather than ending in silence with
# whatever it had printed still buffered (a map_cache_bench hang once read as an empty stage).
timeout() {
  command timeout "$@"
  local rc=$?
  ((rc == 124)) && echo "TIMED OUT after $1 s: ${*:2}" >&2
  return $rc
}

work=/tmp/attncache-gpu
rm -rf "$work"; mkdir -p "$work/src/tests"
tar -C "$work" -xJf "$carry/bundle.tar.xz"
[[ -f $carry/model.tar.xz ]] && tar -C "$work/src" -xJf "$carry/model.tar.xz"  # absent for kernel-only runs
ln -s "$root/tests/data" "$work/src/tests/data"
if [[ -f $carry/workloads.tar.xz ]]; then
  mkdir -p "$work/workloads"
  tar -C "$work/workloads" -xJf "$carry/workloads.tar.xz"
fi
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

# A random-weight SmolLM2-shaped decoder of 6 layers with SmolLM2's tokenizer, in $smol.
smol=/tmp/attncache-models/smol-random
make_smol() {
  [[ -f $smol/config.json ]] || python3 - "$work/smol" "$smol" <<'PY'
import shutil, sys, torch
from transformers import LlamaConfig, LlamaForCausalLM
src, dst = sys.argv[1:3]
config = LlamaConfig.from_pretrained(src)
config.num_hidden_layers = 6
torch.manual_seed(0)
LlamaForCausalLM(config).save_pretrained(dst)
for f in ("tokenizer.json", "tokenizer_config.json"):
    shutil.copy(f"{src}/{f}", dst)
PY
}

# The random-weight Llama-3.2-$1-shaped model, written once (kept while the machine stays warm),
# in $dir.
make_decoder() {
  dir=/tmp/attncache-models/llama-$1
  [[ -f $dir/config.json ]] || timeout 300 python3 "$work/gpu_decoder_torch.py" make --size "$1" --dir "$dir"
}

# The gpu_decoder_bench builds of $carry/alt.tar.xz (alt/NAME) and of the bundle's alt/ (bundle.sh
# BUNDLE_ALT), and the bundle's own as alt/bundle, in $work/variants/alt.
unpack_variants() {
  rm -rf "$work/variants"; mkdir -p "$work/variants/alt"
  [[ -f $carry/alt.tar.xz ]] && tar -C "$work/variants" -xJf "$carry/alt.tar.xz"
  [[ -d $work/alt ]] && cp "$work"/alt/* "$work/variants/alt/"  # bundle.sh's BUNDLE_ALT
  [[ -e $work/variants/alt/bundle ]] || cp "$work/bin/gpu_decoder_bench" "$work/variants/alt/bundle"
}

# Llama-3.2 attention shapes for --attention-only: heads, KV heads, head size.
declare -A attention_shape=([1B]=32,8,64 [3B]=24,8,128)

for stage in $stages; do
  echo "== $stage"
  case $stage in
    map-cache)  # the device map cache's loads: P8, P8 encoded to P4 on the device, P4 rows
      timeout 300 "$work/bin/map_cache_bench" --lengths "${MAP_CACHE_LENGTHS:-835,2048,4096}" \
        --json "$out/map_cache_bench.json"
      ;;
    pin-maps)  # AttnCache's answers on the GPU with misses staged, with --pin-maps, as P4
      make_smol
      bin=$work/bin/attncache
      mm=$work/mmlu20
      mkdir -p "$mm/dev" "$mm/test"
      cp "$root/tests/data/mmlu/dev/us_foreign_policy_dev.csv" "$mm/dev/"
      head -20 "$root/tests/data/mmlu/test/us_foreign_policy_test.csv" > "$mm/test/us_foreign_policy_test.csv"
      for dt in P8 P4 F16; do
        timeout 200 "$bin" build -m "$smol" --mmlu "$mm" --mmlu-split test --shots 1 --epochs 1 \
          --map-dtype $dt --db "$work/db-$dt" 2>&1 | tail -1
        for run in "cuda staged" "cuda pinned --pin-maps" "cuda p4pinned --pin-maps --gpu-maps p4" \
          "cpu cpu"; do
          set -- $run
          dev=$1 tag=$2
          shift 2
          timeout 200 "$bin" score mmlu -m "$smol" --data "$mm" --paths exact,attncache --paper \
            --threshold 0 --db "$work/db-$dt" --shots 1 --device $dev "$@" \
            --json "$out/pin_${dt}_$tag.json" > "$out/pin_${dt}_$tag.log" 2>&1 ||
            { echo "$dt $tag: exit $?"; tail -3 "$out/pin_${dt}_$tag.log"; }
        done
        python3 - "$out" "$dt" <<'PY'
import json, sys
out, dt = sys.argv[1:3]
runs = {t: json.load(open(f"{out}/pin_{dt}_{t}.json")) for t in ("staged", "pinned", "p4pinned", "cpu")}
def lp(r): return [a["attncache"]["log_probs"] for a in r["answers"]]
def diff(a, b): return max(abs(u - v) for x, y in zip(lp(a), lp(b)) for u, v in zip(x, y))
hits = sum(a["attncache"].get("hit", False) for a in runs["pinned"]["answers"])
print(f"{dt}: --pin-maps vs staged max |d log p| {diff(runs['pinned'], runs['staged']):.2e}; "
      f"staged vs cpu {diff(runs['staged'], runs['cpu']):.4f}; --gpu-maps p4 vs cpu "
      f"{diff(runs['p4pinned'], runs['cpu']):.4f}; hits {hits}/{len(runs['pinned']['answers'])}")
for t in ("staged", "pinned", "p4pinned"):
    m = runs[t].get("attncache_map_cache", {})
    print(f"  {t}: map cache {m.get('phases', {}).get('map_cache_ms_per_query', float('nan')):.3f} "
          f"ms a question, {m.get('misses')} misses, {m.get('host_source')}")
PY
      done
      ;;
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
    decoder-alt-*)  # end-to-end decoder timings of the bundle's build and of every alt/NAME
      # (see unpack_variants), one after the other on the same model; maps in GPU
      # memory only (no host streaming), DECODER_BATCHES / DECODER_LENGTHS as for decoder-SIZE.
      size=${stage#decoder-alt-}
      make_decoder "$size"
      unpack_variants
      for bin in "$work"/variants/alt/*; do
        echo "-- $(basename "$bin")"
        timeout 300 "$bin" --model "$dir" --batches "${DECODER_BATCHES:-1,8,32}" \
          --lengths "${DECODER_LENGTHS:-835,2048,4096}" --stream-max-gib 0 --pool-gib 8 \
          --out "$out/decoder_alt_$(basename "$bin")_$size.json" 2>&1 > /dev/null | grep "^B=" ||
          echo "$bin $size failed"
      done
      ;;
    decoder-*)
      size=${stage#decoder-}
      batches=${DECODER_BATCHES:-1,8,32}
      lengths=${DECODER_LENGTHS:-189,835,2048,4096}
      if [[ $size == smoke ]]; then size=1B; batches=1,8; lengths=189,835; fi
      make_decoder "$size"
      # The GPU's clocks and power while it runs (bench/gpu_clocks_by_window.py reads both).
      echo "# utc_offset $(date +%z)" > "$out/gpu_clocks_$size.csv"
      nvidia-smi --query-gpu=timestamp,clocks.sm,power.draw --format=csv,noheader,nounits \
        -lms 100 >> "$out/gpu_clocks_$size.csv" &
      sampler=$!
      timeout 420 "$work/bin/gpu_decoder_bench" --model "$dir" --batches "$batches" \
        --lengths "$lengths" --pool-gib 8 --out "$out/gpu_decoder_bench_$size.json" \
        --logits-dir "$work/logits-$size" > /dev/null
      kill "$sampler"
      [[ ${DECODER_TORCH:-1} == 0 ]] || PYTHONUNBUFFERED=1 timeout 400 python3 "$work/gpu_decoder_torch.py" time --model "$dir" \
        --batches "$batches" --lengths "$lengths" --ours-logits "$work/logits-$size" \
        --out "$out/gpu_decoder_torch_$size.json"
      ;;
    attention-*)
      size=${stage#attention-}
      shape=${attention_shape[$size]:-}
      [[ -n $shape ]] || { echo "unknown size $size"; continue; }
      timeout 240 "$work/bin/gpu_decoder_bench" --attention-only "$shape" \
        --batches "${DECODER_BATCHES:-1,8,32}" --lengths "${DECODER_LENGTHS:-189,835,2048,4096}" \
        --out "$out/gpu_attention_$size.json" > /dev/null
      PYTHONUNBUFFERED=1 timeout 120 python3 "$work/gpu_decoder_torch.py" attention --size "$size" \
        --batches "${DECODER_BATCHES:-1,8,32}" --lengths "${DECODER_LENGTHS:-189,835,2048,4096}" \
        --out "$out/gpu_attention_torch_$size.json"
      ;;
    variants)  # the attention kernels of other builds, same shapes, two interleaved rounds:
      # alt/NAME, gpu_decoder_bench binaries built from other commits (see unpack_variants); the
      # bundle's own is timed beside them as alt/bundle.
      unpack_variants
      for round in 1 2; do
        for bin in "$work"/variants/alt/*; do
          for size in 3B 1B; do
            timeout 120 "$bin" --attention-only "${attention_shape[$size]}" \
              --batches "${DECODER_BATCHES:-1,8,32}" --lengths "${DECODER_LENGTHS:-835,2048,4096}" \
              --out "$out/variant_$(basename "$bin")_${size}_$round.json" > /dev/null ||
              echo "$bin $size failed"
          done
        done
      done
      ;;
    cli)
      bin=$work/bin/attncache
      head -200 "$root/tests/data/corpus.txt" > "$work/texts.txt"
      for dev in cuda cpu; do
        timeout 120 /usr/bin/time -f "embed --device $dev: %e s" "$bin" embed -m "$model" \
          -i "$work/texts.txt" --device $dev -o "$out/embed_$dev.jsonl"
      done
      python3 - "$out/embed_cuda.jsonl" "$out/embed_cpu.jsonl" <<'PY'
import json, sys, math
a, b = ([json.loads(l)["embedding"] for l in open(p)] for p in sys.argv[1:3])
cos = [sum(x * y for x, y in zip(u, v)) / math.sqrt(sum(x * x for x in u) * sum(y * y for y in v))
       for u, v in zip(a, b)]
print(f"embed cuda vs cpu: {len(cos)} texts, worst cosine {min(cos):.6f}")
PY
      # Throughput on many texts of varying length (the workloads' corpora), GPU vs CPU.
      for input in short/corpus.txt passage128/corpus.txt; do
        [[ -f $work/workloads/$input ]] || continue
        for dev in cuda cpu; do
          timeout 200 /usr/bin/time \
            -f "embed $input ($(wc -l < "$work/workloads/$input") texts) --device $dev: %e s" \
            "$bin" embed -m "$model" -i "$work/workloads/$input" --max-length 128 \
            --device $dev -o /dev/null 2>&1 | grep -v "^note"
        done
      done
      # The map database built with its maps recorded on the GPU and on the CPU, then each
      # evaluated on the CPU with the same queries (the next 200 lines and 50 repeats).
      sed -n 201,400p "$root/tests/data/corpus.txt" > "$work/queries.txt"
      head -50 "$work/texts.txt" >> "$work/queries.txt"
      for dev in cuda cpu; do
        timeout 200 /usr/bin/time -f "build --device $dev: %e s" "$bin" build -m "$model" \
          --corpus "$work/texts.txt" --max-length 128 --db "$work/db-$dev" --device $dev 2>&1 |
          grep -v "^collecting\|^training"
        timeout 200 "$bin" eval -m "$model" --db "$work/db-$dev" --queries "$work/queries.txt" \
          --json "$out/eval_db_$dev.json" > /dev/null 2>&1 || echo "eval of db-$dev failed"
      done
      python3 - "$out/eval_db_cuda.json" "$out/eval_db_cpu.json" <<'PY'
import json, sys
for path in sys.argv[1:]:
    r = json.load(open(path))
    f, v = r["fidelity"]["cosine_on_hits"], r["verification"]["candidate_layer0_tv"]
    print(f"{path.rsplit('/', 1)[-1]}: hit rate {r['hit_rate']:.3f} ({r['hits']} of {r['queries']}), "
          f"cosine on hits min {f['min']:.6f}, recall@10 {r['fidelity']['recall_all_queries']:.3f}, "
          f"candidates' layer-0 TV mean {v['mean']:.4f}")
PY
      CUDA_VISIBLE_DEVICES= "$bin" embed -m "$model" -i "$work/texts.txt" --device cuda -o /dev/null
      echo "no visible device, --device cuda: exit $?"
      CUDA_VISIBLE_DEVICES= "$bin" embed -m "$model" -i "$work/texts.txt" --device auto -o /dev/null
      echo "no visible device, --device auto: exit $?"
      make_smol
      for dev in cuda cpu; do
        timeout 200 "$bin" score mmlu -m "$smol" --data "$root/tests/data/mmlu" --paths exact \
          --shots 1 --limit 20 --device $dev --json "$out/score_$dev.json" 2>&1 | tail -4
      done
      python3 - "$out/score_cuda.json" "$out/score_cpu.json" <<'PY'
import json, sys
a, b = (json.load(open(p)) for p in sys.argv[1:3])
same = sum(x["exact"]["predicted"] == y["exact"]["predicted"] for x, y in zip(a["answers"], b["answers"]))
diff = max(abs(u - v) for x, y in zip(a["answers"], b["answers"])
           for u, v in zip(x["exact"]["log_probs"], y["exact"]["log_probs"]))
print(f"score {a['exact_device']} vs {b['exact_device']}: {same}/{len(a['answers'])} answers agree, "
      f"max |Δ log-prob| {diff:.4f}, ms/question {a['paths'][0]['ms_per_question']:.1f} vs "
      f"{b['paths'][0]['ms_per_question']:.1f}")
PY
      # AttnCache's path on the GPU: a database of 20 questions' 1-shot prompts, each asked again
      # (its own maps hit at threshold 0), on the GPU and on the CPU.
      mm=$work/mmlu20
      mkdir -p "$mm/dev" "$mm/test"
      cp "$root/tests/data/mmlu/dev/us_foreign_policy_dev.csv" "$mm/dev/"
      head -20 "$root/tests/data/mmlu/test/us_foreign_policy_test.csv" > "$mm/test/us_foreign_policy_test.csv"
      timeout 200 "$bin" build -m "$smol" --mmlu "$mm" --mmlu-split test --shots 1 --epochs 1 \
        --db "$work/mmlu-db" 2>&1 | tail -1
      for dev in cuda cpu; do
        timeout 200 "$bin" score mmlu -m "$smol" --data "$mm" --paths exact,attncache --paper \
          --threshold 0 --db "$work/mmlu-db" --shots 1 --device $dev \
          --json "$out/score_attncache_$dev.json" 2>&1 | tail -4
      done
      python3 - "$out/score_attncache_cuda.json" "$out/score_attncache_cpu.json" <<'PY'
import json, sys
a, b = (json.load(open(p)) for p in sys.argv[1:3])
pairs = list(zip(a["answers"], b["answers"]))
same = sum(x["attncache"]["predicted"] == y["attncache"]["predicted"] for x, y in pairs)
own = sum(x["attncache"]["predicted"] == x["exact"]["predicted"] for x, _ in pairs)
diff = max(abs(u - v) for x, y in pairs for u, v in zip(x["attncache"]["log_probs"], y["attncache"]["log_probs"]))
vs_exact = max(abs(u - v) for x, _ in pairs for u, v in zip(x["attncache"]["log_probs"], x["exact"]["log_probs"]))
hits = [p["hit_rate"] for p in a["paths"] if p["path"] == "attncache"][0]
print(f"score attncache {a['attncache_device']} vs {b['attncache_device']}: hit rate {hits:.2f}, "
      f"{same}/{len(pairs)} answers agree, max |Δ log-prob| {diff:.4f}; on the GPU vs its exact "
      f"path: {own}/{len(pairs)} agree, max |Δ log-prob| {vs_exact:.4f}")
PY
      for dev in cuda cpu; do
        timeout 200 "$bin" score text -m "$smol" -i "$work/texts.txt" --device $dev \
          --json "$out/score_text_$dev.json" 2>&1 >/dev/null | tail -2
      done
      python3 - "$out/score_text_cuda.json" "$out/score_text_cpu.json" <<'PY'
import json, sys
a, b = (json.load(open(p)) for p in sys.argv[1:3])
rows = [(x, y) for x, y in zip(a["lines"], b["lines"]) if y["scored_tokens"]]
worst = max(abs(u - v) for x, y in rows for u, v in zip(x["token_log_probs"], y["token_log_probs"]))
mean = sum(abs(v) for _, y in rows for v in y["token_log_probs"]) / b["scored_tokens"]
print(f"score text {a['device']} vs {b['device']}: {len(rows)} lines, {b['scored_tokens']} tokens, "
      f"worst |Δ log p| {worst:.4f} (mean |log p| {mean:.2f}), perplexity {a['perplexity']:.3f} vs "
      f"{b['perplexity']:.3f}, {a['seconds']:.2f} s vs {b['seconds']:.2f} s")
PY
      # serve on the GPU: an encoder's embeddings and a decoder's scoring, against the CPU engine.
      for spec in "$model:embeddings" "$smol:completions"; do
        m=${spec%:*}; api=${spec##*:}
        "$bin" serve --model "$m" --served-model-name m --port 18080 --device cuda > "$work/serve.log" 2>&1 &
        pid=$!
        for _ in $(seq 100); do curl -sf localhost:18080/health > /dev/null && break; sleep 0.2; done
        python3 - "$api" "$work/texts.txt" <<'PY'
import json, sys, time, urllib.request
api, texts = sys.argv[1], [l.strip() for l in open(sys.argv[2]) if l.strip()][:64]
body = {"model": "m", "input": texts} if api == "embeddings" else \
    {"model": "m", "prompt": texts, "echo": True, "max_tokens": 0, "logprobs": 0}
def post():
    req = urllib.request.Request(f"http://localhost:18080/v1/{api}", json.dumps(body).encode(),
                                 {"Content-Type": "application/json"})
    return json.load(urllib.request.urlopen(req, timeout=60))
post()
t = time.perf_counter(); post(); ms = (time.perf_counter() - t) * 1e3
metrics = urllib.request.urlopen("http://localhost:18080/metrics").read().decode()
gpu = [l for l in metrics.splitlines() if l.startswith("attncache_batches_total")]
print(f"serve {api} on the GPU: 64 inputs in {ms:.1f} ms; {'; '.join(gpu)}")
PY
        kill $pid; wait $pid 2>/dev/null
      done
      ;;
    serve-load)  # attncache serve on the GPU vs the CPU under wrk (bench/serve_gpu_load.py)
      make_smol
      servers=()  # SERVE_SERVERS: two quoted NAME=OPTIONS words instead of cuda vs cpu
      [[ -n ${SERVE_SERVERS:-} ]] && eval "servers=(--servers $SERVE_SERVERS)"
      # shellcheck disable=SC2086  # SERVE_ARGS are words
      PATH=$work/bin:$PATH timeout 300 python3 "$root/bench/serve_gpu_load.py" \
        --binary "$work/bin/attncache" --encoder "$model" --decoder "$smol" \
        --texts "$root/tests/data/corpus.txt" --duration "${SERVE_SECONDS:-5}" ${SERVE_ARGS:-} \
        "${servers[@]}" --out "$out/serve_gpu_load${SERVE_TAG:-}.json" 2>&1 | grep -v "^+ \|^  \["
      ;;
    serve-probe)  # raw per-request latencies of one keep-alive client (bench/serve_probe.py)
      # against the GPU and the CPU server: how many slow requests make wrk's 1-client tails
      python3 -c 'import json, sys
for line in open(sys.argv[1], encoding="utf-8"):
    if line.strip(): print(json.dumps({"model": "m", "input": line.strip()[:400]}))' \
        "$root/tests/data/corpus.txt" > "$work/probe_bodies.jsonl"
      for spec in cuda:${PROBE_REQUESTS:-20000} cpu:3000; do
        dev=${spec%%:*}
        "$work/bin/attncache" serve --model "$model" --device "$dev" --port 18200 \
          --max-length 512 --served-model-name m 2> "$out/serve_probe_$dev.err" &
        pid=$!
        for _ in $(seq 100); do
          python3 -c 'import urllib.request; urllib.request.urlopen("http://127.0.0.1:18200/health")' \
            2>/dev/null && break
          sleep 0.3
        done
        echo "-- $dev server"
        python3 "$root/bench/serve_probe.py" --port 18200 --bodies "$work/probe_bodies.jsonl" \
          --requests "${spec#*:}" --out "$out/serve_probe_$dev.json"
        kill $pid; wait $pid 2>/dev/null
      done
      ;;
    memo-gpu)
      for spec in ${MEMO_WORKLOADS:-short:0:F16 passage128:128:F16 passage512:512:F16 passage512:512:P8}; do
        IFS=: read -r name length dtype <<< "$spec"
        db=/tmp/attncache-dbs/$name-$dtype
        [[ -f $db/db.json ]] || timeout 300 "$work/bin/attncache" build -m "$model" \
          --corpus "$work/workloads/$name/corpus.txt" --db "$db" --max-length "$length" \
          --map-dtype "$dtype" > /dev/null 2>&1 || echo "build of $spec failed"
        echo "-- $spec"
        timeout 400 "$work/bin/attncache" eval -m "$model" --db "$db" --device cuda --paper \
          --queries "$work/workloads/$name/stream.txt" --json "$out/gpu_eval_$name-$dtype.json" 2>&1 |
          grep -v "^evaluating"
      done
      ;;
    memo-build)  # `attncache build` with the maps recorded on the GPU and on the CPU: MiniLM over
      # tests/data/corpus.txt (128 tokens), and the SmolLM2-shaped decoder over the test data's
      # MMLU test prompts (5-shot); each build's summary lines, and its wall time
      make_smol
      for spec in "$model:--corpus $root/tests/data/corpus.txt --max-length 128" \
        "$smol:--mmlu $root/tests/data/mmlu --mmlu-split test --shots 5 --map-dtype P8 --max-entries 100"; do
        m=${spec%%:*}
        for dev in cuda cpu; do
          for named in ${MEMO_BUILD_BINARIES:-this=$work/bin/attncache}; do
            echo "-- $(basename "$m") --device $dev (${named%%=*})"
            # shellcheck disable=SC2086  # the spec's options are words
            timeout 280 /usr/bin/time -f "wall %e s" "${named#*=}" build -m "$m" ${spec#*:} \
              --epochs 1 --db "/tmp/attncache-dbs/build-$(basename "$m")-$dev" --device $dev 2>&1 |
              grep -v "^collecting\|^training\|^labelling\|^recording"
          done
        done
      done
      ;;
    profile)  # Nsight Compute on the attention kernels at one shape (PROFILE_SHAPE)
      ncu=$(command -v ncu || ls /usr/local/cuda/bin/ncu /opt/nvidia/nsight-compute/*/ncu 2>/dev/null | head -1)
      if [[ -z $ncu ]]; then echo "no ncu on this machine"; continue; fi
      IFS=, read -r heads kv dh batch tokens <<< "${PROFILE_SHAPE:-24,8,128,32,4096}"
      # The exact kernel with 128-row blocks and the P8 / FP8 reuse kernels, causal; with
      # PROFILE_GROUPED=1 the grouped P8 reuse kernel instead (its third launch: one order of
      # those --attention-only times).
      kernels=("flash_forward<.int.$dh, .int.128, .bool.0, .bool.1>" "reuse_pv<.int.$dh, .*1, .bool.1, .int.128>"
        "reuse_pv<.int.$dh, .*2, .bool.1, .int.128>")
      [[ ${PROFILE_GROUPED:-0} == 1 ]] && kernels=("reuse_pv_grouped<.int.$dh, .*1, ")
      for kernel in "${kernels[@]}"; do
        timeout 200 "$ncu" --kernel-name-base demangled --kernel-name "regex:${kernel}" \
          --launch-skip 2 --launch-count 1 --set full \
          "$work/bin/gpu_decoder_bench" --attention-only "$heads,$kv,$dh" --batches "$batch" \
          --lengths "$tokens" --out /tmp/profile.json >> "$out/ncu_attention_$heads-$dh-${batch}x$tokens.txt" 2>&1
        echo "ncu on $kernel: exit $?"
      done
      ;;
    sanitize)
      timeout 300 compute-sanitizer --tool memcheck --error-exitcode 9 "$work/bin/gpu_tests" \
        --gtest_filter="${SANITIZE_FILTER:-*Reusing*:*Recorded*:*BadBatches*}" 2>&1 | tail -25
      echo "memcheck exit: ${PIPESTATUS[0]}"
      ;;
  esac
  pack
done
echo "== done"
