"""The bench JSON layout (`edgekd bench --json`), and its validation when a report reads one back.

    {"format": "edgekd-bench-v1", "created": ISO time, "command": str, "host": {...}, "settings": {...},
     "records": [record, ...]}

One record per (artifact, backend, batch): artifact (as given) and artifact_path (absolute), backend, device,
timer, batch, the model's kind/model/precision/nms/run/params/gflops..., file_size_mib, phases (compute,
end_to_end with its stages, and on GPU host_to_device / device_to_host: each a `summarize_times` dict plus
first_call_ms and warmup), memory, warnings, accuracy (eval JSON layout, or null). A batch the artifact cannot
run is a record with `skipped` (the reason) instead of phases.
"""

from __future__ import annotations

from edgekd.errors import EdgeKDError

BENCH_FORMAT = "edgekd-bench-v1"
STAT_KEYS: tuple[str, ...] = (
    "min_ms",
    "mean_ms",
    "p50_ms",
    "p90_ms",
    "p99_ms",
    "max_ms",
    "std_ms",
    "cv",
    "throughput_ips",
    "iters",
)
RECORD_KEYS: tuple[str, ...] = ("artifact", "artifact_path", "backend", "batch")
TIMED_RECORD_KEYS: tuple[str, ...] = ("device", "timer", "precision", "run", "phases", "memory", "warnings")


def _require(mapping: dict, keys: tuple[str, ...], where: str) -> None:
    for key in keys:
        if key not in mapping:
            raise EdgeKDError(f"{where}: field '{key}' missing")


def validate_bench_payload(data: object, origin: str) -> None:
    """Raise EdgeKDError naming the file and the first missing or malformed field."""
    if not isinstance(data, dict) or data.get("format") != BENCH_FORMAT:
        raise EdgeKDError(f"{origin}: not an edgekd bench JSON (field 'format' must be '{BENCH_FORMAT}')")
    _require(data, ("created", "host", "settings", "records"), origin)
    if not isinstance(data["records"], list):
        raise EdgeKDError(f"{origin}: field 'records' must be a list")
    for index, record in enumerate(data["records"]):
        where = f"{origin}: records[{index}]"
        if not isinstance(record, dict):
            raise EdgeKDError(f"{where}: must be an object")
        _require(record, RECORD_KEYS, where)
        if "skipped" in record:
            continue
        _require(record, TIMED_RECORD_KEYS, where)
        phases = record["phases"]
        if not isinstance(phases, dict) or "compute" not in phases:
            raise EdgeKDError(f"{where}: field 'phases' must hold at least 'compute'")
        for phase, stats in phases.items():
            _require(stats, STAT_KEYS, f"{where}: phases.{phase}")
