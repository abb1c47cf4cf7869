#!/usr/bin/env python3
"""Golden values for the encoder tests, from the reference implementations on the CPU:
Hugging Face `tokenizers` for token ids and sentence-transformers (PyTorch) for embeddings.

    python3 -m pip install -r scripts/reference/requirements.txt
    scripts/fetch-models.sh all-MiniLM-L6-v2
    python3 scripts/reference/make_goldens.py [--model all-MiniLM-L6-v2]

Writes into tests/data/:
  <model>.token_ids.txt        ids of every line of corpus.txt (no truncation, no padding)
  <model>.embeddings.f32       little-endian float32 [n × dim] embeddings of the parity lines
  <model>.embeddings.json      which corpus lines those are, dim, max_seq_length, versions
"""
import argparse
import hashlib
import json
import pathlib

import numpy as np
import sentence_transformers
import tokenizers
import torch

ROOT = pathlib.Path(__file__).resolve().parents[2]
DATA = ROOT / "tests" / "data"
PARITY_LINES = 300  # every 9th corpus line: all languages, short and long (some truncated)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--model", default="all-MiniLM-L6-v2")
    args = parser.parse_args()
    model_dir = ROOT / "models" / args.model
    lines = (DATA / "corpus.txt").read_text(encoding="utf-8").split("\n")[:-1]

    tok = tokenizers.Tokenizer.from_file(str(model_dir / "tokenizer.json"))
    tok.no_truncation()
    tok.no_padding()
    with open(DATA / f"{args.model}.token_ids.txt", "w") as out:
        for enc in tok.encode_batch(lines):
            out.write(" ".join(map(str, enc.ids)) + "\n")

    torch.manual_seed(0)
    torch.set_num_threads(2)
    model = sentence_transformers.SentenceTransformer(str(model_dir), device="cpu")
    indices = list(range(0, len(lines), 9))[:PARITY_LINES]
    texts = [lines[i] for i in indices]
    emb = model.encode(texts, batch_size=16, convert_to_numpy=True, show_progress_bar=False)
    emb = np.ascontiguousarray(emb, dtype="<f4")
    emb.tofile(DATA / f"{args.model}.embeddings.f32")
    weights = (model_dir / "model.safetensors").read_bytes()
    meta = {
        "model": args.model,
        "model_sha256": hashlib.sha256(weights).hexdigest(),
        "corpus_lines": indices,
        "dim": int(emb.shape[1]),
        "max_seq_length": int(model.max_seq_length),
        "reference": {
            "sentence_transformers": sentence_transformers.__version__,
            "torch": torch.__version__,
            "tokenizers": tokenizers.__version__,
        },
    }
    (DATA / f"{args.model}.embeddings.json").write_text(json.dumps(meta, indent=1) + "\n")
    print(f"wrote goldens for {len(lines)} token lines and {len(texts)} embeddings")


if __name__ == "__main__":
    main()
