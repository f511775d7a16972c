"""The trtexec cross-check of `edgekd bench --backend trt` (edgekd.bench.trtexec): trtexec logs recorded in
tests/data/trtexec/ in the format of TensorRT's sampleReporting.cpp (10.x with `--percentile=50,90,99`, 8.2 with
its single percentile, a failed engine load), the command for static and dynamic-batch engines, and the whole
check against a fake `trtexec` on PATH that prints a recorded log only when given the expected arguments."""

from __future__ import annotations

import dataclasses
import json
import sys
from pathlib import Path

import pytest

from edgekd.bench.record import BenchRecord
from edgekd.bench.schema import BENCH_FORMAT, STAT_KEYS, validate_bench_payload
from edgekd.bench.trtexec import TrtexecCheck, TrtexecTimes, cross_check, parse_gpu_compute, timing_command
from edgekd.errors import EdgeKDError
from edgekd.runtime.metadata import BatchSpec, read_metadata

DATA = Path(__file__).parent / "data" / "trtexec"
COMPUTE = {"p50_ms": 2.0, "iters": 200}  # our compute phase: 200 timed calls, median 2 ms
WARMUP_CALLS = 10  # x 2 ms = trtexec --warmUp=20


def test_parses_tensorrt_10_summary_with_three_percentiles():
    times = parse_gpu_compute((DATA / "trtexec_10.log").read_text())
    assert times == TrtexecTimes(
        min_ms=2.05615, mean_ms=2.09467, median_ms=2.08276, max_ms=2.59482, p90_ms=2.10352, p99_ms=2.58971
    )


def test_parses_tensorrt_8_2_single_percentile_summary():
    times = parse_gpu_compute((DATA / "trtexec_8.2.log").read_text())
    assert times == TrtexecTimes(min_ms=4.0625, mean_ms=4.1875, median_ms=4.125, max_ms=4.875, p90_ms=None, p99_ms=4.75)


def test_log_without_summary_parses_to_none():
    assert parse_gpu_compute((DATA / "trtexec_failed.log").read_text()) is None


def test_exponent_notation_is_read():
    line = "GPU Compute Time: min = 9.5e-05 ms, max = 1.2e+02 ms, mean = 3 ms, median = .5 ms, percentile(90%) = 4 ms"
    assert parse_gpu_compute(line) == TrtexecTimes(9.5e-05, 3.0, 0.5, 120.0, 4.0, None)


def test_command_for_a_static_engine(tiny_export):
    meta = read_metadata(tiny_export / "model.onnx")
    command = timing_command(Path("/opt/trtexec"), Path("e/model.engine"), meta, 1, 20, 200)
    assert command == [
        "/opt/trtexec",
        "--loadEngine=e/model.engine",
        "--warmUp=20",
        "--iterations=200",
        "--duration=0",
        "--percentile=50,90,99",
        "--noDataTransfers",
        "--useSpinWait",
    ]


def test_command_for_a_dynamic_batch_engine_sets_the_benched_shape(tiny_export):
    static = read_metadata(tiny_export / "model.onnx")
    dynamic = dataclasses.replace(static, batch=BatchSpec.parse_dynamic("1:4:8"))
    command = timing_command(Path("trtexec"), Path("model.engine"), dynamic, 4, 20, 200)
    assert command[-1] == "--shapes=images:4x3x64x160"  # tiny export: input "images", 64x160 (HxW)
    assert command[:-1] == timing_command(Path("trtexec"), Path("model.engine"), static, 4, 20, 200)


def _fake_trtexec(folder: Path, log: str, expected: list[str], status: int = 0) -> Path:
    """A `trtexec` that prints the recorded `log` when called with exactly `expected`, else fails (exit 3)."""
    folder.mkdir()
    (folder / "expected.json").write_text(json.dumps(expected))
    script = folder / "trtexec"
    script.write_text(
        f"#!{sys.executable}\n"
        "import json, pathlib, sys\n"
        "here = pathlib.Path(__file__).parent\n"
        "if sys.argv[1:] != json.loads((here / 'expected.json').read_text()):\n"
        "    print('unexpected arguments:', sys.argv[1:], file=sys.stderr)\n"
        "    sys.exit(3)\n"
        f"print(pathlib.Path({str(DATA / log)!r}).read_text(), end='')\n"
        f"sys.exit({status})\n"
    )
    script.chmod(0o755)
    return folder


def _on_path(monkeypatch, folder: Path) -> None:
    monkeypatch.setenv("PATH", str(folder))


def test_cross_check_runs_trtexec_on_path_and_compares_medians(tiny_export, tmp_path, monkeypatch):
    meta = dataclasses.replace(read_metadata(tiny_export / "model.onnx"), batch=BatchSpec.parse_dynamic("1:4:8"))
    engine = tmp_path / "model_fp16.engine"
    expected = [
        f"--loadEngine={engine}",
        "--warmUp=20",
        "--iterations=200",
        "--duration=0",
        "--percentile=50,90,99",
        "--noDataTransfers",
        "--useSpinWait",
        "--shapes=images:4x3x64x160",
    ]
    _on_path(monkeypatch, _fake_trtexec(tmp_path / "bin", "trtexec_10.log", expected))
    check = cross_check(engine, meta, 4, COMPUTE, WARMUP_CALLS)
    assert check.status == "compared", check.note
    assert check.version == "TensorRT v100300"
    assert check.gpu_compute.median_ms == 2.08276
    assert check.ours_p50_ms == 2.0
    assert check.disagreement == pytest.approx(-0.0397357, abs=1e-6)  # 2.0 / 2.08276 - 1, by hand
    assert check.command.startswith(str(tmp_path / "bin" / "trtexec") + " --loadEngine=")
    assert check.warnings() == []


def test_disagreement_beyond_ten_percent_is_a_warning(tiny_export, tmp_path, monkeypatch):
    meta = read_metadata(tiny_export / "model.onnx")
    engine = tmp_path / "model.engine"
    expected = [f"--loadEngine={engine}", "--warmUp=25", "--iterations=50", "--duration=0", "--percentile=50,90,99",
                "--noDataTransfers", "--useSpinWait"]  # fmt: skip
    _on_path(monkeypatch, _fake_trtexec(tmp_path / "bin", "trtexec_10.log", expected))
    check = cross_check(engine, meta, 1, {"p50_ms": 2.5, "iters": 50}, WARMUP_CALLS)
    assert check.disagreement == pytest.approx(0.200330, abs=1e-6)  # 2.5 / 2.08276 - 1
    [warning] = check.warnings()
    assert "2.500 ms" in warning and "2.083 ms" in warning and "+20.0%" in warning and "10%" in warning


def test_failed_trtexec_is_recorded_with_its_last_line(tiny_export, tmp_path, monkeypatch):
    meta = read_metadata(tiny_export / "model.onnx")
    engine = tmp_path / "model.engine"
    expected = [f"--loadEngine={engine}", "--warmUp=20", "--iterations=200", "--duration=0", "--percentile=50,90,99",
                "--noDataTransfers", "--useSpinWait"]  # fmt: skip
    _on_path(monkeypatch, _fake_trtexec(tmp_path / "bin", "trtexec_failed.log", expected, status=1))
    check = cross_check(engine, meta, 1, COMPUTE, WARMUP_CALLS)
    assert check.status == "failed"
    assert check.note.startswith("exit status 1: &&&& FAILED TensorRT.trtexec")
    assert check.gpu_compute is None and check.disagreement is None
    assert check.warnings() == [f"trtexec cross-check failed: {check.note}"]


def test_absent_trtexec_is_recorded_without_error(tiny_export, tmp_path, monkeypatch):
    import edgekd.bench.trtexec as trtexec

    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.setattr(trtexec, "JETPACK_TRTEXEC", tmp_path / "usr" / "src" / "tensorrt" / "bin" / "trtexec")
    check = cross_check(tmp_path / "model.engine", read_metadata(tiny_export / "model.onnx"), 1, COMPUTE, 10)
    assert check.status == "absent"
    assert "trtexec not found" in check.note
    assert check.warnings() == []


def _payload(record: BenchRecord) -> dict:
    return {"format": BENCH_FORMAT, "created": "2024-08-14T10:21:08Z", "host": {}, "settings": {},
            "records": [record.to_dict()]}  # fmt: skip


def _record() -> BenchRecord:
    stats = dict.fromkeys(STAT_KEYS, 1.0)
    record = BenchRecord("model.engine", "/e/model.engine", "trt", 1, device="GPU", timer="cuda-event")
    record.precision, record.run, record.phases = "fp16", "student", {"compute": stats}
    return record


def test_record_keeps_the_check_through_its_json(tiny_export, tmp_path, monkeypatch):
    expected = [f"--loadEngine={tmp_path / 'm.engine'}", "--warmUp=20", "--iterations=200", "--duration=0",
                "--percentile=50,90,99", "--noDataTransfers", "--useSpinWait"]  # fmt: skip
    _on_path(monkeypatch, _fake_trtexec(tmp_path / "bin", "trtexec_10.log", expected))
    record = _record()
    record.trtexec = cross_check(tmp_path / "m.engine", read_metadata(tiny_export / "model.onnx"), 1, COMPUTE, 10)
    payload = json.loads(json.dumps(_payload(record)))
    validate_bench_payload(payload, "run.bench.json")
    entry = payload["records"][0]["trtexec"]
    assert entry["gpu_compute_ms"]["p99_ms"] == 2.58971 and entry["status"] == "compared"
    assert BenchRecord.from_dict(payload["records"][0]).trtexec == record.trtexec


def test_record_without_check_has_no_trtexec_key():
    assert "trtexec" not in _record().to_dict()


@pytest.mark.parametrize(
    ("edit", "needle"),
    [
        (lambda entry: entry.update(status="maybe"), "trtexec: field 'status'"),
        (lambda entry: entry["gpu_compute_ms"].update(median_ms="fast"), "gpu_compute_ms: field 'median_ms'"),
        (lambda entry: entry["gpu_compute_ms"].pop("p90_ms"), "field 'p90_ms' missing"),
        (lambda entry: entry.update(disagreement=None), "trtexec: field 'disagreement'"),
    ],
)
def test_malformed_check_is_refused_naming_the_field(edit, needle):
    record = _record()
    times = TrtexecTimes(2.0, 2.1, 2.08, 2.6, 2.1, 2.59)
    record.trtexec = TrtexecCheck("compared", None, "trtexec --loadEngine=m", None, times, 2.0, -0.04)
    payload = json.loads(json.dumps(_payload(record)))
    edit(payload["records"][0]["trtexec"])
    with pytest.raises(EdgeKDError, match="run.bench.json: records\\[0\\]") as error:
        validate_bench_payload(payload, "run.bench.json")
    assert needle in str(error.value)
