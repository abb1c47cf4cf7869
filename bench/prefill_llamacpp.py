#!/usr/bin/env python3
"""Times prefill of a GGUF model in a llama.cpp engine on fixed token ids; prints one JSON object.
The llama.cpp counterpart of prefill_bench (same arguments, same JSON), run by
bench/prefill_compare.py with the python of bench/.venv-llamacpp, where it installs the engines:

    ik_llama   ik-llama-cpp-python (the ik_llama.cpp fork), through its ctypes C API:
               llama_decode of each sequence (--ik-mode sequential) or of all of them in one
               llama_batch with seq_ids 0..B-1 (batch), logits requested for each sequence's
               last token only, read with llama_get_logits_ith.
    llama.cpp  xllamacpp (upstream llama-server run in-process): one completion request per
               batch whose prompt is the list of the B id sequences, n_predict 1, greedy, no
               prompt cache; B parallel slots, so the server batches the sequences itself.

Both run the model's own (quantized) weights with n_threads for prompt processing. A pass is the
prefill of the whole batch; the KV cache is cleared before each.

    prefill_llamacpp.py --engine ik_llama|llama.cpp --model F.gguf --ids FILE --batch B
                        [--threads T] [--min-seconds S] [--min-reps R] [--warmup W]
                        [--ik-mode batch|sequential] [--flash-attn 0|1] [--logits-out FILE]
"""
import argparse
import ctypes
import json
import os
import statistics
import sys
import time

import numpy as np


def read_ids(path, count):
    seqs = []
    with open(path) as f:
        for line in f:
            if len(seqs) == count:
                break
            seqs.append([int(t) for t in line.split()])
    if len(seqs) < count or any(not s for s in seqs):
        sys.exit(f"prefill_llamacpp: {path}: {count} non-empty lines needed")
    return seqs


class IkLlamaEngine:
    """ik_llama.cpp: `batch` mode puts all sequences in one llama_batch with seq_ids 0..B-1 (one
    KV cache shared by all, as llama.cpp's unified cache); `sequential` decodes them one by one."""

    def __init__(self, model_path, batch, threads, mode, flash_attn):
        import importlib.metadata
        from ik_llama_cpp import _ctypes_api as C
        from ik_llama_cpp._internals import IkModel

        self.C = C
        self.mode = mode
        self.model = IkModel(model_path)
        self.vocab = self.model.n_vocab
        self.seqs = batch
        cells = sum(len(s) for s in batch) if mode == "batch" else max(len(s) for s in batch)
        p = C.llama_context_default_params()
        p.n_ctx = (cells + 255) // 256 * 256
        p.n_batch = p.n_ctx
        p.n_seq_max = len(batch) if mode == "batch" else 1
        p.n_threads = p.n_threads_batch = threads
        p.flash_attn = bool(flash_attn)
        self.ctx = C.llama_init_from_model(self.model.model, p)
        if not self.ctx:
            raise RuntimeError("llama_init_from_model failed")
        self.n_ubatch = C.llama_n_ubatch(self.ctx)
        self.settings = {"mode": mode, "flash_attn": bool(flash_attn), "n_ctx": p.n_ctx,
                         "n_batch": p.n_batch, "n_ubatch": self.n_ubatch}
        self.version = "ik-llama-cpp-python " + importlib.metadata.version("ik-llama-cpp-python")
        groups = [list(range(len(batch)))] if mode == "batch" else [[s] for s in range(len(batch))]
        self.batches = [self._make_batch(g) for g in groups]

    def _make_batch(self, group):
        C = self.C
        n = sum(len(self.seqs[s]) for s in group)
        b = C.llama_batch_init(n, 0, 1)
        b.n_tokens = n
        i, last = 0, []
        for k, s in enumerate(group):
            ids = self.seqs[s]
            for j, t in enumerate(ids):
                b.token[i], b.pos[i], b.n_seq_id[i] = t, j, 1
                b.seq_id[i][0] = k
                b.logits[i] = 1 if j == len(ids) - 1 else 0
                i += 1
            last.append(i - 1)
        return b, last

    def prefill(self):
        C = self.C
        rows = []
        for b, last in self.batches:
            C.llama_kv_cache_clear(self.ctx)
            status = C.llama_decode(self.ctx, b)
            if status != 0:
                raise RuntimeError(f"llama_decode returned {status}")
            for i in last:
                ptr = C.llama_get_logits_ith(self.ctx, i)
                rows.append(np.ctypeslib.as_array(ptr, shape=(self.vocab,)).copy())
        return np.stack(rows)


class LlamaServerEngine:
    """Upstream llama.cpp's llama-server in-process (xllamacpp)."""

    def __init__(self, model_path, batch, threads):
        import importlib.metadata
        import xllamacpp

        p = xllamacpp.CommonParams()
        p.model.path = model_path
        p.n_parallel = len(batch)
        p.n_ctx = len(batch) * (max(len(s) for s in batch) + 16)  # per slot: prompt + 1 token
        p.cpuparams.n_threads = p.cpuparams_batch.n_threads = threads
        p.cache_ram_mib = 0  # no prompt cache across requests: every pass is a full prefill
        self.server = xllamacpp.Server(p)
        self.settings = {"n_parallel": p.n_parallel, "n_ctx": p.n_ctx, "n_batch": p.n_batch,
                         "n_ubatch": p.n_ubatch, "flash_attn_type": str(p.flash_attn_type),
                         "kv_unified": p.kv_unified, "cpu": xllamacpp.get_system_info().strip()}
        self.version = "xllamacpp " + importlib.metadata.version("xllamacpp")
        self.request = {"prompt": batch, "n_predict": 1, "temperature": 0, "n_probs": 1,
                        "cache_prompt": False}
        self.prompt_ms = []

    def prefill(self):
        r = self.server.handle_completions(self.request)
        if "error" in r or len(r.get("choices", [])) != len(self.request["prompt"]):
            raise RuntimeError(f"llama-server: {json.dumps(r)[:500]}")
        # One choice per prompt; each choice's single generated token is the greedy (top-1) one.
        choices = sorted(r["choices"], key=lambda c: c["index"])
        self.prompt_ms.append(r["timings"]["prompt_ms"])  # the server reports the first task's
        return [(c["logprobs"]["content"][0]["id"], c["logprobs"]["content"][0]["logprob"])
                for c in choices]


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--engine", choices=["ik_llama", "llama.cpp"], required=True)
    ap.add_argument("--model", required=True)
    ap.add_argument("--ids", required=True)
    ap.add_argument("--batch", type=int, required=True)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--min-seconds", type=float, default=2.0)
    ap.add_argument("--min-reps", type=int, default=5)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--ik-mode", choices=["batch", "sequential"], default="sequential")
    ap.add_argument("--flash-attn", type=int, choices=[0, 1], default=1)
    ap.add_argument("--logits-out")
    args = ap.parse_args()
    batch = read_ids(args.ids, args.batch)
    start = time.perf_counter()
    if args.engine == "ik_llama":
        engine = IkLlamaEngine(args.model, batch, args.threads, args.ik_mode, args.flash_attn)
    else:
        engine = LlamaServerEngine(args.model, batch, args.threads)
    load_seconds = time.perf_counter() - start
    for _ in range(args.warmup):
        engine.prefill()
    if hasattr(engine, "prompt_ms"):
        engine.prompt_ms.clear()
    latencies, start = [], time.perf_counter()
    while len(latencies) < args.min_reps or time.perf_counter() - start < args.min_seconds:
        t = time.perf_counter()
        out = engine.prefill()
        latencies.append(time.perf_counter() - t)
    median = statistics.median(latencies)
    tokens = sum(len(s) for s in batch)
    result_extra = {}
    if isinstance(out, np.ndarray):
        top1 = [int(i) for i in out.argmax(axis=1)]
        if args.logits_out:
            out.astype("<f4").tofile(args.logits_out + ".tmp")
            os.replace(args.logits_out + ".tmp", args.logits_out)
    else:  # (token, log-probability) pairs
        top1 = [int(i) for i, _ in out]
        result_extra = {"top1_logprob": [float(lp) for _, lp in out]}
    result = {"engine": args.engine, "version": engine.version, "settings": engine.settings,
              "batch": args.batch, "seq_len": len(batch[0]), "tokens": tokens,
              "threads": args.threads, "reps": len(latencies), "load_seconds": load_seconds,
              "latencies": latencies, "median_batch_seconds": median,
              "tokens_per_second": tokens / median, "per_sequence_ms": median * 1e3 / args.batch,
              "top1": top1, **result_extra}
    if getattr(engine, "prompt_ms", None):
        result["server_prompt_ms_first_sequence_median"] = statistics.median(engine.prompt_ms)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
