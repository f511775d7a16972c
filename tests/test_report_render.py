"""`edgekd report`: finding and pairing eval/bench JSONs, the tables, the plotted data and the PNG."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from edgekd.bench.plots import DPI, FIGURE_SIZE, render_accuracy_latency
from edgekd.bench.report import build_report, find_inputs, plot_points, plot_rows, summary_table, write_report
from edgekd.bench.schema import BENCH_FORMAT, validate_bench_payload
from edgekd.bench.timing import summarize_times
from edgekd.cli import main
from edgekd.errors import EdgeKDError


def _stats(p50_ms: float, batch: int) -> dict:
    """Statistics of five synthetic timings centred on p50_ms (as `edgekd bench` writes them)."""
    times = np.array([0.98, 0.99, 1.0, 1.01, 1.02]) * p50_ms / 1000
    return {**summarize_times(times, batch), "first_call_ms": 3 * p50_ms, "warmup": 2}


def _record(artifact: Path, backend: str, precision: str, run: str, p50: float, batch: int = 1, **extra) -> dict:
    kind = {".pt": "checkpoint", ".onnx": "onnx", ".engine": "engine"}[artifact.suffix]
    return {
        "artifact": str(artifact),
        "artifact_path": str(artifact.resolve()),
        "backend": backend,
        "batch": batch,
        "device": "test device",
        "timer": "perf_counter",
        "file_size_mib": 1.5,
        "kind": kind,
        "model": "retinanet_mobilenet_v3_lite",
        "precision": precision,
        "nms": "none",
        "run": run,
        "source_sha256": extra.pop("sha", None),
        "params": extra.pop("params", 2_000_000),
        "gflops": extra.pop("gflops", 1.25),
        "phases": {"compute": _stats(p50, batch), "end_to_end": _stats(2 * p50, batch)},
        "memory": {"peak_rss_mib": 300.0, "baseline_rss_mib": 100.0, "rss_method": "test"},
        "warnings": extra.pop("warnings", []),
        "accuracy": extra.pop("accuracy", None),
        **extra,
    }


def _write_bench(path: Path, records: list[dict], created: str = "2025-01-01T00:00:00+00:00") -> Path:
    payload = {
        "format": BENCH_FORMAT,
        "created": created,
        "command": "edgekd bench ...",
        "host": {"cpu": "test"},
        "settings": {"warmup": 2},
        "records": records,
    }
    validate_bench_payload(payload, str(path))
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(payload))
    return path


def _accuracy(ap: float, moderate: dict[str, float]) -> dict:
    return {
        "coco": {"AP": ap, "AP50": ap + 20, "AP75": ap - 5, "APs": None, "APm": ap, "APl": ap},
        "kitti": {cls: {"easy": v + 5, "moderate": v, "hard": v - 5} for cls, v in moderate.items()},
    }


@pytest.fixture
def runs(tmp_path: Path) -> dict:
    """A teacher checkpoint, a student ONNX + FP16 engine, a distilled ONNX, each paired differently."""
    teacher = tmp_path / "runs" / "teacher" / "best.pt"
    student = tmp_path / "export" / "student" / "model.onnx"
    engine = tmp_path / "export" / "student" / "model_fp16.engine"
    distilled = tmp_path / "export" / "distilled" / "model.onnx"
    acc = {
        "teacher": _accuracy(40.0, {"Car": 60.0, "Pedestrian": 40.0, "Cyclist": 20.0}),
        "student": _accuracy(25.0, {"Car": 50.0, "Pedestrian": 30.0}),
        "engine": _accuracy(24.5, {"Car": 49.0, "Pedestrian": 29.0}),
        "distilled": _accuracy(30.0, {"Car": 55.0, "Pedestrian": 35.0, "Cyclist": 15.0}),
    }
    _write_bench(
        tmp_path / "runs" / "teacher" / "teacher.bench.json", [_record(teacher, "torch", "fp32", "teacher", 50.0)]
    )
    (tmp_path / "runs" / "teacher" / "best.pt.eval.json").write_text(json.dumps(acc["teacher"]))  # rule 3
    _write_bench(
        tmp_path / "export" / "student" / "onnx.bench.json",
        [
            _record(student, "ort-cpu", "fp32", "student", 12.0, sha="s1", params=1_900_000, gflops=0.9),
            _record(student, "ort-cpu", "fp32", "student", 30.0, batch=4, sha="s1", params=1_900_000, gflops=0.9),
        ],
    )
    (tmp_path / "student.eval.json").write_text(json.dumps({**acc["student"], "artifact": str(student)}))  # rule 2
    _write_bench(
        tmp_path / "export" / "student" / "fp16.bench.json",
        [_record(engine, "trt", "fp16", "student", 2.0, sha="s1", params=None, gflops=None)],
    )
    (tmp_path / "export" / "student" / "fp16.eval.json").write_text(json.dumps(acc["engine"]))  # rule 4
    _write_bench(
        tmp_path / "export" / "distilled" / "distilled.bench.json",
        [_record(distilled, "ort-cpu", "fp32", "distilled", 11.0, accuracy=acc["distilled"], warnings=["w!"])],
    )  # rule 1
    (tmp_path / "orphan.eval.json").write_text(json.dumps(acc["student"]))
    return {
        "root": tmp_path,
        "acc": acc,
        "paths": {"teacher": teacher, "student": student, "engine": engine, "distilled": distilled},
    }


def _mean_moderate(accuracy: dict) -> float:
    values = [v["moderate"] for v in accuracy["kitti"].values()]
    return sum(values) / len(values)


def test_pairing_rules_and_the_plotted_points(runs):
    report = build_report(find_inputs([runs["root"]]))
    assert len(report.rows) == 5  # teacher, student x2 batches, engine, distilled
    points = {(p.run, p.precision, p.backend): p for p in plot_points(plot_rows(report), "compute")}
    assert set(points) == {
        ("teacher", "fp32", "torch"),
        ("student", "fp32", "ort-cpu"),
        ("student", "fp16", "trt"),
        ("distilled", "fp32", "ort-cpu"),
    }
    expected = {
        ("teacher", "fp32", "torch"): (50.0, "teacher"),
        ("student", "fp32", "ort-cpu"): (12.0, "student"),  # batch 1, the smallest of 1 and 4
        ("student", "fp16", "trt"): (2.0, "engine"),
        ("distilled", "fp32", "ort-cpu"): (11.0, "distilled"),
    }
    for key, (latency, name) in expected.items():
        point, accuracy = points[key], runs["acc"][name]
        assert point.latency_ms == pytest.approx(latency)
        assert point.batch == 1
        assert point.coco_ap == accuracy["coco"]["AP"]
        assert point.kitti_moderate == pytest.approx(_mean_moderate(accuracy))
    sources = {row.record.run + row.record.precision: row.accuracy_source for row in plot_rows(report)}
    assert "best.pt.eval.json" in sources["teacherfp32"] and "fp16.eval.json" in sources["studentfp16"]
    assert "'artifact' field" in sources["studentfp32"] and sources["distilledfp32"].startswith("bench --eval")
    assert any("orphan.eval.json not paired" in note for note in report.notes)
    assert any(note.endswith("w!") for note in report.notes)
    engine = next(row for row in report.rows if row.record.backend == "trt")
    assert (engine.record.params, engine.record.gflops, engine.filled) == (1_900_000, 0.9, ["params", "gflops"])


def test_latency_phase_and_batch_choose_the_points(runs):
    report = build_report(find_inputs([runs["root"]]))
    e2e = {p.run + p.precision: p.latency_ms for p in plot_points(plot_rows(report), "end_to_end")}
    assert e2e["teacherfp32"] == pytest.approx(100.0)
    at_four = plot_points(plot_rows(report, batch=4), "compute")
    assert [(p.run, p.batch, p.latency_ms) for p in at_four] == [("student", 4, pytest.approx(30.0))]


def test_figure_holds_the_points_and_the_png_is_valid(runs, tmp_path):
    report = build_report(find_inputs([runs["root"]]))
    points = plot_points(plot_rows(report), "compute")
    figure = render_accuracy_latency(points, tmp_path / "plot.png", "compute-only")
    coco_axes, kitti_axes = figure.axes
    for axes, metric in ((coco_axes, "coco_ap"), (kitti_axes, "kitti_moderate")):
        drawn = sorted(tuple(np.round(xy, 6)) for c in axes.collections for xy in c.get_offsets())
        wanted = sorted((round(p.latency_ms, 6), round(getattr(p, metric), 6)) for p in points)
        assert drawn == wanted
    with Image.open(tmp_path / "plot.png") as image:
        assert image.format == "PNG"
        assert image.size == (int(FIGURE_SIZE[0] * DPI), int(FIGURE_SIZE[1] * DPI))


def test_write_report_files_and_markdown_table(runs, tmp_path):
    out = tmp_path / "report"
    markdown, png, report = write_report([runs["root"]], out)
    text = markdown.read_text()
    assert png.is_file() and (out / "report.json").is_file()
    assert "![accuracy vs latency](accuracy_latency.png)" in text
    table = summary_table(plot_rows(report), "compute")
    assert table in text
    header, rule, *rows = table.splitlines()
    assert header.startswith("| run | artifact | precision | backend |") and len(rows) == 4
    assert "Mod Car" in header and "Mod Cyclist" in header
    teacher = next(r for r in rows if r.startswith("| teacher |"))
    cells = [c.strip() for c in teacher.strip("|").split("|")]
    columns = [c.strip() for c in header.strip("|").split("|")]
    row = dict(zip(columns, cells))
    assert (row["COCO AP"], row["AP50"], row["KITTI Mod AP"], row["Mod Car"]) == ("40.00", "60.00", "40.00", "60.00")
    assert row["compute-only p50 (ms)"] == "50.00" and row["img/s"] == "20.0" and row["params (M)"] == "2.00"
    engine = next(r for r in rows if "model_fp16.engine" in r)
    assert "1.90*" in engine  # params taken from the ONNX export of the same checkpoint
    data = json.loads((out / "report.json").read_text())
    assert len(data["points"]) == 4 and len(data["rows"]) == 5


def test_latest_duplicate_wins(tmp_path):
    model = tmp_path / "export" / "student" / "model.onnx"
    _write_bench(tmp_path / "a.bench.json", [_record(model, "ort-cpu", "fp32", "student", 10.0)], "2025-01-01T00:00:00")
    _write_bench(tmp_path / "b.bench.json", [_record(model, "ort-cpu", "fp32", "student", 8.0)], "2025-02-01T00:00:00")
    report = build_report(find_inputs([tmp_path]))
    assert len(report.rows) == 1 and report.rows[0].record.phases["compute"]["p50_ms"] == pytest.approx(8.0)
    assert any("measured twice; kept b.bench.json" in note for note in report.notes)


def test_report_input_errors(runs, tmp_path):
    with pytest.raises(EdgeKDError, match="report input not found"):
        find_inputs([tmp_path / "nope"])
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(EdgeKDError, match="no bench JSON found"):
        find_inputs([empty])
    other = tmp_path / "other.json"
    other.write_text(json.dumps({"hello": 1}))
    with pytest.raises(EdgeKDError, match="other.json: neither a bench JSON"):
        find_inputs([other])
    with pytest.raises(EdgeKDError, match=r"--batch 16: no record at that batch size \(measured: \[1, 4\]\)"):
        write_report([runs["root"]], tmp_path / "r", batch=16)
    with pytest.raises(EdgeKDError, match="--latency total"):
        write_report([runs["root"]], tmp_path / "r", phase="total")


def _run_cli(*args: str) -> int:
    argv = sys.argv
    sys.argv = ["edgekd", *args]
    try:
        main()
    except SystemExit as exit_:
        return int(exit_.code or 0)
    finally:
        sys.argv = argv
    return 0


def test_report_cli(runs, tmp_path, capsys):
    assert _run_cli("report", str(runs["root"]), "-o", str(tmp_path / "cli")) == 0
    assert (tmp_path / "cli" / "report.md").is_file() and (tmp_path / "cli" / "accuracy_latency.png").is_file()
    capsys.readouterr()
    assert _run_cli("report", str(tmp_path / "missing")) == 2
    assert "report input not found" in capsys.readouterr().err
