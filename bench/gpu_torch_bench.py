#!/usr/bin/env python3
"""The PyTorch baseline for bench/gpu_bench.cc, on the same device and the same token ids.

Hugging Face transformers' BertModel in bf16 with attn_implementation="sdpa" (PyTorch's fused
scaled_dot_product_attention, FlashAttention-2 for these shapes), mean pooling and L2
normalization as sentence-transformers does, timed the way gpu_bench times our engine: host
wall-clock per call from token ids in (pinned) host memory to embeddings in host memory, median
of at least 20 calls after 3 warm-ups. Two variants: eager, and the whole call captured once as a
CUDA graph and replayed (the strongest PyTorch baseline short of torch.compile). Plus
scaled_dot_product_attention alone on one layer's shapes, timed with CUDA events.

    gpu_torch_bench.py --model DIR --ids IDS.json [--out FILE] [--min-seconds S] [--compile]

IDS.json is gpu_bench's --ids-out. Batches hold equal-length sequences, so no padding and no mask.
"""
import argparse
import json
import statistics
import sys
import time

import torch
import torch.nn.functional as F
from transformers import BertModel


def time_calls(call, min_seconds):
    for _ in range(3):
        call()
    ms, start = [], time.perf_counter()
    while len(ms) < 20 or time.perf_counter() - start < min_seconds:
        t = time.perf_counter()
        call()
        ms.append((time.perf_counter() - t) * 1e3)
    return {"median_ms": statistics.median(ms), "min_ms": min(ms), "calls": len(ms)}


def time_kernel(fn, reps=50):
    for _ in range(3):
        fn()
    start, stop = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    ms = []
    for _ in range(reps):
        start.record()
        fn()
        stop.record()
        stop.synchronize()
        ms.append(start.elapsed_time(stop))
    return statistics.median(ms)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", required=True)
    ap.add_argument("--ids", required=True)
    ap.add_argument("--out")
    ap.add_argument("--min-seconds", type=float, default=1.0)
    ap.add_argument("--compile", action="store_true", help="also torch.compile(mode='max-autotune')")
    args = ap.parse_args()

    torch.backends.cuda.matmul.allow_tf32 = True
    model = BertModel.from_pretrained(args.model, attn_implementation="sdpa",
                                      add_pooling_layer=False)
    model = model.to(device="cuda", dtype=torch.bfloat16).eval()
    cfg = model.config
    heads, head_dim = cfg.num_attention_heads, cfg.hidden_size // cfg.num_attention_heads

    def embed(x):
        hidden = model(input_ids=x).last_hidden_state
        return F.normalize(hidden.float().mean(dim=1), dim=-1)

    compiled = torch.compile(embed, mode="max-autotune-no-cudagraphs") if args.compile else None
    out = {"bench": "gpu_torch_bench", "device": torch.cuda.get_device_name(),
           "torch": torch.__version__, "model": args.model,
           "what": "transformers BertModel bf16, attn_implementation=sdpa, mean pool + normalize",
           "results": []}
    import transformers
    out["transformers"] = transformers.__version__
    with torch.inference_mode():
        for case in json.load(open(args.ids)):
            b, n = case["batch"], case["tokens"]
            ids_host = torch.tensor(case["ids"], dtype=torch.long).pin_memory()

            def eager():
                return embed(ids_host.cuda(non_blocking=True)).cpu()

            static_ids = ids_host.cuda()
            side = torch.cuda.Stream()
            side.wait_stream(torch.cuda.current_stream())
            with torch.cuda.stream(side):
                for _ in range(3):
                    embed(static_ids)
            torch.cuda.current_stream().wait_stream(side)
            graph = torch.cuda.CUDAGraph()
            with torch.cuda.graph(graph):
                static_out = embed(static_ids)

            def replay():
                static_ids.copy_(ids_host, non_blocking=True)
                graph.replay()
                return static_out.cpu()

            r = {"batch": b, "tokens": n,
                 "sdpa_eager": time_calls(eager, args.min_seconds),
                 "sdpa_graph": time_calls(replay, args.min_seconds)}
            if compiled is not None:
                r["sdpa_compiled"] = time_calls(
                    lambda: compiled(ids_host.cuda(non_blocking=True)).cpu(), args.min_seconds)
            # Graph and eager agree (a check that the graph computes the same thing).
            r["graph_vs_eager_cosine"] = float(F.cosine_similarity(eager(), replay()).min())

            q, k, v = (torch.randn(b, heads, n, head_dim, device="cuda", dtype=torch.bfloat16)
                       for _ in range(3))
            r["sdpa_attention_one_layer_ms"] = time_kernel(
                lambda: F.scaled_dot_product_attention(q, k, v))
            try:
                from torch.nn.attention import SDPBackend, sdpa_kernel
                with sdpa_kernel(SDPBackend.FLASH_ATTENTION):
                    r["flash_attention_one_layer_ms"] = time_kernel(
                        lambda: F.scaled_dot_product_attention(q, k, v))
            except RuntimeError as e:  # flash not available for this shape or build
                r["flash_attention_one_layer_ms"] = None
                r["flash_error"] = str(e)[:200]
            print(f"B={b:<3} N={n:<4} eager {r['sdpa_eager']['median_ms']:.3f} ms  "
                  f"graph {r['sdpa_graph']['median_ms']:.3f} ms  "
                  f"attention {r['sdpa_attention_one_layer_ms'] * 1e3:.1f} us", file=sys.stderr)
            out["results"].append(r)
    text = json.dumps(out, indent=1)
    print(text)
    if args.out:
        with open(args.out, "w") as f:
            f.write(text + "\n")


if __name__ == "__main__":
    main()
