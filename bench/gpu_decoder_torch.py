#!/usr/bin/env python3
"""PyTorch beside bench/gpu_decoder_bench.cc: Llama-3.2-1B- and 3B-shaped decoders with seeded
random weights, on the same device and the same token ids.

    gpu_decoder_torch.py make --size 1B|3B --dir DIR
        writes the model (transformers' LlamaForCausalLM, random init under torch.manual_seed(0),
        bf16 safetensors); both engines load this directory.
    gpu_decoder_torch.py time --model DIR [--batches 1,8,32] [--lengths 189,835,2048,4096]
                              [--ours-logits DIR] [--out FILE]
        times PyTorch, prefill to the last token's logits (host ids in, host logits out; median
        of >= 3 calls and >= --min-seconds after warm-up):
        - "hf": transformers' LlamaForCausalLM, attn_implementation="sdpa", logits_to_keep=1
          (what users run), eager and captured as one CUDA graph;
        - "plain": the same weights in a minimal functional Llama (fused QKV and gate/up F.linear,
          F.rms_norm, transformers' rotary tables, F.scaled_dot_product_attention(is_causal=True,
          enable_gqa=True), the last layer past its keys and values and the LM head on the last
          token only), eager and as one CUDA graph: the strongest hand-written PyTorch baseline.
        plus SDPA's flash kernel alone on one layer's shapes (CUDA events, 20 back-to-back calls),
        and with --ours-logits the agreement of gpu_decoder_bench's logits with HF eager's.
    gpu_decoder_torch.py attention --size 1B|3B [--batches …] [--lengths …] [--out FILE]
        SDPA alone on one layer's shapes (random q, k, v; causal, grouped-query): the flash
        backend forced, and SDPA's own choice; no model. Beside gpu_decoder_bench --attention-only.

Token ids: sequence s, position i holds (1000003*s + 7919*i + 17) % 32000, as gpu_decoder_bench.
torch.compile is not timed: compiling 2 models x 12 shapes does not fit the device time we have.
"""
import argparse
import json
import os
import sys
import time

import numpy as np
import torch
import torch.nn.functional as F

from torch_timing import graphed, time_calls, time_kernel

SIZES = {
    # Llama-3.2-1B and -3B (config.json of meta-llama/Llama-3.2-{1B,3B}), random weights.
    "1B": dict(hidden_size=2048, intermediate_size=8192, num_hidden_layers=16,
               num_attention_heads=32, num_key_value_heads=8, head_dim=64),
    "3B": dict(hidden_size=3072, intermediate_size=8192, num_hidden_layers=28,
               num_attention_heads=24, num_key_value_heads=8, head_dim=128),
}


def make(args):
    from transformers import LlamaConfig, LlamaForCausalLM
    cfg = LlamaConfig(vocab_size=128256, max_position_embeddings=131072, rms_norm_eps=1e-5,
                      rope_theta=500000.0, tie_word_embeddings=True, hidden_act="silu",
                      rope_scaling=dict(rope_type="llama3", factor=32.0, low_freq_factor=1.0,
                                        high_freq_factor=4.0,
                                        original_max_position_embeddings=8192),
                      **SIZES[args.size])
    torch.manual_seed(0)
    t = time.perf_counter()
    with torch.device("cuda"):
        model = LlamaForCausalLM(cfg).to(torch.bfloat16)
    model.save_pretrained(args.dir, max_shard_size="50GB")
    print(f"wrote {args.size} ({sum(p.numel() for p in model.parameters()) / 1e9:.2f} B params) "
          f"to {args.dir} in {time.perf_counter() - t:.1f} s", file=sys.stderr)


def ids_for(b, n):
    s = np.arange(b, dtype=np.int64)[:, None]
    i = np.arange(n, dtype=np.int64)[None, :]
    return torch.from_numpy((1000003 * s + 7919 * i + 17) % 32000)


class PlainLlama:
    """Llama prefill to the last token's logits in plain PyTorch ops, weights from `hf`."""

    def __init__(self, hf):
        c = hf.config
        self.h, self.kv, self.dh = c.num_attention_heads, c.num_key_value_heads, c.head_dim
        self.eps = c.rms_norm_eps
        m = hf.model
        self.embed, self.norm, self.head = m.embed_tokens.weight, m.norm.weight, hf.lm_head.weight
        self.rotary = m.rotary_emb
        self.layers = []
        for layer in m.layers:
            a, p = layer.self_attn, layer.mlp
            self.layers.append(dict(
                n1=layer.input_layernorm.weight, n2=layer.post_attention_layernorm.weight,
                wqkv=torch.cat([a.q_proj.weight, a.k_proj.weight, a.v_proj.weight]).contiguous(),
                wo=a.o_proj.weight,
                wgu=torch.cat([p.gate_proj.weight, p.up_proj.weight]).contiguous(),
                wd=p.down_proj.weight))

    def __call__(self, ids):
        from transformers.models.llama.modeling_llama import apply_rotary_pos_emb
        b, n = ids.shape
        h, kv, dh = self.h, self.kv, self.dh
        x = self.embed[ids]
        pos = torch.arange(n, device=ids.device)[None]
        cos, sin = self.rotary(x, pos)
        d = x.shape[-1]
        for i, l in enumerate(self.layers):
            y = F.rms_norm(x, (d,), l["n1"], self.eps)
            q, k, v = F.linear(y, l["wqkv"]).split([h * dh, kv * dh, kv * dh], dim=-1)
            q = q.view(b, n, h, dh).transpose(1, 2)
            k = k.view(b, n, kv, dh).transpose(1, 2)
            v = v.view(b, n, kv, dh).transpose(1, 2)
            q, k = apply_rotary_pos_emb(q, k, cos, sin)
            if i + 1 < len(self.layers):
                a = F.scaled_dot_product_attention(q, k, v, is_causal=True, enable_gqa=True)
            else:  # only the last token's row is wanted: its query sees every key
                x = x[:, -1:]
                a = F.scaled_dot_product_attention(q[:, :, -1:], k, v, enable_gqa=True)
            x = x + F.linear(a.transpose(1, 2).reshape(b, x.shape[1], h * dh), l["wo"])
            g, u = F.linear(F.rms_norm(x, (d,), l["n2"], self.eps), l["wgu"]).chunk(2, dim=-1)
            x = x + F.linear(F.silu(g) * u, l["wd"])
        last = F.rms_norm(x[:, -1], (d,), self.norm, self.eps)
        return F.linear(last, self.head).float()


def time_models(args):
    from transformers import LlamaForCausalLM
    import transformers
    model = LlamaForCausalLM.from_pretrained(args.model, attn_implementation="sdpa",
                                             dtype=torch.bfloat16).cuda().eval()
    cfg = model.config
    plain = PlainLlama(model)
    out = {"bench": "gpu_decoder_torch", "device": torch.cuda.get_device_name(),
           "torch": torch.__version__, "transformers": transformers.__version__,
           "model": args.model, "results": []}

    def hf_logits(x):
        return model(input_ids=x, logits_to_keep=1).logits[:, -1].float()

    with torch.inference_mode():
        for n in map(int, args.lengths.split(",")):
            for b in map(int, args.batches.split(",")):
                ids_host = ids_for(b, n).pin_memory()
                r = {"batch": b, "tokens": n}
                reference = None
                for name, fn in (("hf", hf_logits), ("plain", plain)):
                    def eager(fn=fn):
                        return fn(ids_host.cuda(non_blocking=True)).cpu()
                    r[name + "_eager"] = time_calls(eager, args.min_seconds, 3, 2)
                    result = eager()
                    if reference is None:
                        reference = result
                    else:
                        r[name + "_vs_hf_max_abs"] = float((result - reference).abs().max())
                    try:
                        replay, graph = graphed(fn, ids_host, warmups=2)
                        r[name + "_graph"] = time_calls(replay, args.min_seconds, 3, 2)
                        r[name + "_graph_vs_eager_max_abs"] = float(
                            (replay() - result).abs().max())
                        del graph
                    except Exception as e:  # report, keep the other numbers
                        r[name + "_graph_error"] = f"{type(e).__name__}: {str(e)[:300]}"
                    torch.cuda.empty_cache()
                best = min(v["median_ms"] for k, v in r.items()
                           if isinstance(v, dict) and "median_ms" in v)
                r["best_ms"] = best
                q = torch.randn(b, cfg.num_attention_heads, n, cfg.head_dim, device="cuda",
                                dtype=torch.bfloat16)
                k, v = (torch.randn(b, cfg.num_key_value_heads, n, cfg.head_dim, device="cuda",
                                    dtype=torch.bfloat16) for _ in range(2))
                try:
                    from torch.nn.attention import SDPBackend, sdpa_kernel
                    with sdpa_kernel(SDPBackend.FLASH_ATTENTION):
                        r["flash_attention_one_layer_ms"] = time_kernel(
                            lambda: F.scaled_dot_product_attention(q, k, v, is_causal=True,
                                                                   enable_gqa=True), reps=10)
                except RuntimeError as e:
                    r["flash_error"] = str(e)[:200]
                r["sdpa_attention_one_layer_ms"] = time_kernel(
                    lambda: F.scaled_dot_product_attention(q, k, v, is_causal=True,
                                                           enable_gqa=True), reps=10)
                with sdpa_kernel(SDPBackend.CUDNN_ATTENTION):
                    try:
                        r["cudnn_attention_one_layer_ms"] = time_kernel(
                            lambda: F.scaled_dot_product_attention(q, k, v, is_causal=True,
                                                                   enable_gqa=True), reps=10)
                    except RuntimeError as e:
                        r["cudnn_error"] = str(e)[:200]
                del q, k, v
                if args.ours_logits:
                    path = os.path.join(args.ours_logits, f"B{b}_N{n}.f32")
                    if os.path.exists(path):
                        ours = torch.from_numpy(np.fromfile(path, dtype=np.float32)).view(b, -1)
                        r["ours_vs_hf_max_abs"] = float((ours - reference).abs().max())
                        r["ours_vs_hf_top1_agree"] = int(
                            (ours.argmax(-1) == reference.argmax(-1)).sum())
                        r["ours_vs_hf_cosine_min"] = float(
                            F.cosine_similarity(ours, reference).min())
                print(f"B={b:<3} N={n:<5} " + "  ".join(
                    f"{k} {v['median_ms']:.3f}" for k, v in r.items()
                    if isinstance(v, dict)) + f"  flash {r.get('flash_attention_one_layer_ms', 0) * 1e3:.1f} us"
                    + (f"  ours~hf top1 {r['ours_vs_hf_top1_agree']}/{b} max|d| "
                       f"{r['ours_vs_hf_max_abs']:.3f}" if "ours_vs_hf_max_abs" in r else ""),
                    file=sys.stderr)
                out["results"].append(r)
                if args.out:  # rewritten after each shape: a run cut short keeps what it has
                    with open(args.out, "w") as f:
                        f.write(json.dumps(out, indent=1) + "\n")


def time_attention(args):
    from torch.nn.attention import SDPBackend, sdpa_kernel
    cfg = SIZES[args.size]
    heads, kv_heads, dh = cfg["num_attention_heads"], cfg["num_key_value_heads"], cfg["head_dim"]
    out = {"bench": "gpu_decoder_torch attention", "device": torch.cuda.get_device_name(),
           "torch": torch.__version__, "size": args.size,
           "config": {"heads": heads, "kv_heads": kv_heads, "head_dim": dh}, "results": []}
    for n in map(int, args.lengths.split(",")):
        for b in map(int, args.batches.split(",")):
            q = torch.randn(b, heads, n, dh, device="cuda", dtype=torch.bfloat16)
            k, v = (torch.randn(b, kv_heads, n, dh, device="cuda", dtype=torch.bfloat16)
                    for _ in range(2))

            def sdpa():
                return F.scaled_dot_product_attention(q, k, v, is_causal=True, enable_gqa=True)
            r = {"batch": b, "tokens": n}
            inner = max(2, min(20, int(4e8 / (b * n * n))))  # ~2 ms of work per sample
            try:
                with sdpa_kernel(SDPBackend.FLASH_ATTENTION):
                    r["flash_attention_one_layer_ms"] = time_kernel(sdpa, reps=10, inner=inner)
            except RuntimeError as e:
                r["flash_error"] = str(e)[:200]
            r["sdpa_attention_one_layer_ms"] = time_kernel(sdpa, reps=10, inner=inner)
            try:
                with sdpa_kernel(SDPBackend.CUDNN_ATTENTION):
                    r["cudnn_attention_one_layer_ms"] = time_kernel(sdpa, reps=10, inner=inner)
            except RuntimeError as e:
                r["cudnn_error"] = str(e)[:200]
            del q, k, v
            # A ceiling for P·V from stored maps: cuBLAS's batched GEMM of dense bf16 P [N×N] by
            # V [N×D] per head, on at most ~8 GB of P (a sub-batch, time scaled to the batch).
            # A causal map has half of P's products, so half of this is what a kernel at
            # cuBLAS's speed would take.
            sub = max(1, min(b, int(8e9 // (heads * n * n * 2))))
            p_dense = torch.rand(sub * heads, n, n, device="cuda", dtype=torch.bfloat16)
            v_dense = torch.rand(sub * heads, n, dh, device="cuda", dtype=torch.bfloat16)
            ms = time_kernel(lambda: torch.bmm(p_dense, v_dense), reps=10,
                             inner=max(2, min(20, int(4e8 / (sub * n * n))))) * b / sub
            r["pv_dense_bmm_ms"] = ms
            r["pv_dense_bmm_tflops"] = 2 * b * heads * n * n * dh / (ms * 1e-3) / 1e12
            del p_dense, v_dense
            torch.cuda.empty_cache()
            print(f"B={b:<3} N={n:<5} flash {r.get('flash_attention_one_layer_ms', 0) * 1e3:9.1f} us"
                  f"  sdpa {r['sdpa_attention_one_layer_ms'] * 1e3:9.1f} us"
                  f"  dense P·V bmm {ms * 1e3:9.1f} us", file=sys.stderr)
            out["results"].append(r)
            if args.out:
                with open(args.out, "w") as f:
                    f.write(json.dumps(out, indent=1) + "\n")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    m = sub.add_parser("make", help="write a random-weight Llama-shaped model")
    m.add_argument("--size", choices=sorted(SIZES), required=True)
    m.add_argument("--dir", required=True)
    t = sub.add_parser("time", help="time PyTorch on the model")
    t.add_argument("--model", required=True)
    t.add_argument("--batches", default="1,8,32")
    t.add_argument("--lengths", default="189,835,2048,4096")
    t.add_argument("--min-seconds", type=float, default=1.0)
    t.add_argument("--ours-logits", help="gpu_decoder_bench's --logits-dir, to compare")
    t.add_argument("--out")
    a = sub.add_parser("attention", help="time SDPA alone on one layer's shapes")
    a.add_argument("--size", choices=sorted(SIZES), required=True)
    a.add_argument("--batches", default="1,8,32")
    a.add_argument("--lengths", default="189,835,2048,4096")
    a.add_argument("--out")
    args = ap.parse_args()
    torch.backends.cuda.matmul.allow_tf32 = True
    {"make": make, "time": time_models, "attention": time_attention}[args.cmd](args)


if __name__ == "__main__":
    main()
