"""The bench JSON layout (`edgekd bench --json`), and its validation when a report reads one back.

    {"format": "edgekd-bench-v1", "created": ISO time, "command": str, "host": {...}, "settings": {...},
     "records": [record, ...]}

One record per (artifact, backend, batch): artifact (as given) and artifact_path (absolute), backend, device,
timer, batch, the model's kind/model/precision/nms/run/params/gflops..., file_size_mib, phases (compute,
end_to_end with its stages, and on GPU host_to_device / device_to_host: each a `summarize_times` dict plus
first_call_ms and warmup), memory, warnings, accuracy (eval JSON layout, or null). A batch the artifact cannot
run is a record with `skipped` (the reason) instead of phases.

Energy and measurement conditions (docs/energy.md; absent in records written before edgekd measured them):
- `energy`: the energy of one phase's timed calls, {"phase": "end_to_end" or "compute", "method", "scope" (what
  the number covers, in words), "window_mj", "window_s", "frames" (timed calls x batch), "mj_per_frame"
  (window_mj / frames), "mean_power_w" (window_mj / window_s / 1000)}; or null with `energy_unavailable`, the
  reason in words (no RAPL, nvidia-ml-py missing, window too short for the meter).
- `conditions`: {"cpu_governors": {governor: cores} or null, "rapl": "readable" or why not, "gpu": NVML's clocks
  (MHz) and maxima, temperature_c, persistence_mode, power_limit_w, clock_event_reasons, or null, "jetson":
  nvpmodel, nvpmodel_id, clocks_locked, clocks_mhz, temperatures_c, rails_mw, sources, problems, or null,
  "unavailable": what could not be read, or null}.
"""

from __future__ import annotations

import math
import reprlib

from edgekd.errors import EdgeKDError
from edgekd.evaluate.report import validate_eval_payload

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
ENERGY_KEYS: tuple[str, ...] = ("phase", "method", "scope", "window_mj", "window_s", "frames", "mj_per_frame",
                                "mean_power_w")  # fmt: skip


def _require(mapping: dict, keys: tuple[str, ...], where: str) -> None:
    for key in keys:
        if key not in mapping:
            raise EdgeKDError(f"{where}: field '{key}' missing")


def _is_number(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _expect(ok: bool, where: str, key: str, expected: str, value: object) -> None:
    if not ok:
        raise EdgeKDError(f"{where}: field '{key}' must be {expected}, got {reprlib.repr(value)}")


def _check_record(record: object, where: str) -> None:
    if not isinstance(record, dict):
        raise EdgeKDError(f"{where}: must be an object")
    _require(record, RECORD_KEYS, where)
    for key in ("artifact", "artifact_path", "backend"):
        _expect(isinstance(record[key], str), where, key, "a string", record[key])
    batch = record["batch"]
    _expect(
        isinstance(batch, int) and not isinstance(batch, bool) and batch >= 1,
        where,
        "batch",
        "a positive integer",
        batch,
    )
    if "skipped" in record:
        return
    _require(record, TIMED_RECORD_KEYS, where)
    for key in ("device", "timer", "precision", "run"):
        _expect(isinstance(record[key], str), where, key, "a string", record[key])
    for key in ("params", "gflops", "file_size_mib"):
        value = record.get(key)
        _expect(value is None or _is_number(value), where, key, "a number or null", value)
    _expect(isinstance(record["memory"], dict), where, "memory", "an object", record["memory"])
    warnings = record["warnings"]
    _expect(
        isinstance(warnings, list) and all(isinstance(w, str) for w in warnings),
        where,
        "warnings",
        "a list of strings",
        warnings,
    )
    accuracy = record.get("accuracy")
    _expect(
        accuracy is None or isinstance(accuracy, dict), where, "accuracy", "an eval result object or null", accuracy
    )
    if accuracy is not None:
        validate_eval_payload(accuracy, f"{where}: accuracy")
    _check_energy(record, where)
    _check_trtexec(record, where)
    conditions = record.get("conditions")
    _expect(conditions is None or isinstance(conditions, dict), where, "conditions", "an object", conditions)
    if conditions is not None:
        _require(conditions, ("rapl",), f"{where}: conditions")
    phases = record["phases"]
    if not isinstance(phases, dict) or "compute" not in phases:
        raise EdgeKDError(f"{where}: field 'phases' must hold at least 'compute'")
    for phase, stats in phases.items():
        at = f"{where}: phases.{phase}"
        _expect(isinstance(stats, dict), where, f"phases.{phase}", "an object", stats)
        _require(stats, STAT_KEYS, at)
        for key in STAT_KEYS:
            _expect(_is_number(stats[key]) and stats[key] >= 0, at, key, "a number >= 0", stats[key])


def _check_energy(record: dict, where: str) -> None:
    """`energy` absent (an older record), an energy object, or null with an `energy_unavailable` reason."""
    if "energy" not in record:
        return
    energy = record["energy"]
    if energy is None:
        reason = record.get("energy_unavailable")
        _expect(isinstance(reason, str) and bool(reason), where, "energy_unavailable", "the reason (a string)", reason)
        return
    _expect(isinstance(energy, dict), where, "energy", "an object or null", energy)
    at = f"{where}: energy"
    _require(energy, ENERGY_KEYS, at)
    for key in ("phase", "method", "scope"):
        _expect(isinstance(energy[key], str), at, key, "a string", energy[key])
    for key in ("window_mj", "window_s", "mj_per_frame", "mean_power_w"):
        _expect(_is_number(energy[key]) and energy[key] >= 0, at, key, "a number >= 0", energy[key])
    frames = energy["frames"]
    _expect(
        isinstance(frames, int) and not isinstance(frames, bool) and frames >= 1,
        at,
        "frames",
        "a positive integer",
        frames,
    )


def _check_trtexec(record: dict, where: str) -> None:
    """`trtexec` (--backend trt records; `edgekd.bench.trtexec`): {"status": "compared", "absent" or "failed",
    "note", "command", "version", "gpu_compute_ms": {min_ms, mean_ms, median_ms, max_ms, p90_ms, p99_ms} or null,
    "ours_p50_ms", "disagreement" (our compute p50 / trtexec's median - 1), "tolerance"}; absent or null elsewhere."""
    check = record.get("trtexec")
    if check is None:
        return
    at = f"{where}: trtexec"
    _expect(isinstance(check, dict), where, "trtexec", "an object or null", check)
    status = check.get("status")
    _expect(status in ("compared", "absent", "failed"), at, "status", "compared, absent or failed", status)
    if status != "compared":
        return
    times = check.get("gpu_compute_ms")
    _expect(isinstance(times, dict), at, "gpu_compute_ms", "an object", times)
    _require(times, ("min_ms", "mean_ms", "median_ms", "max_ms", "p90_ms", "p99_ms"), f"{at}: gpu_compute_ms")
    for key, value in times.items():
        _expect(value is None or _is_number(value), f"{at}: gpu_compute_ms", key, "a number or null", value)
    for key in ("ours_p50_ms", "disagreement", "tolerance"):
        _expect(_is_number(check.get(key)), at, key, "a number", check.get(key))


def validate_bench_payload(data: object, origin: str) -> None:
    """Raise EdgeKDError naming the file and the first missing or malformed field."""
    if not isinstance(data, dict) or data.get("format") != BENCH_FORMAT:
        raise EdgeKDError(f"{origin}: not an edgekd bench JSON (field 'format' must be '{BENCH_FORMAT}')")
    _require(data, ("created", "host", "settings", "records"), origin)
    _expect(isinstance(data["created"], str), origin, "created", "an ISO time (string)", data["created"])
    _expect(isinstance(data["host"], dict), origin, "host", "an object", data["host"])
    _expect(isinstance(data["settings"], dict), origin, "settings", "an object", data["settings"])
    _expect(isinstance(data.get("command", ""), str), origin, "command", "a string", data.get("command"))
    _expect(isinstance(data["records"], list), origin, "records", "a list", data["records"])
    for index, record in enumerate(data["records"]):
        _check_record(record, f"{origin}: records[{index}]")
