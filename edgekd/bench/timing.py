"""Timing loops and honest summary statistics.

A *clock* (`edgekd.runtime.clock`) times one call of a function and returns seconds; each runner brings its own.
`measure` runs the first call apart (lazy initialisation, engine builds and autotuning land there), then the
warm-up, then the timed calls; only the timed calls enter the statistics. A `Window` (an energy meter,
`edgekd.bench.energy.EnergyWindow`) is started right before the timed calls and stopped right after them.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from edgekd.runtime.clock import Clock, PerfCounterClock

CV_WARN = 0.05
"""A timed run whose coefficient of variation (std / mean) is above this is flagged as unstable."""

MIN_ITERS = 10
"""A `--seconds` budget still times at least this many calls, so percentiles mean something."""


class Window(Protocol):
    """Something to run around exactly the timed calls (not the first call, not the warm-up)."""

    def start(self) -> None: ...

    def stop(self) -> None: ...


@dataclass
class Measurement:
    """Seconds of the timed calls, of the first call (reported apart) and how many warm-up calls ran."""

    times: np.ndarray
    first_call: float
    warmup: int


def measure(
    fn: Callable[[], object],
    clock: Clock,
    warmup: int = 10,
    iters: int | None = 100,
    seconds: float | None = None,
    min_iters: int = MIN_ITERS,
    window: Window | None = None,
) -> Measurement:
    """Time `fn` with `clock`: one first call, `warmup` untimed calls, then `iters` timed calls, or as many as
    fit in `seconds` of wall time (at least `min_iters`), inside `window` where given. Exactly one of `iters` and
    `seconds` must be given."""
    if (iters is None) == (seconds is None):
        raise ValueError("give exactly one of iters and seconds")
    first = clock(fn)
    for _ in range(warmup):
        clock(fn)
    times: list[float] = []
    if window is not None:
        window.start()
    if iters is not None:
        times = [clock(fn) for _ in range(iters)]
    else:
        deadline = time.perf_counter() + seconds
        while len(times) < min_iters or time.perf_counter() < deadline:
            times.append(clock(fn))
    if window is not None:
        window.stop()
    return Measurement(np.asarray(times, dtype=np.float64), first, warmup)


def time_calls(
    fn: Callable[[], object], warmup: int = 5, iters: int = 30, sync: Callable[[], None] | None = None
) -> np.ndarray:
    """Seconds per call of `fn` over `iters` timed calls after `warmup` untimed ones.

    `sync` (e.g. torch.cuda.synchronize) runs around each timed call, so asynchronous work is counted.
    """
    for _ in range(warmup):
        fn()
    return measure(fn, PerfCounterClock(sync), warmup=0, iters=iters).times


def summarize_times(times: np.ndarray, batch: int = 1) -> dict[str, float]:
    """min/mean/p50/p90/p99/max/std in milliseconds, coefficient of variation (sample std / mean) and
    throughput in images per second at the median (batch / p50)."""
    ms = np.asarray(times, dtype=np.float64) * 1000.0
    if ms.size == 0:
        raise ValueError("no timings to summarise")
    mean = float(ms.mean())
    p50 = float(np.percentile(ms, 50))
    std = float(ms.std(ddof=1)) if ms.size > 1 else 0.0
    return {
        "min_ms": float(ms.min()),
        "mean_ms": mean,
        "p50_ms": p50,
        "p90_ms": float(np.percentile(ms, 90)),
        "p99_ms": float(np.percentile(ms, 99)),
        "max_ms": float(ms.max()),
        "std_ms": std,
        "cv": std / mean if mean > 0 else 0.0,
        "throughput_ips": batch * 1000.0 / p50 if p50 > 0 else 0.0,
        "iters": int(ms.size),
    }


def summarize_measurement(measurement: Measurement, batch: int) -> dict:
    """`summarize_times` plus the first call and the warm-up count."""
    return {
        **summarize_times(measurement.times, batch),
        "first_call_ms": measurement.first_call * 1000.0,
        "warmup": measurement.warmup,
    }


def stability_warning(phase: str, summary: dict, limit: float = CV_WARN) -> str | None:
    """A warning when the run's coefficient of variation is above `limit` (the stable-run guard), else None."""
    if summary["cv"] <= limit:
        return None
    return (
        f"{phase}: unstable timing, coefficient of variation {summary['cv']:.1%} > {limit:.0%} "
        f"(p50 {summary['p50_ms']:.3f} ms, p99 {summary['p99_ms']:.3f} ms); close other programs, fix CPU/GPU clocks "
        "or time longer (--seconds)"
    )
