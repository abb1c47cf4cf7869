#!/usr/bin/env python3
"""Writes a Llama-3.2-1B-shaped Hugging Face directory with seeded random bf16 weights, with
numpy only (no torch, no GPU): config.json and model.safetensors, written by hand. For timing
loads (bench/decoder_load_bench.cc); the weights mean nothing.

    make_random_llama.py DIR
"""
import json
import os
import struct
import sys

import numpy as np

D, FF, LAYERS, HEADS, KV, DH, VOCAB = 2048, 8192, 16, 32, 8, 64, 128256


def main():
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    out = sys.argv[1]
    os.makedirs(out, exist_ok=True)
    cfg = dict(architectures=["LlamaForCausalLM"], model_type="llama", hidden_size=D,
               intermediate_size=FF, num_hidden_layers=LAYERS, num_attention_heads=HEADS,
               num_key_value_heads=KV, head_dim=DH, vocab_size=VOCAB,
               max_position_embeddings=131072, rms_norm_eps=1e-5, rope_theta=500000.0,
               tie_word_embeddings=True, hidden_act="silu", torch_dtype="bfloat16",
               rope_scaling=dict(rope_type="llama3", factor=32.0, low_freq_factor=1.0,
                                 high_freq_factor=4.0, original_max_position_embeddings=8192))
    with open(os.path.join(out, "config.json"), "w") as f:
        json.dump(cfg, f)
    shapes = {"model.embed_tokens.weight": (VOCAB, D), "model.norm.weight": (D,)}
    for i in range(LAYERS):
        p = f"model.layers.{i}."
        shapes.update({
            p + "input_layernorm.weight": (D,), p + "post_attention_layernorm.weight": (D,),
            p + "self_attn.q_proj.weight": (HEADS * DH, D),
            p + "self_attn.k_proj.weight": (KV * DH, D),
            p + "self_attn.v_proj.weight": (KV * DH, D),
            p + "self_attn.o_proj.weight": (D, HEADS * DH),
            p + "mlp.gate_proj.weight": (FF, D), p + "mlp.up_proj.weight": (FF, D),
            p + "mlp.down_proj.weight": (D, FF)})
    header, offset = {}, 0
    for name, shape in shapes.items():
        n = int(np.prod(shape)) * 2
        header[name] = {"dtype": "BF16", "shape": list(shape), "data_offsets": [offset, offset + n]}
        offset += n
    text = json.dumps(header).encode()
    text += b" " * (-len(text) % 8)
    rng = np.random.default_rng(0)
    with open(os.path.join(out, "model.safetensors"), "wb") as f:
        f.write(struct.pack("<Q", len(text)))
        f.write(text)
        for name, shape in shapes.items():
            x = np.ones(shape, np.float32) if name.endswith("norm.weight") else \
                rng.standard_normal(shape, dtype=np.float32) * np.float32(0.02)
            f.write((x.view(np.uint32) >> 16).astype(np.uint16).tobytes())  # bf16, truncated
    print(f"wrote {offset // 2} parameters to {out}", file=sys.stderr)


if __name__ == "__main__":
    main()
