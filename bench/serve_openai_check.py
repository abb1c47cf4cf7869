#!/usr/bin/env python3
"""Compatibility check with the official `openai` Python package: embeddings from a running
`attncache serve` (the client's default base64 transfer and encoding_format="float") must equal
`attncache embed`'s for the same texts, bit for bit (float32), when sent as one request (the same
batch as `embed` runs); the client's error type for a bad request is checked too.

    bench/.venv-openai/bin/python bench/serve_openai_check.py --base-url http://127.0.0.1:PORT/v1 \
        --model all-MiniLM-L6-v2 --texts texts.txt --expected embed.jsonl --json out.json

Run by bench/serve_load.py; prints one JSON object.
"""
import argparse
import json
import struct
import sys

import openai


def f32(x):
    return struct.unpack("f", struct.pack("f", x))[0]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--base-url", required=True)
    ap.add_argument("--model", required=True)
    ap.add_argument("--texts", required=True)
    ap.add_argument("--expected", required=True, help="attncache embed's JSONL for --texts")
    ap.add_argument("--api-key", default="unused")
    ap.add_argument("--json")
    a = ap.parse_args()
    texts = [l.rstrip("\n") for l in open(a.texts, encoding="utf-8")]
    expected = [[f32(v) for v in json.loads(l)["embedding"]] for l in open(a.expected)]
    client = openai.OpenAI(base_url=a.base_url, api_key=a.api_key, max_retries=0)
    report = {"openai_version": openai.__version__, "texts": len(texts), "checks": {}}
    for fmt in ("default (base64)", "float"):
        kwargs = {} if fmt.startswith("default") else {"encoding_format": "float"}
        r = client.embeddings.create(model=a.model, input=texts, **kwargs)
        got = [[f32(v) for v in d.embedding] for d in sorted(r.data, key=lambda d: d.index)]
        mismatched = sum(g != e for g, e in zip(got, expected)) + abs(len(got) - len(expected))
        max_abs = max(abs(x - y) for g, e in zip(got, expected) for x, y in zip(g, e))
        report["checks"][fmt] = {
            "vectors": len(got),
            "dim": len(got[0]),
            "vectors_not_bitwise_equal": mismatched,
            "max_abs_diff": max_abs,
            "prompt_tokens": r.usage.prompt_tokens,
            "model": r.model,
        }
    # One text alone: a batch of 1, so GEMM rounding may differ in the last bits from embed's.
    one = client.embeddings.create(model=a.model, input=texts[0]).data[0].embedding
    report["checks"]["single_text"] = {
        "max_abs_diff": max(abs(f32(x) - y) for x, y in zip(one, expected[0]))
    }
    try:
        client.embeddings.create(model="no-such-model", input="x")
        report["checks"]["unknown_model"] = "accepted (wrong)"
    except openai.NotFoundError as e:
        report["checks"]["unknown_model"] = f"NotFoundError {e.status_code}"
    try:
        client.embeddings.create(model=a.model, input="")
        report["checks"]["empty_input"] = "accepted (wrong)"
    except openai.BadRequestError as e:
        report["checks"]["empty_input"] = f"BadRequestError {e.status_code}: {e.message}"
    ok = all(report["checks"][f]["vectors_not_bitwise_equal"] == 0
             for f in ("default (base64)", "float"))
    ok = ok and report["checks"]["unknown_model"].startswith("NotFoundError")
    ok = ok and report["checks"]["empty_input"].startswith("BadRequestError")
    report["identical_to_attncache_embed"] = ok
    print(json.dumps(report, indent=2))
    if a.json:
        with open(a.json, "w") as f:
            json.dump(report, f, indent=2)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
