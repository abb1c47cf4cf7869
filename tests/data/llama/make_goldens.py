#!/usr/bin/env python3
"""Golden next-token predictions of SmolLM2-135M-Instruct (GGUF Q4_1) from the reference
implementation: Hugging Face transformers loading the same GGUF file (it dequantizes every tensor
to fp32 and runs LlamaForCausalLM in fp32, eager attention).

    pip install -r scripts/reference/requirements.txt   # transformers, torch, gguf, accelerate
    scripts/fetch-models.sh SmolLM2-135M-Instruct
    python3 tests/data/llama/make_goldens.py

Prompts: every 25th line of tests/data/corpus.txt (real multilingual text, 118 lines, none chosen
by hand) tokenized by the reference's tokenizer and cut to 64 tokens, plus two 512-token prompts
made of consecutive corpus lines. For each prompt, at every position: the top-1 next token and
its margin over the runner-up (so a reader can tell a real disagreement from a near-tie); at the
last position the 16 largest logits. The full last-position logit row of prompt 0 goes to
SmolLM2-135M-Instruct.logits.f32 (fp32 little-endian).
"""
import json
import pathlib

import numpy as np
import torch
import transformers
from transformers import AutoModelForCausalLM, AutoTokenizer

ROOT = pathlib.Path(__file__).resolve().parents[3]
HERE = pathlib.Path(__file__).resolve().parent
MODEL_DIR = ROOT / "models" / "SmolLM2-135M-Instruct"
GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
SHORT_TOKENS = 64
LONG_TOKENS = 512


def main():
    torch.manual_seed(0)
    tok = AutoTokenizer.from_pretrained(MODEL_DIR, gguf_file=GGUF)
    model = AutoModelForCausalLM.from_pretrained(MODEL_DIR, gguf_file=GGUF, dtype=torch.float32,
                                                 attn_implementation="eager")
    model.eval()
    lines = (ROOT / "tests" / "data" / "corpus.txt").read_text(encoding="utf-8").splitlines()
    prompts = []
    for text in lines[::25]:
        ids = tok(text, add_special_tokens=False).input_ids[:SHORT_TOKENS]
        prompts.append({"source": "corpus line", "ids": ids})
    for start in (1000, 2000):  # English, then German/Spanish lines of the corpus
        ids = []
        i = start
        while len(ids) < LONG_TOKENS:
            ids += tok(lines[i] + "\n", add_special_tokens=False).input_ids
            i += 1
        prompts.append({"source": f"corpus lines {start}..{i - 1}", "ids": ids[:LONG_TOKENS]})

    out = []
    with torch.no_grad():
        for n, p in enumerate(prompts):
            logits = model(torch.tensor([p["ids"]])).logits[0]
            top2 = logits.topk(2, dim=-1)
            last = logits[-1].topk(16)
            out.append({
                "source": p["source"],
                "ids": p["ids"],
                "argmax": top2.indices[:, 0].tolist(),
                "margin": [round(float(m), 5) for m in (top2.values[:, 0] - top2.values[:, 1])],
                "top_ids": last.indices.tolist(),
                "top_logits": [float(v) for v in last.values],
            })
            if n == 0:
                logits[-1].numpy().astype("<f4").tofile(HERE / "SmolLM2-135M-Instruct.logits.f32")
    golden = {
        "model": f"models/SmolLM2-135M-Instruct/{GGUF}",
        "reference": f"transformers {transformers.__version__}, torch {torch.__version__}, fp32",
        "prompts": out,
    }
    (HERE / "SmolLM2-135M-Instruct.goldens.json").write_text(json.dumps(golden) + "\n")
    print(f"{len(out)} prompts, {sum(len(p['ids']) for p in out)} positions")


if __name__ == "__main__":
    main()
