"""Host memory of this process: current and peak resident set size (RSS), standard library only.

Linux keeps the peak RSS as VmHWM in /proc/self/status and lets a process reset it to the current RSS by writing
"5" to /proc/self/clear_refs (proc(5)), so each benchmarked artifact gets its own peak. Elsewhere the fallback is
`resource.getrusage`'s ru_maxrss: the peak over the whole process lifetime, which the record says.
"""

from __future__ import annotations

import resource
import sys
from pathlib import Path

_STATUS = Path("/proc/self/status")
_CLEAR_REFS = Path("/proc/self/clear_refs")


def _status_mib(field: str) -> float | None:
    """A kB field of /proc/self/status in MiB, or None where the file or field is absent."""
    try:
        text = _STATUS.read_text()
    except OSError:
        return None
    for line in text.splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1]) / 1024.0
    return None


def current_rss_mib() -> float | None:
    return _status_mib("VmRSS")


def _maxrss_mib() -> float:
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / (1024.0 * 1024.0) if sys.platform == "darwin" else peak / 1024.0  # bytes on macOS, KiB on Linux


class PeakRss:
    """Peak RSS from `start()` on: VmHWM after a reset where Linux allows it, else the lifetime ru_maxrss."""

    def __init__(self) -> None:
        self.method = "ru_maxrss (process lifetime peak)"
        self.baseline_mib: float | None = None

    def start(self) -> None:
        self.baseline_mib = current_rss_mib()
        try:
            _CLEAR_REFS.write_text("5")
        except OSError:
            return
        if _status_mib("VmHWM") is not None:
            self.method = "VmHWM (/proc/self/status), reset when the measurement started"

    def peak_mib(self) -> float:
        if self.method.startswith("VmHWM"):
            peak = _status_mib("VmHWM")
            if peak is not None:
                return peak
        return _maxrss_mib()

    def to_dict(self) -> dict:
        return {"peak_rss_mib": self.peak_mib(), "baseline_rss_mib": self.baseline_mib, "rss_method": self.method}
