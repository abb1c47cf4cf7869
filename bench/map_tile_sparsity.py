#!/usr/bin/env python3
"""How many of a real decoder's 64x64 causal map tiles are all zero once stored as P8.

A reuse kernel could skip such tiles (no bytes read, no products), so their share bounds what a
block-sparse P8 format would save. Runs SmolLM2-135M-Instruct (transformers, eager attention, fp32,
CPU) on 5-shot MMLU prompts of a few subjects and counts, per layer and head, the tiles on or
below the diagonal whose every probability p has round(255 * sqrt(p)) == 0 (p < 3.8e-6), and
the share of zero P8 values on or below the diagonal (what an element-sparse format would drop).

    bench/map_tile_sparsity.py [--model models/SmolLM2-135M-Instruct-hf] [--data data/mmlu]
                               [--subjects 6]
Needs scripts/reference/requirements.txt, the model in Hugging Face form
(scripts/reference/gguf_to_hf.py) and scripts/fetch-datasets.sh mmlu.
"""
import argparse
import csv
import glob
import os

import torch
from mmlu_prompts import prompt
from transformers import AutoModelForCausalLM, AutoTokenizer

TILE = 64


def main():
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default=os.path.join(root, "models/SmolLM2-135M-Instruct-hf"))
    ap.add_argument("--data", default=os.path.join(root, "data/mmlu"))
    ap.add_argument("--subjects", type=int, default=6, help="evenly spaced subjects to sample")
    args = ap.parse_args()
    dev_files = sorted(glob.glob(os.path.join(args.data, "dev", "*_dev.csv")))
    if not dev_files:
        raise SystemExit(f"no MMLU dev files under {args.data}: scripts/fetch-datasets.sh mmlu")
    tok = AutoTokenizer.from_pretrained(args.model)
    model = AutoModelForCausalLM.from_pretrained(args.model, dtype=torch.float32,
                                                 attn_implementation="eager").eval()
    step = max(1, len(dev_files) // args.subjects)
    for path in dev_files[::step][:args.subjects]:
        subject = os.path.basename(path)[:-len("_dev.csv")]
        shots = list(csv.reader(open(path)))
        test = next(csv.reader(open(os.path.join(args.data, "test", subject + "_test.csv"))))
        ids = tok(prompt(subject, shots, test), return_tensors="pt").input_ids
        n = ids.shape[1]
        with torch.no_grad():
            maps = model(ids, output_attentions=True).attentions  # per layer [1, H, n, n]
        blocks = (n + TILE - 1) // TILE
        lower = torch.tril(torch.ones(blocks, blocks, dtype=torch.bool))
        causal = torch.tril(torch.ones(n, n, dtype=torch.bool))
        zero = total = 0
        zero_values = values = 0
        per_layer = []
        for layer in maps:
            p = layer[0]
            q = torch.round(255 * torch.sqrt(p.clamp(0, 1)))
            zero_values += ((q == 0) & causal).sum().item()
            values += causal.sum().item() * p.shape[0]
            padded = torch.zeros(p.shape[0], blocks * TILE, blocks * TILE)
            padded[:, :n, :n] = q
            tile_max = padded.reshape(p.shape[0], blocks, TILE, blocks, TILE).amax(dim=(2, 4))
            z = ((tile_max == 0) & lower).sum().item()
            t = lower.sum().item() * p.shape[0]
            zero += z
            total += t
            per_layer.append(z / t)
        print(f"{subject:32s} {n:5d} tokens, {blocks * (blocks + 1) // 2:4d} tiles per head: "
              f"all-zero P8 tiles {zero / total:.4f} (per layer {min(per_layer):.3f}-"
              f"{max(per_layer):.3f}); zero P8 values {zero_values / values:.3f}", flush=True)


if __name__ == "__main__":
    main()
