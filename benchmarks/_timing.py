"""Shared timing helper of the benchmark scripts (imported as ``_timing``: scripts run from benchmarks/ on sys.path)."""
from __future__ import annotations

import statistics
import time
from collections.abc import Callable


def median_seconds(fn: Callable[[], object], sync: Callable[[], None], min_calls: int = 3, min_time: float = 2.0,
                   warmup: int = 2) -> float:
    """Median wall time of ``fn()`` over at least ``min_calls`` calls and ``min_time`` seconds, after ``warmup``
    calls (caches, textures, kernels, cuDNN autotuning); ``sync`` (e.g. ``torch.cuda.synchronize``) closes each."""
    for _ in range(warmup):
        fn()
    sync()
    times: list[float] = []
    while len(times) < min_calls or sum(times) < min_time:
        t0 = time.perf_counter()
        fn()
        sync()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)
