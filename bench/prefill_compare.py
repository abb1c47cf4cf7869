#!/usr/bin/env python3
"""CPU prefill speed of the Llama decoder: attncache vs PyTorch (transformers) vs llama.cpp, same
model, same token ids, same threads, in one run.

    scripts/setup.sh   # builds build/bench/prefill_bench
    python3 bench/prefill_compare.py [--threads 2] [--out bench/results/prefill_cpu.json]

Model: SmolLM2-135M-Instruct, Q4_1 GGUF (models/, fetched by the setup scripts). Workloads: batch
1 and 8 × 128, 512, 2048 tokens of real text: the llama.cpp token ids of the ASCII lines of
tests/data/corpus.txt (tests/data/gguf/SmolLM2-135M-Instruct.token_ids.txt, made by llama.cpp's
own tokenizer) joined by newline tokens and cut into consecutive N-token sequences, so no engine
pads and every engine gets the same ids. A pass is a prefill: every token of the batch through
the decoder and the LM head for each sequence's last token only (what a prefill-only scorer
computes); no engine keeps a prompt cache between passes. Tokenization is outside the timings.

Engines (threads = --threads everywhere):
  attncache     build/bench/prefill_bench: weights dequantized to fp32 at load, oneDNN GEMMs, our
                attention kernel; the batch is one forward call.
  pytorch-fp32  transformers AutoModelForCausalLM from the same GGUF (dequantized to fp32),
                attn_implementation="sdpa", inference_mode, logits_to_keep=1, use_cache=False;
                the batch is one [B, N] tensor.
  pytorch-bf16  the same model cast to bfloat16 (this CPU has AVX512-BF16).
  ik_llama      ik-llama-cpp-python (ik_llama.cpp) on the native Q4_1 weights, flash attention
                on, one llama_decode per sequence (bench/prefill_llamacpp.py); --ik-mode batch
                puts the B sequences in one llama_batch with seq_ids 0..B-1 instead, which shares
                one KV cache whose attention spans all of them and was slower.
  llama.cpp     xllamacpp (upstream llama-server in-process) on the native Q4_1 weights, the B
                sequences as one request with B parallel slots (bench/prefill_llamacpp.py).
The two llama.cpp engines run quantized weights (Q4_1 dot products against activations quantized
to 8 bits), their own fast path; attncache and PyTorch run fp32 (bf16) weights. They are
installed, at the pinned versions below, into bench/.venv-llamacpp when absent.

Timing: engines take turns; in each of a shape's rounds every engine runs its warm-up passes,
then timed passes until it has both min_reps passes and min_seconds; its latency is the median
over all rounds' median batch latencies. Long shapes get fewer rounds and passes (see plan()) to
keep the whole run near 10 minutes on 2 cores. Before each shape the script waits (up to
--wait-quiet seconds) until other processes leave the CPUs, and it records the share of CPU time
they took while the shape ran.

Correctness: each engine's top-1 next token of every sequence is compared with attncache's; where
an engine returns logits (PyTorch, ik_llama), the largest |logit difference| too, and for
llama-server, which returns log-probabilities, the largest difference of its top-1 token's.
"""
import argparse
import copy
import json
import os
import pathlib
import platform
import statistics
import subprocess
import sys
import time

import numpy as np

ROOT = pathlib.Path(__file__).resolve().parents[1]
CACHE = ROOT / "build" / "bench-cache"
MODEL = ROOT / "models/SmolLM2-135M-Instruct/SmolLM2-135M-Instruct.Q4_1.gguf"
TOKEN_IDS = ROOT / "tests/data/gguf/SmolLM2-135M-Instruct.token_ids.txt"
BATCHES = (1, 8)
LENGTHS = (128, 512, 2048)
LLAMACPP_VENV = ROOT / "bench/.venv-llamacpp"
LLAMACPP_PINS = {"ik-llama-cpp-python": "0.1.5", "xllamacpp": "2026.10.11549"}
ENGINES = ("attncache", "pytorch-fp32", "pytorch-bf16", "ik_llama", "llama.cpp")


# Per shape, by tokens in the batch: (rounds, warm-up passes, min timed passes, min seconds).
# The largest shape (8 × 2048, ~30 s a pass) gets one timed pass and no warm-up of its own: the
# weights are paged in and the code is warm from the shapes before it.
def plan(tokens):
    if tokens <= 1024:
        return {"rounds": 2, "warmup": 1, "min_reps": 3, "min_seconds": 1.0}
    if tokens <= 4096:
        return {"rounds": 1, "warmup": 1, "min_reps": 2, "min_seconds": 0.0}
    return {"rounds": 1, "warmup": 0, "min_reps": 1, "min_seconds": 0.0}


def make_ids(n, count, newline_id):
    """`count` consecutive n-token sequences of the corpus' ASCII lines joined by newlines."""
    lines = (ROOT / "tests/data/corpus.txt").read_text(encoding="utf-8").split("\n")
    ids = TOKEN_IDS.read_text().split("\n")
    stream = []
    for line, line_ids in zip(lines, ids):
        if line and all(ord(c) < 128 for c in line):
            stream += [int(t) for t in line_ids.split()] + [newline_id]
    if len(stream) < n * count:
        raise RuntimeError("corpus too small")
    return [stream[k * n:(k + 1) * n] for k in range(count)]


def newline_token(gguf_path):
    import gguf
    reader = gguf.GGUFReader(str(gguf_path))
    tokens = reader.fields["tokenizer.ggml.tokens"]
    for k, i in enumerate(tokens.data):
        if bytes(tokens.parts[i]) == "Ċ".encode():  # byte-level BPE's "\n"
            return k
    raise RuntimeError("no newline token in the vocabulary")


def time_fn(fn, warmup, min_reps, min_seconds):
    for _ in range(warmup):
        fn()
    lat, start = [], time.perf_counter()
    while len(lat) < min_reps or time.perf_counter() - start < min_seconds:
        t = time.perf_counter()
        out = fn()
        lat.append(time.perf_counter() - t)
    return statistics.median(lat), lat, out


def cpu_jiffies():
    """(busy, total) jiffies of all CPUs since boot, from /proc/stat."""
    fields = [int(x) for x in open("/proc/stat").readline().split()[1:9]]
    idle = fields[3] + fields[4]  # idle + iowait
    return sum(fields) - idle, sum(fields)


class NoiseMeter:
    """CPU time that processes other than this benchmark used while it ran, as a fraction of all
    CPU time: the noise a shared machine added to a measurement."""

    def __init__(self):
        self.busy, self.total = cpu_jiffies()
        self.ours = self._our_seconds()

    @staticmethod
    def _our_seconds():
        t = os.times()
        return t.user + t.system + t.children_user + t.children_system

    def others_share(self):
        busy, total = cpu_jiffies()
        hz = os.sysconf("SC_CLK_TCK")
        others = (busy - self.busy) / hz - (self._our_seconds() - self.ours)
        return max(0.0, others / max(1e-9, (total - self.total) / hz))


def wait_until_quiet(max_seconds, threshold=0.1):
    """Waits (at most max_seconds) until other processes use under `threshold` of the CPUs over 3 s;
    returns the seconds waited."""
    start = time.time()
    while True:
        meter = NoiseMeter()
        time.sleep(3)
        share = meter.others_share()
        waited = time.time() - start
        if share < threshold or waited >= max_seconds:
            if waited > 3.5:
                print(f"  waited {waited:.0f} s for a quiet machine (others {share:.0%})",
                      file=sys.stderr, flush=True)
            return waited


def log_softmax(logits):
    x = logits.astype(np.float64)
    x -= x.max(axis=1, keepdims=True)
    return x - np.log(np.exp(x).sum(axis=1, keepdims=True))


def last_json_line(text):
    return json.loads([l for l in text.splitlines() if l.startswith("{")][-1])


class OursEngine:
    name = "attncache"

    def __init__(self, threads):
        self.binary = ROOT / "build/bench/prefill_bench"
        if not self.binary.exists():
            sys.exit(f"{self.binary} is missing: build the project first (scripts/setup.sh)")
        self.threads = threads
        self.version = "attncache " + subprocess.run(
            ["git", "-C", str(ROOT), "describe", "--always", "--dirty"],
            capture_output=True, text=True).stdout.strip()

    def run(self, ids_file, batch, p):
        logits_file = CACHE / f"prefill-ours-{batch}.f32"
        out = subprocess.run(
            [str(self.binary), "--model", str(MODEL), "--ids", str(ids_file), "--batch",
             str(batch), "--threads", str(self.threads), "--warmup", str(p["warmup"]),
             "--min-reps", str(p["min_reps"]), "--min-seconds", str(p["min_seconds"]),
             "--logits-out", str(logits_file)],
            check=True, capture_output=True, text=True).stdout
        result = last_json_line(out)
        return result, np.fromfile(logits_file, dtype="<f4").reshape(batch, -1)


class PyTorchEngine:
    def __init__(self, threads, dtype_name, base=None):
        import torch
        import transformers
        torch.set_num_threads(threads)
        self.torch = torch
        self.name = f"pytorch-{dtype_name}"
        if base is None:
            model = transformers.AutoModelForCausalLM.from_pretrained(
                str(MODEL.parent), gguf_file=MODEL.name, dtype=torch.float32,
                attn_implementation="sdpa")
        else:
            model = copy.deepcopy(base.model)
        dtype = {"fp32": torch.float32, "bf16": torch.bfloat16}[dtype_name]
        self.model = model.to(dtype).eval()
        self.version = f"torch {torch.__version__}, transformers {transformers.__version__}"

    def prefill(self, batch):
        torch = self.torch
        with torch.inference_mode():
            out = self.model(input_ids=torch.tensor(batch, dtype=torch.long), logits_to_keep=1,
                             use_cache=False)
            return out.logits[:, -1].float().numpy()

    def run(self, batch, p):
        median, lat, logits = time_fn(lambda: self.prefill(batch), p["warmup"], p["min_reps"],
                                      p["min_seconds"])
        tokens = sum(len(s) for s in batch)
        return {"median_batch_seconds": median, "latencies": lat, "reps": len(lat),
                "tokens_per_second": tokens / median, "per_sequence_ms": median * 1e3 / len(batch),
                "top1": [int(i) for i in logits.argmax(axis=1)]}, logits


def ensure_llamacpp_venv():
    python = LLAMACPP_VENV / "bin/python"
    check = ("import importlib.metadata as m, json; print(json.dumps({p: m.version(p) for p in "
             + repr(list(LLAMACPP_PINS)) + "}))")
    if python.exists():
        r = subprocess.run([str(python), "-c", check], capture_output=True, text=True)
        if r.returncode == 0 and json.loads(r.stdout) == LLAMACPP_PINS:
            return python
    print(f"installing {LLAMACPP_PINS} into {LLAMACPP_VENV}", file=sys.stderr)
    subprocess.run([sys.executable, "-m", "venv", str(LLAMACPP_VENV)], check=True)
    subprocess.run([str(python), "-m", "pip", "install", "-q"]
                   + [f"{p}=={v}" for p, v in LLAMACPP_PINS.items()], check=True)
    return python


class LlamaCppEngine:
    def __init__(self, name, python, threads, extra_args=()):
        self.name, self.python, self.threads = name, python, threads
        self.extra_args = list(extra_args)
        self.version = None
        self.settings = None

    def run(self, ids_file, batch, p):
        logits_file = CACHE / f"prefill-{self.name}-{batch}.f32"
        cmd = [str(self.python), str(ROOT / "bench/prefill_llamacpp.py"), "--engine", self.name,
               "--model", str(MODEL), "--ids", str(ids_file), "--batch", str(batch),
               "--threads", str(self.threads), "--warmup", str(p["warmup"]),
               "--min-reps", str(p["min_reps"]), "--min-seconds", str(p["min_seconds"])]
        if self.name == "ik_llama":
            cmd += ["--logits-out", str(logits_file)]
        cmd += self.extra_args
        r = subprocess.run(cmd, capture_output=True, text=True)
        if r.returncode != 0:
            raise RuntimeError(f"{self.name} failed:\n{r.stderr[-3000:]}")
        result = last_json_line(r.stdout)
        self.version, self.settings = result.pop("version"), result.pop("settings")
        logits = None
        if self.name == "ik_llama":
            logits = np.fromfile(logits_file, dtype="<f4").reshape(batch, -1)
        return result, logits


def cpu_info():
    info = {"machine": platform.machine(), "cores": os.cpu_count()}
    for line in open("/proc/cpuinfo"):
        key, _, value = line.partition(":")
        key, value = key.strip(), value.strip()
        if key == "model name":
            info["model"] = value
        if key == "flags":
            flags = value.split()
            info["avx512f"] = "avx512f" in flags
            info["avx512_bf16"] = "avx512_bf16" in flags
            break
    info["memory_gib"] = round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1)
    return info


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--engines", default=",".join(ENGINES), help="comma-separated subset")
    parser.add_argument("--lengths", default=",".join(map(str, LENGTHS)))
    parser.add_argument("--batches", default=",".join(map(str, BATCHES)))
    parser.add_argument("--ik-mode", choices=["batch", "sequential"], default="sequential",
                        help="ik_llama: the batch's sequences in one llama_batch, or one by one")
    parser.add_argument("--ik-flash-attn", type=int, choices=[0, 1], default=1)
    parser.add_argument("--wait-quiet", type=float, default=120,
                        help="before each shape, wait up to this many seconds for other "
                             "processes to leave the CPUs (0: do not wait)")
    parser.add_argument("--out", default=str(ROOT / "bench/results/prefill_cpu.json"))
    args = parser.parse_args()
    names = args.engines.split(",")
    if "attncache" not in names or any(n not in ENGINES for n in names):
        sys.exit(f"--engines: attncache plus any of {', '.join(ENGINES[1:])}")
    CACHE.mkdir(parents=True, exist_ok=True)
    started = time.time()
    load_before = os.getloadavg()

    ours = OursEngine(args.threads)
    peers = []
    if "pytorch-fp32" in names or "pytorch-bf16" in names:
        fp32 = PyTorchEngine(args.threads, "fp32")
        if "pytorch-fp32" in names:
            peers.append(fp32)
        if "pytorch-bf16" in names:
            peers.append(PyTorchEngine(args.threads, "bf16", base=fp32))
    if "ik_llama" in names or "llama.cpp" in names:
        python = ensure_llamacpp_venv()
        if "ik_llama" in names:
            peers.append(LlamaCppEngine("ik_llama", python, args.threads,
                                        ["--ik-mode", args.ik_mode,
                                         "--flash-attn", str(args.ik_flash_attn)]))
        if "llama.cpp" in names:
            peers.append(LlamaCppEngine("llama.cpp", python, args.threads))

    newline_id = newline_token(MODEL)
    rows = []
    for n in map(int, args.lengths.split(",")):
        batches = list(map(int, args.batches.split(",")))
        seqs = make_ids(n, max(batches), newline_id)
        ids_file = CACHE / f"prefill-ids-{n}.txt"
        ids_file.write_text("\n".join(" ".join(map(str, s)) for s in seqs) + "\n")
        for b in batches:
            batch, tokens = seqs[:b], b * n
            p = plan(tokens)
            if args.wait_quiet > 0:
                wait_until_quiet(args.wait_quiet)
            shape_load = os.getloadavg()[0]
            meter = NoiseMeter()
            ours_rounds, peer_rounds = [], {e.name: [] for e in peers}
            for _ in range(p["rounds"]):
                ours_rounds.append(ours.run(ids_file, b, p))
                for e in peers:
                    if isinstance(e, PyTorchEngine):
                        peer_rounds[e.name].append(e.run(batch, p))
                    else:
                        peer_rounds[e.name].append(e.run(ids_file, b, p))
            # Our report: the round with the median latency (its profile is consistent with it).
            ours_rounds.sort(key=lambda r: r[0]["median_batch_seconds"])
            ours_result, ours_logits = ours_rounds[len(ours_rounds) // 2]
            ours_result["round_latencies"] = [r[0]["median_batch_seconds"] for r in ours_rounds]
            ours_top1 = ours_result["top1"]
            row = {"batch": b, "seq_len": n, "tokens": tokens, "plan": p,
                   "loadavg_1min_before": shape_load, "others_cpu_share": meter.others_share(),
                   "attncache": ours_result, "speedup": {}}
            for e in peers:
                rounds = peer_rounds[e.name]
                median = statistics.median(r[0]["median_batch_seconds"] for r in rounds)
                last, logits = rounds[-1]
                entry = {"median_batch_seconds": median,
                         "round_latencies": [r[0]["median_batch_seconds"] for r in rounds],
                         "reps": sum(r[0]["reps"] for r in rounds),
                         "tokens_per_second": tokens / median,
                         "per_sequence_ms": median * 1e3 / b,
                         "top1": last["top1"],
                         "top1_agreement": sum(a == o for a, o in zip(last["top1"], ours_top1)) / b}
                if logits is not None:
                    entry["max_abs_logit_delta_vs_attncache"] = float(np.max(np.abs(logits - ours_logits)))
                if "top1_logprob" in last:  # the peer's log-probability of its top-1 token vs ours
                    ours_lp = log_softmax(ours_logits)
                    entry["max_abs_top1_logprob_delta_vs_attncache"] = max(
                        abs(lp - float(ours_lp[s, t]))
                        for s, (t, lp) in enumerate(zip(last["top1"], last["top1_logprob"])))
                for key in ("load_seconds", "server_prompt_ms_first_sequence_median"):
                    if key in last:
                        entry[key] = last[key]
                row[e.name] = entry
                row["speedup"][e.name] = ours_result["tokens_per_second"] / entry["tokens_per_second"]
            rows.append(row)
            prof = ours_result["profile"]
            line = (f"{b} × {n:4d}: attncache {ours_result['tokens_per_second']:7.0f} tok/s"
                    f" (qkv {prof['qkv_share']:.0%} attn {prof['attention_share']:.0%} gemm "
                    f"{prof['other_gemm_share']:.0%} other {prof['other_share']:.0%} head "
                    f"{prof['lm_head_share']:.0%}; GEMM {prof['gemm_gflops']:.0f} GFLOP/s)")
            for e in peers:
                line += (f" | {e.name} {row[e.name]['tokens_per_second']:6.0f} "
                         f"(×{row['speedup'][e.name]:.2f}, top-1 {row[e.name]['top1_agreement']:.0%})")
            print(line + f" | load {shape_load:.2f}, others {row['others_cpu_share']:.0%}",
                  flush=True)

    versions = {e.name: e.version for e in peers}
    settings = {e.name: e.settings for e in peers if getattr(e, "settings", None)}
    result = {
        "benchmark": "CPU prefill throughput of a Llama decoder (forward + last-token LM head)",
        "command": " ".join(["python3", "bench/prefill_compare.py"] + sys.argv[1:]),
        "model": str(MODEL.relative_to(ROOT)),
        "threads": args.threads,
        "cpu": cpu_info(),
        "loadavg_before": load_before,
        "loadavg_after": os.getloadavg(),
        "wall_seconds": time.time() - started,
        "attncache": ours.version,
        "peers": versions,
        "peer_settings": settings,
        "weights": {k: v for k, v in {
                    "attncache": "fp32 (dequantized from Q4_1 at load)",
                    "pytorch-fp32": "fp32 (dequantized from Q4_1 by transformers)",
                    "pytorch-bf16": "bf16 (the fp32 model cast)",
                    "ik_llama": "Q4_1 (native, quantized dot products)",
                    "llama.cpp": "Q4_1 (native, quantized dot products)"}.items() if k in names},
        "date": time.strftime("%Y-%m-%d"),
        "results": rows,
    }
    tmp = pathlib.Path(args.out + ".tmp")
    tmp.write_text(json.dumps(result, indent=1) + "\n")
    tmp.replace(args.out)
    print("wrote", args.out)


if __name__ == "__main__":
    main()
