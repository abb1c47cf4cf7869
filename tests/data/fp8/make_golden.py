#!/usr/bin/env python3
"""Golden values for core::f32_to_e4m3 / e4m3_to_f32 from PyTorch's float8_e4m3fn.

Writes e4m3_golden.json beside this script: the fp32 value of each of the 256 codes, and the
codes PyTorch gives a fixed set of fp32 values (every code's value, midpoints between neighbours
(ties to even), random probabilities scaled by 256 as the FP8 map format stores them). Values
past the largest finite (448) are left out: PyTorch turns them into NaN, we saturate, as CUDA's
__NV_SATFINITE conversion does.

    python3 tests/data/fp8/make_golden.py
"""
import json
import math
import os

import torch

codes = torch.arange(256, dtype=torch.uint8)
decoded = codes.view(torch.float8_e4m3fn).float().tolist()
finite = sorted({v for v in decoded if math.isfinite(v) and v >= 0})
values = list(finite)
values += [(a + b) / 2 for a, b in zip(finite, finite[1:])]  # ties
g = torch.Generator().manual_seed(7)
values += (torch.rand(200, generator=g) ** 4 * 256).tolist()  # probabilities, mostly small
values += [-v for v in values[:40]]
values = [v for v in values if abs(v) <= 448]
x = torch.tensor(values, dtype=torch.float32)
encoded = x.to(torch.float8_e4m3fn).view(torch.uint8).tolist()
out = {
    "torch": torch.__version__,
    "decoded": [None if math.isnan(v) else v for v in decoded],
    "values": x.tolist(),
    "codes": encoded,
}
path = os.path.join(os.path.dirname(os.path.abspath(__file__)), "e4m3_golden.json")
with open(path, "w") as f:
    json.dump(out, f)
print(f"{path}: {len(values)} values")
