#!/usr/bin/env python3
"""Static instruction counts of the attention kernels' key-block loops, before and after a change,
from the SASS of two object files (no GPU needed): the largest backward branch of each kernel is
taken as its key-block loop. A proxy for issue pressure, not a timing.

    pip install nvidia-cuda-cuobjdump nvidia-cuda-nvdisasm   # the toolkit here lacks both
    nvcc ... -c src/attncache/kernels/cuda/attention.cu -o new.o   (flags: build/CMakeFiles/...)
    scripts/cuda/sass_loop_stats.py old.o new.o "reuse_pv<128" "flash_forward<128"
"""
import collections
import os
import pathlib
import re
import subprocess
import sys


def cuobjdump():
    import nvidia  # the pip package's namespace
    for root in nvidia.__path__:
        for path in pathlib.Path(root).glob("*/bin/cuobjdump"):
            return str(path)
    return "cuobjdump"


def kernels(obj):
    tool = cuobjdump()
    # cuobjdump runs nvdisasm, which the pip packages put beside it, off PATH.
    env = dict(os.environ, PATH=os.path.dirname(tool) + os.pathsep + os.environ.get("PATH", ""))
    sass = subprocess.run([tool, "-sass", obj], check=True, capture_output=True, text=True,
                          env=env).stdout
    out = {}
    for block in re.split(r"\n\s*Function : ", sass)[1:]:
        mangled = block.split("\n", 1)[0].strip()
        name = subprocess.run(["c++filt", mangled], capture_output=True, text=True).stdout.strip()
        name = re.sub(r"attncache::cuda::\(anonymous namespace\)::|\(attncache::cuda::AttentionArgs"
                      r"(, float)?\)|attncache::cuda::", "", name)
        out[name] = block
    return out


def loop(block):
    ins = []
    for line in block.split("\n"):
        m = re.search(r"/\*([0-9a-f]{4,})\*/\s+(@!?U?P\w+\s+)?([A-Z0-9_]+)[^;]*;", line)
        if m:
            ins.append((int(m.group(1), 16), m.group(3), line))
    span = None
    for addr, op, line in ins:
        t = re.search(r"BRA\s+0x([0-9a-f]+)", line) if op == "BRA" else None
        if t and int(t.group(1), 16) < addr:
            if span is None or addr - int(t.group(1), 16) > span[1] - span[0]:
                span = (int(t.group(1), 16), addr)
    return collections.Counter(op for addr, op, _ in ins if span and span[0] <= addr <= span[1])


def main():
    if len(sys.argv) < 4:
        sys.exit(__doc__)
    old, new = kernels(sys.argv[1]), kernels(sys.argv[2])
    for prefix in sys.argv[3:]:
        for name in sorted(n for n in old if prefix in n):
            a, b = loop(old[name]), loop(new.get(name, ""))
            print(f"{name:50s} loop {sum(a.values()):5d} -> {sum(b.values()):5d} instructions, "
                  f"HMMA {a['HMMA']} -> {b['HMMA']}, IMAD {a['IMAD']} -> {b['IMAD']}")


if __name__ == "__main__":
    main()
