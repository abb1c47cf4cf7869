"""Timing helpers the PyTorch GPU baselines share (gpu_torch_bench.py, gpu_decoder_torch.py):
host wall-clock per call, CUDA-event time per kernel launch, and a function captured as one
CUDA graph. The GPU bundle (scripts/cuda/bundle.sh) carries this file beside them."""
import statistics
import time

import torch


def time_calls(call, min_seconds, min_calls=20, warmups=3):
    """Median (and min) ms of at least `min_calls` calls and `min_seconds`, after `warmups`."""
    for _ in range(warmups):
        call()
    ms, start = [], time.perf_counter()
    while len(ms) < min_calls or time.perf_counter() - start < min_seconds:
        t = time.perf_counter()
        call()
        ms.append((time.perf_counter() - t) * 1e3)
    return {"median_ms": statistics.median(ms), "min_ms": min(ms), "calls": len(ms)}


def time_kernel(fn, reps=30, inner=20):
    """Median ms per launch over `reps` samples of `inner` back-to-back launches (CUDA events)."""
    for _ in range(3):
        fn()
    start, stop = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    ms = []
    for _ in range(reps):
        start.record()
        for _ in range(inner):
            fn()
        stop.record()
        stop.synchronize()
        ms.append(start.elapsed_time(stop) / inner)
    return statistics.median(ms)


def graphed(fn, ids_host, warmups=3):
    """fn captured as one CUDA graph; the returned call copies new ids in, replays, copies out."""
    static_ids = ids_host.cuda()
    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):
        for _ in range(warmups):
            fn(static_ids)
    torch.cuda.current_stream().wait_stream(side)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        static_out = fn(static_ids)

    def replay():
        static_ids.copy_(ids_host, non_blocking=True)
        graph.replay()
        return static_out.cpu()
    return replay, graph
