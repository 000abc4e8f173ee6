"""Timing helpers shared by the reference benchmarks: the median of
repeated runs after warm-up, printed as `RESULT <bench id> <seconds>` lines
that `cargo xtask bench-compare` reads (the ids are the criterion ids of
the Rust side)."""

import os
import statistics
import time

import torch


def threads():
    """Cores to use: $BENCH_THREADS, else every core of this process."""
    return int(os.environ.get("BENCH_THREADS", len(os.sched_getaffinity(0))))


def setup_torch():
    torch.set_num_threads(threads())
    torch.manual_seed(0)


def median_time(fn, warmup=3, repeats=20, min_seconds=3.0):
    """Median wall time of `fn()` over at least `repeats` calls and
    `min_seconds` seconds, after `warmup` calls."""
    for _ in range(warmup):
        fn()
    times = []
    started = time.perf_counter()
    while len(times) < repeats or time.perf_counter() - started < min_seconds:
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
        if len(times) >= 10 * repeats:
            break
    return statistics.median(times)


def wanted(bench_id):
    """Whether to run the case `bench_id`: every case, unless $BENCH_ONLY
    names one (`cargo xtask bench-compare` runs one case per process, so
    that each process's peak memory is that case's)."""
    only = os.environ.get("BENCH_ONLY")
    return only is None or only == bench_id


def report(bench_id, seconds):
    print(f"RESULT {bench_id} {seconds:.9f}", flush=True)
