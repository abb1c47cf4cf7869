#!/usr/bin/env python3
"""Converts a GGUF Llama to a Hugging Face directory with the reference implementation, so that
the engine's safetensors path can be checked against its GGUF path on the same weights.

    pip install -r scripts/reference/requirements.txt   # transformers, torch, gguf
    scripts/fetch-models.sh SmolLM2-135M-Instruct
    python3 scripts/reference/gguf_to_hf.py             # -> models/SmolLM2-135M-Instruct-hf/

transformers (AutoModelForCausalLM.from_pretrained(..., gguf_file=...)) dequantizes every tensor
to fp32 and undoes llama.cpp's row permutation of the Q and K weights; the tensors are copied into
a plain model of the same config (transformers will not save a model loaded from GGUF), whose
save_pretrained writes
config.json and fp32 safetensors, sharded (--max-shard-size, 200MB by default: three shards and
model.safetensors.index.json for SmolLM2-135M) so that the sharded layout is exercised. The
tokenizer is transformers' conversion of the GGUF's (tokenizer.json, tokenizer_config.json). That
conversion writes a plain ByteLevel pre-tokenizer: SmolLM's digit split (tokenizer.ggml.pre =
"smollm", a Digits pre-tokenizer in the upstream tokenizer.json) is lost, so its ids differ from
llama.cpp's on some texts with digits (13 of the 2,950 corpus lines);
tests/attncache/bpe_tokenizer_json_test.cc compares it with transformers' ids and with the GGUF
read with llama.cpp's "gpt-2" pre-tokenizer instead.

The directory is built under a temporary name beside the output and renamed when complete.
"""
import argparse
import copy
import pathlib
import shutil
import tempfile

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

ROOT = pathlib.Path(__file__).resolve().parents[2]


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--gguf", type=pathlib.Path, default=ROOT / "models" / "SmolLM2-135M-Instruct" /
                    "SmolLM2-135M-Instruct.Q4_1.gguf")
    ap.add_argument("--out", type=pathlib.Path,
                    default=ROOT / "models" / "SmolLM2-135M-Instruct-hf")
    ap.add_argument("--max-shard-size", default="200MB")
    args = ap.parse_args()
    if not args.gguf.exists():
        raise SystemExit(f"{args.gguf} is absent (scripts/fetch-models.sh SmolLM2-135M-Instruct)")
    if args.out.exists():
        raise SystemExit(f"{args.out} exists; remove it first")

    directory, name = args.gguf.parent, args.gguf.name
    tok = AutoTokenizer.from_pretrained(directory, gguf_file=name)
    loaded = AutoModelForCausalLM.from_pretrained(directory, gguf_file=name, dtype=torch.float32)
    # transformers refuses to save a model it loaded from GGUF ("quantized with gguf"); the same
    # fp32 tensors in a plain model of the same config save normally.
    config = copy.deepcopy(loaded.config)
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    model = type(loaded)(config).to(torch.float32)
    model.load_state_dict(loaded.state_dict(), strict=True)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    tmp = pathlib.Path(tempfile.mkdtemp(prefix=args.out.name + ".", dir=args.out.parent))
    try:
        model.save_pretrained(tmp, max_shard_size=args.max_shard_size)
        tok.save_pretrained(tmp)
        tmp.chmod(0o755)  # mkdtemp's 0700, and the writers' 0600, as a fetched model would be
        for f in tmp.iterdir():
            f.chmod(0o644)
        tmp.rename(args.out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    files = sorted(p.name for p in args.out.iterdir())
    print(f"{args.out}: {', '.join(files)}")


if __name__ == "__main__":
    main()
