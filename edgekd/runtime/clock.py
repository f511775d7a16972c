"""Clocks: each times one call of a function and returns seconds. `PerfCounterClock` is the host wall clock
(optionally synchronising a device before and after); the CUDA-event clocks live beside the device they time
(`edgekd.runtime.cuda.CudaEventClock`, `edgekd.runtime.torch_runner.TorchEventClock`)."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol


class Clock(Protocol):
    """Times one call of `fn`; returns seconds."""

    name: str

    def __call__(self, fn: Callable[[], object]) -> float: ...


@dataclass
class PerfCounterClock:
    """`time.perf_counter` around the call; `sync` (e.g. a stream synchronise) runs before the start and before
    the stop, so asynchronous device work is inside the interval and earlier work is not."""

    sync: Callable[[], None] | None = None
    name: str = "perf_counter"

    def __call__(self, fn: Callable[[], object]) -> float:
        if self.sync is not None:
            self.sync()
        start = time.perf_counter()
        fn()
        if self.sync is not None:
            self.sync()
        return time.perf_counter() - start
