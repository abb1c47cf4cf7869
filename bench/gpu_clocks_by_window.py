#!/usr/bin/env python3
"""The GPU's SM clock and power while each configuration of a gpu_decoder_bench run was timed:
the exact path back to back, the P8 hit back to back, and the two alternating. From the bench's
JSON (each timing's start_unix_s / end_unix_s) and the nvidia-smi log that device_run.sh keeps
beside it during the decoder stages (gpu_clocks_SIZE.csv). Whether a hit's speed-up depends on
the clocks its neighbours leave is what it is for.

    bench/gpu_clocks_by_window.py gpu_decoder_bench_3B.json gpu_clocks_3B.csv
"""
import argparse
import calendar
import csv
import json
import sys
from datetime import datetime, timedelta


def read_samples(path):
    """(unix seconds, SM MHz, watts) per sample. The log's first line is '# utc_offset +HHMM'
    (nvidia-smi writes local time); the rest is nvidia-smi --query-gpu=timestamp,clocks.sm,
    power.draw --format=csv,noheader,nounits."""
    with open(path) as f:
        first = f.readline().split()
        zone = first[2] if len(first) == 3 and first[:2] == ["#", "utc_offset"] else ""
        if len(zone) != 5 or zone[0] not in "+-" or not zone[1:].isdigit():
            sys.exit(f"{path}: the first line must be '# utc_offset +HHMM'")
        sign = -1 if zone[0] == "-" else 1
        offset = timedelta(hours=int(zone[1:3]), minutes=int(zone[3:5])) * sign
        samples = []
        for row in csv.reader(f):
            try:
                local = datetime.strptime(row[0].strip(), "%Y/%m/%d %H:%M:%S.%f")
                t = calendar.timegm((local - offset).timetuple()) + local.microsecond / 1e6
                samples.append((t, float(row[1]), float(row[2])))
            except (ValueError, IndexError):
                continue  # a torn last line, or "[N/A]"
    return samples


def window_means(samples, timing):
    inside = [(mhz, w) for t, mhz, w in samples
              if timing["start_unix_s"] <= t <= timing["end_unix_s"]]
    if not inside:
        return None
    return (sum(m for m, _ in inside) / len(inside), sum(w for _, w in inside) / len(inside),
            len(inside))


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("bench_json")
    parser.add_argument("clocks_csv")
    args = parser.parse_args()
    results = json.load(open(args.bench_json))["results"]
    samples = read_samples(args.clocks_csv)
    if not samples:
        sys.exit(f"{args.clocks_csv}: no samples")
    windows = [("exact, back to back", lambda r: r.get("exact_graph")),
               ("P8 hit, back to back", lambda r: r.get("reuse_device_p8")),
               ("exact and P8 hit alternating",
                lambda r: (r.get("reuse_device_p8_alternating") or {}).get("exact"))]
    print("SM clock (MHz) and board power (W), mean of the samples inside each timed window "
          "(samples in parentheses):\n")
    print("| batch × tokens | " + " | ".join(name for name, _ in windows) + " |")
    print("|---" * (1 + len(windows)) + "|")
    for r in results:
        cells = []
        for _, pick in windows:
            timing = pick(r)
            means = window_means(samples, timing) if timing and "start_unix_s" in timing else None
            cells.append(f"{means[0]:.0f} MHz, {means[1]:.0f} W ({means[2]})" if means else "")
        print(f"| {r['batch']} × {r['tokens']} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
