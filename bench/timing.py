"""Interleaved timing rounds shared by the benchmarks (bench_bm25.py, bench_hnsw.py)."""

from __future__ import annotations

import time
from collections.abc import Callable

import numpy as np


def interleaved_rounds(
    variants: dict[str, Callable[[], object]], rounds: int, *, shuffle: bool = False, settle: float = 0.0
) -> tuple[dict[str, list[tuple[float, float]]], dict[str, object]]:
    """(wall, process CPU) seconds of each variant in each of `rounds` rounds, and each variant's result
    (last round).

    Every round runs each variant once, so a load burst from other processes on a shared machine lands on
    every variant alike; ratios are then taken within a round and their median over rounds reported. The
    order within a round alternates (forward, reversed, ...), or with `shuffle` is a fresh seeded random
    permutation, so no variant always runs right after another. Before each timed call the process sleeps
    `settle` seconds, untimed, so that helper threads left spinning by the previous call (faiss's OpenMP
    workers) are idle again and slow none of the others."""
    names = list(variants)
    order_rng = np.random.default_rng(0)
    times: dict[str, list[tuple[float, float]]] = {name: [] for name in names}
    results: dict[str, object] = {}
    for r in range(rounds):
        if shuffle:
            order = [names[int(i)] for i in order_rng.permutation(len(names))]
        else:
            order = names if r % 2 == 0 else names[::-1]
        for name in order:
            if settle:
                time.sleep(settle)
            w0, c0 = time.perf_counter(), time.process_time()
            results[name] = variants[name]()
            times[name].append((time.perf_counter() - w0, time.process_time() - c0))
    return times, results
