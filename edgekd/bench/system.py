"""What machine a benchmark ran on: CPU, library versions, and the GPU's clocks where nvidia-smi can tell.

Versions are read from package metadata, which imports nothing (torch is never imported here).
"""

from __future__ import annotations

import os
import platform
import shutil
import subprocess
from collections.abc import Sequence
from importlib import metadata as importlib_metadata
from pathlib import Path

_PACKAGES = ("edgekd", "numpy", "onnx", "onnxruntime", "onnxruntime-gpu", "tensorrt", "torch", "cuda-python")
_GPU_FIELDS = ("name", "driver_version", "clocks.sm", "clocks.max.sm", "clocks.mem", "temperature.gpu", "pstate")
CLOCK_WARN_FRACTION = 0.9
"""An SM clock below this fraction of its maximum right after timing means throttling or power saving."""


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def versions() -> dict[str, str]:
    found = {"python": platform.python_version()}
    for package in _PACKAGES:
        try:
            found[package] = importlib_metadata.version(package)
        except importlib_metadata.PackageNotFoundError:
            continue
    return found


def host_info() -> dict:
    """The machine of a benchmark run; `conditions` says how its CPU was set (governors, RAPL readability:
    `edgekd.bench.energy.measurement_conditions`)."""
    from edgekd.bench.energy import measurement_conditions

    return {
        "platform": platform.platform(),
        "cpu": cpu_model(),
        "cpu_count": os.cpu_count(),
        "versions": versions(),
        "gpu": gpu_state(),
        "conditions": measurement_conditions(),
    }


def gpu_state() -> dict | None:
    """GPU 0's name, driver, clocks (MHz), temperature and performance state from nvidia-smi, or None where
    nvidia-smi is absent (CPU machines; Jetson reports through tegrastats instead)."""
    if shutil.which("nvidia-smi") is None:
        return None
    try:
        result = subprocess.run(
            ["nvidia-smi", f"--query-gpu={','.join(_GPU_FIELDS)}", "--format=csv,noheader,nounits", "-i", "0"],
            capture_output=True,
            text=True,
            timeout=10,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    if result.returncode != 0 or not result.stdout.strip():
        return None
    values = [v.strip() for v in result.stdout.strip().splitlines()[0].split(",")]
    return dict(zip(_GPU_FIELDS, values))


def clock_warning(state: dict | None, throttling: Sequence[str] = ()) -> str | None:
    """A warning when the SM clock read right after timing is well below its maximum, or when NVML reports clock
    event reasons that hold the clocks down (`throttling`: power cap, thermal or hardware slowdown, see
    `edgekd.bench.energy.THROTTLING_REASONS`), else None."""
    problems = []
    try:
        current, maximum = float(state["clocks.sm"]), float(state["clocks.max.sm"])
    except (KeyError, TypeError, ValueError):
        current = maximum = 0.0
    if maximum > 0 and current < CLOCK_WARN_FRACTION * maximum:
        problems.append(
            f"GPU SM clock {current:.0f} MHz right after timing, max {maximum:.0f} MHz (pstate {state.get('pstate')})"
        )
    if throttling:
        problems.append(f"GPU clocks held down right after timing (NVML: {', '.join(throttling)})")
    if not problems:
        return None
    return (
        "; ".join(problems) + ": throttling or power saving; lock clocks (`nvidia-smi -lgc`, `sudo jetson_clocks` on "
        "Jetson) and keep the GPU cool for stable numbers"
    )
