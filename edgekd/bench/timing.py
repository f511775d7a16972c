"""Wall-clock timing with warm-up excluded and honest summary statistics."""

from __future__ import annotations

import time
from collections.abc import Callable

import numpy as np


def time_calls(
    fn: Callable[[], object], warmup: int = 5, iters: int = 30, sync: Callable[[], None] | None = None
) -> np.ndarray:
    """Seconds per call of `fn` over `iters` timed calls after `warmup` untimed ones.

    `sync` (e.g. torch.cuda.synchronize) runs before each clock read, so asynchronous work is counted.
    """
    for _ in range(warmup):
        fn()
    if sync:
        sync()
    times = np.empty(iters)
    for i in range(iters):
        start = time.perf_counter()
        fn()
        if sync:
            sync()
        times[i] = time.perf_counter() - start
    return times


def summarize_times(times: np.ndarray, batch: int = 1) -> dict[str, float]:
    """min/mean/p50/p90/p99/std in milliseconds, coefficient of variation and images per second."""
    ms = times * 1000.0
    mean = float(ms.mean())
    return {
        "min_ms": float(ms.min()),
        "mean_ms": mean,
        "p50_ms": float(np.percentile(ms, 50)),
        "p90_ms": float(np.percentile(ms, 90)),
        "p99_ms": float(np.percentile(ms, 99)),
        "std_ms": float(ms.std(ddof=1)) if len(ms) > 1 else 0.0,
        "cv": float(ms.std(ddof=1) / mean) if len(ms) > 1 and mean > 0 else 0.0,
        "throughput_ips": float(batch * 1000.0 / np.percentile(ms, 50)),
        "iters": int(len(ms)),
    }
