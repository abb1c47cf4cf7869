#!/usr/bin/env python3
"""What storing attention maps in fewer bits costs a real decoder's answers.

Runs a decoder (SmolLM2-135M-Instruct by default; --model takes a Hugging Face directory or a
GGUF file; transformers, fp32, CPU) on MMLU prompts: exactly, keeping every
layer's queries and keys, and then once per map format with every layer's and head's P replaced
by the round trip through the format of the exact run's P (softmax of the kept QKᵀ) before P·V
with the run's own V. That is an AttnCache hit on the input's own maps, so what differs from the
exact run is the format's error alone, not a neighbour's. Per format it reports how often the answer (argmax of the
A-D logits) changes, the mean KL divergence of the A-D distribution from the exact one, the mean
|change| of the log-probability of the right answer, and the accuracy.

Formats (p is a probability; q an integer code):
  bf16       p rounded to bf16
  p8         q = round(255 sqrt p), p' = (q/255)^2 (the map database's compact format)
  fp8        fp8 e4m3 of 256 p, divided by 256
  p4         q = round(15 sqrt p), p' = (q/15)^2: 4 bits, no scale
  p4-row     q = round(15 sqrt(p / m)), m the row's maximum: one scale per row, which a kernel
             applies to the output row after P·V
  p4-rownorm as p4-row, then the row is rescaled to sum to 1 (the scale is 1 / sum of q^2)
  p4-tile    q = round(15 sqrt(p / m)), m the maximum of each row's 64-key block rounded up to
             a power of two: one exponent per row and key block, applied while decoding
  p8-rownorm as p8, then the row is rescaled to sum to 1

    bench/map_format_accuracy.py [--model DIR|FILE.gguf] [--questions 57] [--shots 5]
                                 [--formats bf16,p8,...]
Longer prompts: --shots N takes the subject's 5 dev questions and then test questions other
than the one asked. Needs scripts/reference/requirements.txt, scripts/fetch-datasets.sh mmlu and
the model: SmolLM2 in Hugging Face form (scripts/reference/gguf_to_hf.py), or a GGUF file that
transformers reads, e.g. --model models/gemma-3-270m/gemma-3-270m-q4_k_m.gguf
(scripts/fetch-models.sh gemma-3-270m; its sliding-window layers are masked as transformers
masks them).
"""
import argparse
import csv
import glob
import json
import math
import os
import sys
import time

import torch
import torch.nn.functional as F
from mmlu_prompts import prompt
from transformers import AttentionInterface, AutoModelForCausalLM, AutoTokenizer

FORMATS = ["bf16", "p8", "fp8", "p8-rownorm", "p4", "p4-row", "p4-rownorm", "p4-tile"]
TILE = 64


def sqrt_code(p, levels, scale=None):
    """Round trip through q = round(levels * sqrt(p / scale))."""
    s = torch.ones_like(p[..., :1]) if scale is None else scale
    q = torch.round(levels * torch.sqrt((p / s).clamp(0, 1)))
    return (q / levels) ** 2 * s


def row_normalized(p):
    total = p.sum(dim=-1, keepdim=True)
    return torch.where(total > 0, p / total, p)


def round_trip(p, fmt):
    if fmt == "bf16":
        return p.to(torch.bfloat16).float()
    if fmt == "p8":
        return sqrt_code(p, 255)
    if fmt == "p8-rownorm":
        return row_normalized(sqrt_code(p, 255))
    if fmt == "fp8":
        return (p * 256).to(torch.float8_e4m3fn).float() / 256
    if fmt == "p4":
        return sqrt_code(p, 15)
    if fmt in ("p4-row", "p4-rownorm"):
        m = p.amax(dim=-1, keepdim=True).clamp_min(1e-30)
        out = sqrt_code(p, 15, m)
        return row_normalized(out) if fmt == "p4-rownorm" else out
    if fmt == "p4-tile":
        n = p.shape[-1]
        pad = (-n) % TILE
        blocks = F.pad(p, (0, pad)).unflatten(-1, (-1, TILE))
        m = blocks.amax(dim=-1, keepdim=True).clamp_min(1e-30)
        m = torch.exp2(torch.ceil(torch.log2(m)))
        return sqrt_code(blocks, 15, m).flatten(-2)[..., :n]
    raise ValueError(f"unknown format {fmt!r}")


# format: None for the exact run, which keeps each layer's (query, key) in `exact`; a format's
# run takes P from them.
CURRENT = {"format": None, "exact": {}}


def quantized_attention(module, query, key, value, attention_mask, scaling, dropout=0.0,
                        sliding_window=None, softcap=None, **_):
    if CURRENT["format"] is None:
        CURRENT["exact"][module.layer_idx] = (query, key)
    else:
        query, key = CURRENT["exact"][module.layer_idx]
    groups = module.num_key_value_groups
    key = key.repeat_interleave(groups, dim=1)
    value = value.repeat_interleave(groups, dim=1)
    scores = torch.matmul(query, key.transpose(2, 3)) * scaling
    if softcap is not None:
        scores = torch.tanh(scores / softcap) * softcap
    if attention_mask is not None and attention_mask.dtype == torch.bool:
        scores = scores.masked_fill(~attention_mask, float("-inf"))
    elif attention_mask is not None:
        scores = scores + attention_mask
    elif module.is_causal:
        # transformers passes no mask to a registered attention function when the batch needs
        # only causal masking (as for SDPA's is_causal), and none to a sliding-window layer whose
        # window covers the sequence: query row i (the last q rows of the keys) sees keys
        # i + k - q - window + 1 .. i + k - q.
        q, k = scores.shape[-2], scores.shape[-1]
        hidden = torch.ones(q, k, dtype=torch.bool).triu(k - q + 1)
        if sliding_window:
            hidden |= torch.ones(q, k, dtype=torch.bool).tril(k - q - sliding_window)
        scores = scores.masked_fill(hidden, float("-inf"))
    p = F.softmax(scores, dim=-1, dtype=torch.float32)
    if CURRENT["format"] is not None:
        p = round_trip(p, CURRENT["format"])
    out = torch.matmul(p.to(query.dtype), value)
    return out.transpose(1, 2).contiguous(), None


def prompts(data, count, shots):
    dev_files = sorted(glob.glob(os.path.join(data, "dev", "*_dev.csv")))
    if not dev_files:
        raise SystemExit(f"no MMLU dev files under {data}: scripts/fetch-datasets.sh mmlu")
    out = []
    per_subject = max(1, math.ceil(count / len(dev_files)))
    for path in dev_files:
        subject = os.path.basename(path)[:-len("_dev.csv")]
        dev = list(csv.reader(open(path)))
        test = list(csv.reader(open(os.path.join(data, "test", subject + "_test.csv"))))
        for i, asked in enumerate(test[:per_subject]):
            examples = (dev + [r for j, r in enumerate(test) if j != i])[:shots]
            out.append((subject, prompt(subject, examples, asked), "ABCD".index(asked[5])))
    step = len(out) / count
    return [out[int(i * step)] for i in range(count)] if count < len(out) else out


def main():
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default=os.path.join(root, "models/SmolLM2-135M-Instruct-hf"))
    ap.add_argument("--data", default=os.path.join(root, "data/mmlu"))
    ap.add_argument("--questions", type=int, default=57, help="spread over the subjects")
    ap.add_argument("--shots", type=int, default=5)
    ap.add_argument("--formats", default=",".join(FORMATS))
    ap.add_argument("--json", help="write the results here as well")
    args = ap.parse_args()
    formats = args.formats.split(",")
    for f in formats:
        if f not in FORMATS:
            raise SystemExit(f"unknown format {f!r}; known: {', '.join(FORMATS)}")
    AttentionInterface.register("map_format", quantized_attention)
    # A Hugging Face directory, or a GGUF file that transformers dequantizes to fp32.
    if not os.path.exists(args.model):
        raise SystemExit(f"no model at {args.model} (see --help for how to get one)")
    if os.path.isfile(args.model):
        source = {"pretrained_model_name_or_path": os.path.dirname(os.path.abspath(args.model)),
                  "gguf_file": os.path.basename(args.model)}
    else:
        source = {"pretrained_model_name_or_path": args.model}
    name = os.path.basename(args.model.rstrip("/"))
    tok = AutoTokenizer.from_pretrained(**source)
    model = AutoModelForCausalLM.from_pretrained(**source, dtype=torch.float32,
                                                 attn_implementation="map_format").eval()
    choice_ids = [tok(" " + c, add_special_tokens=False).input_ids[-1] for c in "ABCD"]
    reference = AutoModelForCausalLM.from_pretrained(**source, dtype=torch.float32,
                                                     attn_implementation="sdpa").eval()
    stats = {f: {"changed": 0, "kl": 0.0, "dlogp": 0.0, "right": 0} for f in ["exact"] + formats}
    items = prompts(args.data, args.questions, args.shots)
    encoded = [tok(text, return_tensors="pt").input_ids for _, text, _ in items]
    lengths = [ids.shape[1] for ids in encoded]
    # Checked on the longest prompt, which passes a sliding window where any does.
    checked = lengths.index(max(lengths))
    start = time.time()
    for k, ((subject, _, answer), ids) in enumerate(zip(items, encoded)):
        logp = {}
        with torch.no_grad():
            for f in ["exact"] + formats:
                CURRENT["format"] = None if f == "exact" else f
                logits = model(ids, logits_to_keep=1).logits[0, -1, choice_ids]
                logp[f] = F.log_softmax(logits.double(), dim=-1)
            if k == checked:  # the exact run is the model's own attention, not another one
                sdpa = reference(ids, logits_to_keep=1).logits[0, -1, choice_ids]
                gap = float((F.log_softmax(sdpa.double(), dim=-1) - logp["exact"]).abs().max())
                if gap > 1e-3:
                    raise SystemExit(f"the exact run differs from transformers' SDPA by {gap}")
        ref = logp["exact"]
        for f, lp in logp.items():
            s = stats[f]
            s["changed"] += int(lp.argmax() != ref.argmax())
            s["kl"] += float((ref.exp() * (ref - lp)).sum())
            s["dlogp"] += abs(float(lp[answer] - ref[answer]))
            s["right"] += int(lp.argmax() == answer)
        print(f"[{k + 1}/{len(items)}] {subject} {ids.shape[1]} tokens, "
              f"{time.time() - start:.0f} s", file=sys.stderr, flush=True)
    n = len(items)
    print(f"{n} questions, {args.shots} shots, {min(lengths)}-{max(lengths)} tokens "
          f"(mean {sum(lengths) / n:.0f}), {name} fp32")
    print(f"{'format':12s} {'bits':>5s} {'answers changed':>16s} {'mean KL':>10s} "
          f"{'mean |dlogp|':>13s} {'accuracy':>9s}")
    bits = {"exact": 32, "bf16": 16, "p8": 8, "fp8": 8, "p8-rownorm": 8}
    results = []
    for f, s in stats.items():
        row = {"format": f, "bits": bits.get(f, 4), "answers_changed": s["changed"],
               "mean_kl": s["kl"] / n, "mean_abs_dlogp": s["dlogp"] / n,
               "accuracy": s["right"] / n}
        results.append(row)
        print(f"{f:12s} {row['bits']:5d} {s['changed']:9d} of {n:<4d} {row['mean_kl']:10.2e} "
              f"{row['mean_abs_dlogp']:13.2e} {row['accuracy']:9.3f}")
    if args.json:
        with open(args.json, "w") as out:
            json.dump({"model": name, "questions": n,
                       "shots": args.shots, "tokens_min": min(lengths),
                       "tokens_max": max(lengths), "tokens_mean": sum(lengths) / n,
                       "command": " ".join(sys.argv), "results": results}, out, indent=1)


if __name__ == "__main__":
    main()
