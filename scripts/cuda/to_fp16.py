#!/usr/bin/env python3
"""Copies a Hugging Face model directory with its fp32 safetensors weights rounded to fp16.

The GPU machine can reach nothing outside itself and takes at most 64 MiB per call, so the
all-MiniLM-L6-v2 weights (90 MB in fp32) travel as fp16 (45 MB). The engines read fp16 weights
as they read fp32 ones (the CPU engine converts them to fp32 once, the GPU engine to bf16), so
both run the same rounded model there.

    scripts/cuda/to_fp16.py models/all-MiniLM-L6-v2 OUT_DIR

Needs only numpy. Non-fp32 tensors are copied unchanged; every other file of the directory
(config, tokenizer, sentence-transformers files) is copied as is.
"""
import json
import shutil
import struct
import sys
from pathlib import Path

import numpy as np


def convert(src: Path, dst: Path) -> None:
    raw = src.read_bytes()
    (header_len,) = struct.unpack("<Q", raw[:8])
    header = json.loads(raw[8 : 8 + header_len])
    data = raw[8 + header_len :]
    out_header, chunks, offset = {}, [], 0
    for name, info in header.items():
        if name == "__metadata__":
            out_header[name] = info
            continue
        begin, end = info["data_offsets"]
        blob = data[begin:end]
        dtype = info["dtype"]
        if dtype == "F32":
            blob = np.frombuffer(blob, dtype="<f4").astype("<f2").tobytes()
            dtype = "F16"
        out_header[name] = {"dtype": dtype, "shape": info["shape"],
                            "data_offsets": [offset, offset + len(blob)]}
        chunks.append(blob)
        offset += len(blob)
    text = json.dumps(out_header, separators=(",", ":")).encode()
    text += b" " * (-len(text) % 8)  # keep the data section 8-byte aligned
    with open(dst, "wb") as f:
        f.write(struct.pack("<Q", len(text)))
        f.write(text)
        for blob in chunks:
            f.write(blob)


def main() -> None:
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    src, dst = Path(sys.argv[1]), Path(sys.argv[2])
    if not (src / "model.safetensors").is_file():
        sys.exit(f"{src}: no model.safetensors")
    if dst.exists():
        shutil.rmtree(dst)
    shutil.copytree(src, dst, ignore=shutil.ignore_patterns("model.safetensors", "*.bin",
                                                            "*.onnx", "onnx", "openvino"))
    convert(src / "model.safetensors", dst / "model.safetensors")


if __name__ == "__main__":
    main()
