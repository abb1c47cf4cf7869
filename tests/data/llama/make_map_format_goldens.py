#!/usr/bin/env python3
"""Golden MMLU answer log-probabilities of SmolLM2-135M-Instruct reusing its own attention maps
stored in a compact format, from the reference implementation: transformers (fp32, CPU) through
bench/map_format_accuracy.py's attention, which keeps the exact run's queries and keys and, in a
format's run, replaces every layer's and head's P by the round trip of the exact P through the
format (an AttnCache hit on the prompt's own maps at every layer).

    pip install -r scripts/reference/requirements.txt
    python3 scripts/reference/gguf_to_hf.py      # models/SmolLM2-135M-Instruct-hf
    python3 tests/data/llama/make_map_format_goldens.py

Prompts: the first 5 test questions of us_foreign_policy in tests/data/mmlu, 1 shot (the first
dev question), as `attncache score mmlu --shots 1` builds them. Writes
SmolLM2-135M-Instruct.map_formats.json: per prompt its token count and the A-D log-softmax of the
exact run and of each format (p8, p4-rownorm: the map database's P8 and P4).
"""
import csv
import json
import pathlib
import sys

import torch
import torch.nn.functional as F
import transformers
from transformers import AttentionInterface, AutoModelForCausalLM, AutoTokenizer

ROOT = pathlib.Path(__file__).resolve().parents[3]
HERE = pathlib.Path(__file__).resolve().parent
sys.path.insert(0, str(ROOT / "bench"))
import map_format_accuracy as mfa  # noqa: E402
from mmlu_prompts import prompt  # noqa: E402

SUBJECT = "us_foreign_policy"
QUESTIONS = 5
FORMATS = ["p8", "p4-rownorm"]


def main():
    model_dir = ROOT / "models" / "SmolLM2-135M-Instruct-hf"
    AttentionInterface.register("map_format", mfa.quantized_attention)
    tok = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32,
                                                 attn_implementation="map_format").eval()
    choice_ids = [tok(" " + c, add_special_tokens=False).input_ids[-1] for c in "ABCD"]
    mmlu = ROOT / "tests" / "data" / "mmlu"
    dev = list(csv.reader(open(mmlu / "dev" / f"{SUBJECT}_dev.csv", encoding="utf-8")))
    test = list(csv.reader(open(mmlu / "test" / f"{SUBJECT}_test.csv", encoding="utf-8")))
    prompts = []
    for asked in test[:QUESTIONS]:
        ids = tok(prompt(SUBJECT, dev[:1], asked), return_tensors="pt").input_ids
        entry = {"tokens": ids.shape[1]}
        with torch.no_grad():
            for f in [None] + FORMATS:
                mfa.CURRENT["format"] = f
                logits = model(ids, logits_to_keep=1).logits[0, -1, choice_ids]
                entry[f or "exact"] = F.log_softmax(logits.double(), dim=-1).tolist()
        prompts.append(entry)
    out = {"model": "SmolLM2-135M-Instruct (GGUF converted by scripts/reference/gguf_to_hf.py)",
           "subject": SUBJECT, "shots": 1, "transformers": transformers.__version__,
           "torch": torch.__version__, "prompts": prompts}
    (HERE / "SmolLM2-135M-Instruct.map_formats.json").write_text(json.dumps(out, indent=1) + "\n")


if __name__ == "__main__":
    main()
