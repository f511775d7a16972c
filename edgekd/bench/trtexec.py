"""Cross-check of `edgekd bench`'s TensorRT compute timer against NVIDIA's own, `trtexec`, on the same engine.

`edgekd bench ENGINE --backend trt` runs, where trtexec exists (on PATH, or where JetPack installs it), the
equivalent `trtexec --loadEngine` timing run after its own measurement of each batch, parses trtexec's
"GPU Compute Time" summary and records both with their relative disagreement in the bench record (JSON key
`trtexec`); more than 10% is a record warning, the tolerance `benchmarks/timer_check.py` holds ONNX Runtime's
timer to. Where trtexec is absent the record says so; a trtexec that fails is recorded with its last output line.

trtexec's summary line (TensorRT 8.x and 10.x, `samples/common/sampleReporting.cpp` in NVIDIA/TensorRT):
    GPU Compute Time: min = 2.05 ms, max = 2.59 ms, mean = 2.09 ms, median = 2.08 ms, percentile(90%) = 2.3 ms, ...
with one `percentile(P%) = V ms` per `--percentile` value (TensorRT >= 8.6 takes a list; earlier releases take a
single value and print one percentile, so p90/p99 may be missing: they are then recorded as null).
"""

from __future__ import annotations

import math
import re
import shlex
import shutil
import subprocess
from dataclasses import asdict, dataclass, fields
from pathlib import Path

from edgekd.runtime.metadata import ExportMetadata

JETPACK_TRTEXEC = Path("/usr/src/tensorrt/bin/trtexec")
"""Where JetPack (and NVIDIA's TensorRT containers) put trtexec, which is not on PATH there."""
TOLERANCE = 0.10
PERCENTILES = (50, 90, 99)
TIMEOUT_FLOOR_S = 120.0
"""Seconds allowed for trtexec to load the engine and start, on top of ten times the expected timed run."""

_NUMBER = r"[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?"
_SUMMARY = re.compile(
    rf"GPU Compute Time: min = (?P<min>{_NUMBER}) ms, max = (?P<max>{_NUMBER}) ms, mean = (?P<mean>{_NUMBER}) ms, "
    rf"median = (?P<median>{_NUMBER}) ms(?P<percentiles>[^\n]*)"
)
_PERCENTILE = re.compile(rf"percentile\((?P<p>{_NUMBER})%\) = (?P<value>{_NUMBER}) ms")
_VERSION = re.compile(r"\[(TensorRT v\d+)\]")


def find_trtexec() -> Path | None:
    """trtexec on PATH, else JetPack's copy, else None."""
    found = shutil.which("trtexec")
    if found is not None:
        return Path(found)
    return JETPACK_TRTEXEC if JETPACK_TRTEXEC.is_file() else None


def timing_command(
    executable: Path, engine: Path, meta: ExportMetadata, batch: int, warmup_ms: int, iterations: int
) -> list[str]:
    """The trtexec run that times what `edgekd bench` times in its compute phase (`edgekd.bench.latency`).

    - `--loadEngine`: the benched engine file itself, no rebuild;
    - `--shapes` (dynamic-batch engines only): the benched batch; a static engine has its one shape;
    - `--noDataTransfers`: no host<->device copies around each inference, as our compute phase has its input
      already in device memory and leaves the outputs there;
    - `--useSpinWait`: trtexec waits for its events by spinning instead of a blocking (sleeping) wait, as our
      `cudaEventSynchronize` on events created with default flags does;
    - `--warmUp` (trtexec counts milliseconds, we count calls): our warm-up calls times our median call;
    - `--iterations=N --duration=0`: exactly our number of timed calls (trtexec otherwise runs at least 3 s);
    - `--percentile=50,90,99`: the statistics we report.
    Left at their defaults: one stream and one thread (as ours), no CUDA graph (we launch without one),
    `--avgRuns` (it only groups the per-iteration trace lines; the summary covers every timed iteration).
    trtexec's "GPU Compute Time" is, like our CUDA-event clock, the device time between events recorded on the
    stream before and after each enqueue; it queues the next inference before the previous one ends, so host
    launch gaps that our one-call-at-a-time loop counts are hidden in its numbers.
    """
    command = [
        str(executable),
        f"--loadEngine={engine}",
        f"--warmUp={warmup_ms}",
        f"--iterations={iterations}",
        "--duration=0",
        f"--percentile={','.join(str(p) for p in PERCENTILES)}",
        "--noDataTransfers",
        "--useSpinWait",
    ]
    if meta.batch.dynamic:
        height, width = meta.input_size
        command.append(f"--shapes={meta.input_name}:{batch}x3x{height}x{width}")
    return command


@dataclass(frozen=True)
class TrtexecTimes:
    """trtexec's GPU Compute Time statistics, ms (a percentile trtexec did not print is None)."""

    min_ms: float
    mean_ms: float
    median_ms: float
    max_ms: float
    p90_ms: float | None
    p99_ms: float | None


def parse_gpu_compute(text: str) -> TrtexecTimes | None:
    """The GPU Compute Time summary of a trtexec log (the last one, should several runs be in it), or None."""
    matches = list(_SUMMARY.finditer(text))
    if not matches:
        return None
    found = matches[-1]
    percentiles = {float(m["p"]): float(m["value"]) for m in _PERCENTILE.finditer(found["percentiles"])}
    return TrtexecTimes(
        min_ms=float(found["min"]),
        mean_ms=float(found["mean"]),
        median_ms=float(found["median"]),
        max_ms=float(found["max"]),
        p90_ms=percentiles.get(90.0),
        p99_ms=percentiles.get(99.0),
    )


@dataclass
class TrtexecCheck:
    """trtexec's timing of a benched engine beside ours. `status`: "compared", "absent" (no trtexec here) or
    "failed" (`note` says why); `disagreement` = our compute p50 / trtexec's median GPU Compute Time - 1."""

    status: str
    note: str | None = None
    command: str | None = None
    version: str | None = None
    gpu_compute: TrtexecTimes | None = None
    ours_p50_ms: float | None = None
    disagreement: float | None = None
    tolerance: float = TOLERANCE

    @property
    def agrees(self) -> bool | None:
        return None if self.disagreement is None else abs(self.disagreement) <= self.tolerance

    def warnings(self) -> list[str]:
        """A record warning when the timers disagree beyond the tolerance, or when trtexec failed."""
        if self.status == "failed":
            return [f"trtexec cross-check failed: {self.note}"]
        if self.agrees is False:
            return [
                f"compute p50 {self.ours_p50_ms:.3f} ms differs from trtexec's median GPU Compute Time "
                f"{self.gpu_compute.median_ms:.3f} ms by {self.disagreement:+.1%} (tolerance {self.tolerance:.0%})"
            ]
        return []

    def to_dict(self) -> dict:
        data = asdict(self)
        data["gpu_compute_ms"] = data.pop("gpu_compute")
        return data

    @classmethod
    def from_dict(cls, data: dict) -> TrtexecCheck:
        """A `trtexec` record entry already checked by `edgekd.bench.schema`."""
        values = {field.name: data[field.name] for field in fields(cls) if field.name in data}
        times = data.get("gpu_compute_ms")
        if times is not None:
            values["gpu_compute"] = TrtexecTimes(**{field.name: times[field.name] for field in fields(TrtexecTimes)})
        return cls(**values)


def _last_line(text: str) -> str:
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return lines[-1] if lines else "no output"


def cross_check(
    engine: Path, meta: ExportMetadata, batch: int, compute: dict, warmup_calls: int, executable: Path | None = None
) -> TrtexecCheck:
    """Time `engine` at `batch` with trtexec as our compute phase was timed (`compute`: its statistics, a
    `summarize_measurement` dict; `warmup_calls`: our warm-up) and compare the medians. `executable`: trtexec
    (default: `find_trtexec`)."""
    executable = executable or find_trtexec()
    if executable is None:
        return TrtexecCheck("absent", note=f"trtexec not found on PATH or at {JETPACK_TRTEXEC}")
    ours = float(compute["p50_ms"])
    iterations = int(compute["iters"])
    warmup_ms = math.ceil(warmup_calls * ours)
    command = timing_command(executable, engine, meta, batch, warmup_ms, iterations)
    shown = " ".join(shlex.quote(part) for part in command)
    timeout = TIMEOUT_FLOOR_S + 10 * (warmup_ms + iterations * ours) / 1000
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=timeout, check=False)
    except subprocess.TimeoutExpired:
        return TrtexecCheck("failed", note=f"no result within {timeout:.0f} s", command=shown)
    except OSError as error:
        return TrtexecCheck("failed", note=f"cannot run {executable}: {error}", command=shown)
    output = done.stdout + done.stderr
    version = match[1] if (match := _VERSION.search(output)) else None
    times = parse_gpu_compute(done.stdout)
    if done.returncode != 0 or times is None:
        why = f"exit status {done.returncode}" if done.returncode != 0 else "no GPU Compute Time summary"
        return TrtexecCheck("failed", note=f"{why}: {_last_line(output)}", command=shown, version=version)
    disagreement = ours / times.median_ms - 1 if times.median_ms > 0 else None
    return TrtexecCheck("compared", None, shown, version, times, ours, disagreement)
