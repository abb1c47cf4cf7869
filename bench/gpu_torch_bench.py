#!/usr/bin/env python3
"""The PyTorch baseline for bench/gpu_bench.cc, on the same device and the same token ids.

Two PyTorch models, both bf16 with mean pooling and L2 normalization as sentence-transformers
does, timed the way gpu_bench times our engine: host wall-clock per call from token ids in
(pinned) host memory to embeddings in host memory, median of at least 20 calls after 3 warm-ups.

- "hf": Hugging Face transformers' BertModel with attn_implementation="sdpa" (what users run).
- "plain": the same weights in a minimal functional BERT (F.linear with fused QKV,
  F.scaled_dot_product_attention without a mask, F.layer_norm, F.gelu). Under CUDA-graph capture
  transformers materializes an attention mask, which keeps SDPA off its flash kernel; the plain
  model has no mask, so its graph is the strongest hand-written PyTorch baseline.

Each eager and as one CUDA graph replayed per call; with --compile also the plain model under
torch.compile(mode="reduce-overhead") (Inductor fusions + CUDA graphs). Plus
scaled_dot_product_attention alone on one layer's shapes, timed with CUDA events over 20
back-to-back calls.

    gpu_torch_bench.py --model DIR --ids IDS.json [--out FILE] [--min-seconds S] [--compile]

IDS.json is gpu_bench's --ids-out. Batches hold equal-length sequences, so no padding and no mask.
"""
import argparse
import json
import sys
import time

import torch
import torch.nn.functional as F
from transformers import BertModel

from torch_timing import graphed, time_calls, time_kernel


class PlainBert:
    """BERT encoder + mean pooling + normalization in plain PyTorch ops, weights from `hf`."""

    def __init__(self, hf):
        c = hf.config
        self.heads, self.d = c.num_attention_heads, c.hidden_size
        self.eps = c.layer_norm_eps
        e = hf.embeddings
        self.word, self.pos = e.word_embeddings.weight, e.position_embeddings.weight
        self.type0 = e.token_type_embeddings.weight[0]
        self.emb_ln = (e.LayerNorm.weight, e.LayerNorm.bias)
        self.layers = []
        for layer in hf.encoder.layer:
            a = layer.attention
            q, k, v = a.self.query, a.self.key, a.self.value
            self.layers.append(dict(
                wqkv=torch.cat([q.weight, k.weight, v.weight]).contiguous(),
                bqkv=torch.cat([q.bias, k.bias, v.bias]).contiguous(),
                wo=a.output.dense.weight, bo=a.output.dense.bias,
                ln1=(a.output.LayerNorm.weight, a.output.LayerNorm.bias),
                w1=layer.intermediate.dense.weight, b1=layer.intermediate.dense.bias,
                w2=layer.output.dense.weight, b2=layer.output.dense.bias,
                ln2=(layer.output.LayerNorm.weight, layer.output.LayerNorm.bias)))

    def __call__(self, ids):
        b, n = ids.shape
        d, h = self.d, self.heads
        x = self.word[ids] + self.pos[:n] + self.type0
        x = F.layer_norm(x, (d,), *self.emb_ln, self.eps)
        for l in self.layers:
            qkv = F.linear(x, l["wqkv"], l["bqkv"]).view(b, n, 3, h, d // h).permute(2, 0, 3, 1, 4)
            a = F.scaled_dot_product_attention(qkv[0], qkv[1], qkv[2])
            a = a.transpose(1, 2).reshape(b, n, d)
            x = F.layer_norm(F.linear(a, l["wo"], l["bo"]) + x, (d,), *l["ln1"], self.eps)
            y = F.gelu(F.linear(x, l["w1"], l["b1"]))
            x = F.layer_norm(F.linear(y, l["w2"], l["b2"]) + x, (d,), *l["ln2"], self.eps)
        return F.normalize(x.float().mean(dim=1), dim=-1)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", required=True)
    ap.add_argument("--ids", required=True)
    ap.add_argument("--out")
    ap.add_argument("--min-seconds", type=float, default=1.0)
    ap.add_argument("--compile", action="store_true",
                    help="also the plain model under torch.compile(mode='reduce-overhead')")
    args = ap.parse_args()

    torch.backends.cuda.matmul.allow_tf32 = True
    model = BertModel.from_pretrained(args.model, attn_implementation="sdpa",
                                      add_pooling_layer=False)
    model = model.to(device="cuda", dtype=torch.bfloat16).eval()
    cfg = model.config
    heads, head_dim = cfg.num_attention_heads, cfg.hidden_size // cfg.num_attention_heads

    def hf_embed(x):
        hidden = model(input_ids=x).last_hidden_state
        return F.normalize(hidden.float().mean(dim=1), dim=-1)

    plain = PlainBert(model)
    compiled = torch.compile(plain.__call__, mode="reduce-overhead") if args.compile else None
    out = {"bench": "gpu_torch_bench", "device": torch.cuda.get_device_name(),
           "torch": torch.__version__, "model": args.model,
           "what": "bf16, mean pool + normalize; hf = transformers BertModel (sdpa), "
                   "plain = functional BERT with unmasked SDPA",
           "results": []}
    import transformers
    out["transformers"] = transformers.__version__
    with torch.inference_mode():
        for case in json.load(open(args.ids)):
            b, n = case["batch"], case["tokens"]
            ids_host = torch.tensor(case["ids"], dtype=torch.long).pin_memory()
            r = {"batch": b, "tokens": n}
            for name, fn in (("hf", hf_embed), ("plain", plain)):
                def eager(fn=fn):
                    return fn(ids_host.cuda(non_blocking=True)).cpu()
                replay, graph = graphed(fn, ids_host)
                r[name + "_eager"] = time_calls(eager, args.min_seconds)
                r[name + "_graph"] = time_calls(replay, args.min_seconds)
                r[name + "_graph_vs_eager_cosine"] = float(
                    F.cosine_similarity(eager(), replay()).min())
                del graph
            r["hf_vs_plain_cosine"] = float(F.cosine_similarity(
                hf_embed(ids_host.cuda()), plain(ids_host.cuda())).min().cpu())
            if compiled is not None:
                try:
                    t0 = time.perf_counter()
                    compiled(ids_host.cuda())
                    r["plain_compile_seconds"] = time.perf_counter() - t0
                    r["plain_compiled"] = time_calls(
                        lambda: compiled(ids_host.cuda(non_blocking=True)).clone().cpu(),
                        args.min_seconds)
                except Exception as e:  # report, keep the other numbers
                    r["plain_compiled_error"] = f"{type(e).__name__}: {str(e)[:300]}"
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
            print(f"B={b:<3} N={n:<4} hf eager {r['hf_eager']['median_ms']:.3f} ms  "
                  f"hf graph {r['hf_graph']['median_ms']:.3f} ms  "
                  f"plain eager {r['plain_eager']['median_ms']:.3f} ms  "
                  f"plain graph {r['plain_graph']['median_ms']:.3f} ms  "
                  + (f"compiled {r['plain_compiled']['median_ms']:.3f} ms  "
                     if "plain_compiled" in r else "") +
                  f"attention {r['sdpa_attention_one_layer_ms'] * 1e3:.1f} us", file=sys.stderr)
            out["results"].append(r)
    text = json.dumps(out, indent=1)
    print(text)
    if args.out:
        with open(args.out, "w") as f:
            f.write(text + "\n")


if __name__ == "__main__":
    main()
