"""A short real bench of a tiny hand-built ONNX detector: record structure and consistency (never timings),
accuracy equal to `edgekd eval`'s, the CLI's errors and JSON, and the torch-free .onnx path."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from edgekd.bench.latency import STAGES, BenchOptions, run_bench
from edgekd.bench.record import BenchRun
from edgekd.bench.schema import STAT_KEYS, validate_bench_payload
from edgekd.cli import main
from edgekd.data.loader import load_dataset
from edgekd.evaluate import evaluate_detections
from edgekd.runtime import open_runner, predict_artifact, predict_dataset
from edgekd.runtime.metadata import BatchSpec, ExportMetadata, write_metadata

CLASSES = ["Car", "Pedestrian", "Cyclist"]
SIZE = (32, 64)
STRIDE = 8
CELLS = (SIZE[0] // STRIDE) * (SIZE[1] // STRIDE)
ROOT = Path(__file__).resolve().parents[1]


def tiny_detector_onnx(path: Path, batch: BatchSpec) -> Path:
    """A one-conv 'detector' with the exported layout: images (B, 3, 32, 64) -> boxes (B, 32, 4) x1y1x2y2 in
    network pixels and scores (B, 32, 3) in [0, 1]; metadata beside it as `edgekd export` writes it."""
    rng = np.random.default_rng(0)
    constants = {
        "W": rng.normal(0, 0.01, (7, 3, STRIDE, STRIDE)).astype(np.float32),
        "B": np.zeros(7, np.float32),
        "shape": np.array([0, 7, -1], np.int64),
        "s0": np.array([0], np.int64),
        "s2": np.array([2], np.int64),
        "s4": np.array([4], np.int64),
        "s7": np.array([7], np.int64),
        "axis": np.array([2], np.int64),
        "scale": np.array(60.0, np.float32),
        "one": np.array(1.0, np.float32),
    }
    nodes = [
        helper.make_node("Conv", ["images", "W", "B"], ["features"], strides=[STRIDE, STRIDE]),
        helper.make_node("Reshape", ["features", "shape"], ["flat"]),
        helper.make_node("Transpose", ["flat"], ["cells"], perm=[0, 2, 1]),
        helper.make_node("Sigmoid", ["cells"], ["unit"]),
        helper.make_node("Slice", ["unit", "s0", "s2", "axis"], ["xy_unit"]),
        helper.make_node("Slice", ["unit", "s2", "s4", "axis"], ["wh_unit"]),
        helper.make_node("Slice", ["unit", "s4", "s7", "axis"], ["scores"]),
        helper.make_node("Mul", ["xy_unit", "scale"], ["xy"]),
        helper.make_node("Mul", ["wh_unit", "scale"], ["wh0"]),
        helper.make_node("Add", ["wh0", "one"], ["wh"]),
        helper.make_node("Add", ["xy", "wh"], ["xy2"]),
        helper.make_node("Concat", ["xy", "xy2"], ["boxes"], axis=2),
    ]
    dim = "batch" if batch.dynamic else batch.max
    graph = helper.make_graph(
        nodes,
        "tiny_detector",
        [helper.make_tensor_value_info("images", TensorProto.FLOAT, [dim, 3, *SIZE])],
        [
            helper.make_tensor_value_info("boxes", TensorProto.FLOAT, [dim, CELLS, 4]),
            helper.make_tensor_value_info("scores", TensorProto.FLOAT, [dim, CELLS, 3]),
        ],
        [numpy_helper.from_array(value, name) for name, value in constants.items()],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    path.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(model, str(path))
    meta = ExportMetadata(
        model="tiny_hand_built",
        family="retinanet",
        classes=list(CLASSES),
        input_size=list(SIZE),
        mean=[0.485, 0.456, 0.406],
        std=[0.229, 0.224, 0.225],
        score_thresh=0.05,
        nms_thresh=0.5,
        max_detections=100,
        topk_candidates=1000,
        nms="none",
        batch=batch,
        num_candidates=CELLS,
        opset=17,
        source={"checkpoint": "runs/student/best.pt", "sha256": "0" * 64},
    )
    meta.outputs = meta.describe_outputs()
    write_metadata(path, meta)
    return path


@pytest.fixture(scope="module")
def tiny_onnx(tmp_path_factory) -> Path:
    return tiny_detector_onnx(tmp_path_factory.mktemp("export") / "student" / "model.onnx", BatchSpec(1, 1, 4))


def _check_stats(stats: dict, batch: int) -> None:
    assert set(STAT_KEYS) <= set(stats)
    assert 0 < stats["min_ms"] <= stats["p50_ms"] <= stats["p90_ms"] <= stats["p99_ms"] <= stats["max_ms"]
    assert stats["min_ms"] <= stats["mean_ms"] <= stats["max_ms"]
    assert stats["throughput_ips"] == pytest.approx(batch * 1000 / stats["p50_ms"])


def test_short_real_bench_records_are_complete_and_consistent(tiny_onnx):
    options = BenchOptions(batches=(1, 2, 8), warmup=1, iters=5)
    payload = run_bench([tiny_onnx], options).to_dict()
    validate_bench_payload(payload, "payload")
    assert BenchRun.from_dict(payload).to_dict() == payload  # the typed records read back key for key
    assert [r["batch"] for r in payload["records"]] == [1, 2, 8]
    timed, skipped = payload["records"][:2], payload["records"][2]
    assert skipped["skipped"] == "accepts batches 1 to 4" and "phases" not in skipped
    for record in timed:
        batch = record["batch"]
        assert record["artifact_path"] == str(tiny_onnx.resolve()) and record["backend"] == "ort-cpu"
        assert (record["precision"], record["run"], record["kind"], record["timer"]) == (
            "fp32",
            "student",
            "onnx",
            "perf_counter",
        )
        assert record["file_size_mib"] == pytest.approx(tiny_onnx.stat().st_size / 2**20)
        assert record["params"] == 7 * 3 * STRIDE * STRIDE + 7
        assert record["gflops"] == pytest.approx(2 * 7 * CELLS * 3 * STRIDE * STRIDE / 1e9)
        phases = record["phases"]
        assert set(phases) == {"compute", "end_to_end"}  # CPU: no device copies
        for stats in phases.values():
            _check_stats(stats, batch)
            assert stats["iters"] == 5 and stats["warmup"] == 1 and stats["first_call_ms"] > 0
        e2e = phases["end_to_end"]
        assert set(e2e["stages"]) == set(STAGES)
        for stats in e2e["stages"].values():
            _check_stats(stats, batch)
        # every run's total brackets its stages, so the mean total cannot be below the sum of stage means
        assert sum(s["mean_ms"] for s in e2e["stages"].values()) <= e2e["mean_ms"] + 1e-9
        assert record["memory"]["peak_rss_mib"] > 0 and record["memory"]["baseline_rss_mib"] > 0
        assert "noise" in record["frames"] and record["accuracy"] is None
        for warning in record["warnings"]:
            assert "coefficient of variation" in warning


def test_bench_accuracy_equals_eval_of_the_same_artifact(tiny_onnx, tiny_kitti):
    options = BenchOptions(batches=(2,), warmup=0, iters=2, data=tiny_kitti, evaluate=True)
    record = run_bench([tiny_onnx], options).to_dict()["records"][0]
    dataset = load_dataset(tiny_kitti, "val", classes=tuple(CLASSES))
    reference = evaluate_detections(dataset, predict_artifact(tiny_onnx, dataset, batch=2)).to_dict()
    assert record["accuracy"] == reference
    assert str(tiny_kitti) in record["frames"]


def test_batched_predictions_equal_one_image_at_a_time(tiny_onnx, tiny_kitti):
    dataset = load_dataset(tiny_kitti, "val", classes=tuple(CLASSES))
    with open_runner(tiny_onnx, "ort-cpu") as runner:
        mine = predict_dataset(runner, dataset, 4)  # a short last batch: 6 images = 4 + 2
    reference = predict_artifact(tiny_onnx, dataset, batch=1)
    assert mine.keys() == reference.keys() and sum(len(d.scores) for d in mine.values()) > 0
    for image_id, detections in reference.items():
        np.testing.assert_array_equal(mine[image_id].boxes, detections.boxes)
        np.testing.assert_array_equal(mine[image_id].scores, detections.scores)
        np.testing.assert_array_equal(mine[image_id].labels, detections.labels)


def _run_cli(capsys, *args: str) -> tuple[int, str, str]:
    argv = sys.argv
    sys.argv = ["edgekd", *args]
    try:
        main()
        code = 0
    except SystemExit as exit_:
        code = exit_.code
    finally:
        sys.argv = argv
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_cli_errors_name_the_option_or_file(tiny_onnx, tmp_path, capsys):
    cases = [
        (("bench", str(tiny_onnx), "--backend", "tflite"), "--backend tflite: expected one of auto, torch"),
        (("bench", str(tmp_path / "missing.onnx")), f"artifact not found: {tmp_path / 'missing.onnx'}"),
        (("bench", str(tiny_onnx), "--backend", "trt"), "--backend trt cannot run model.onnx"),
        (("bench", str(tiny_onnx), "--iters", "5", "--seconds", "1"), "either --iters N or --seconds S"),
        (("bench", str(tiny_onnx), "--batch", "8"), "no batch size could run"),
    ]
    for args, message in cases:
        code, out, err = _run_cli(capsys, *args, "--quiet")
        assert code == 2, args
        assert message in " ".join(err.split()), (args, err)
        assert "Traceback" not in out + err


def test_cli_writes_valid_json_without_torch(tiny_onnx, tmp_path):
    """The .onnx path end to end in a process where importing torch fails."""
    out = tmp_path / "tiny.bench.json"
    script = (
        "import sys; sys.modules['torch'] = None\n"
        "from edgekd.cli import main\n"
        f"sys.argv = ['edgekd', 'bench', {str(tiny_onnx)!r}, '--batch', '1', '--iters', '3', '--warmup', '1',"
        f" '--json', {str(out)!r}, '--quiet']\n"
        "main()\n"
    )
    result = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    payload = json.loads(out.read_text())
    validate_bench_payload(payload, str(out))
    assert payload["records"][0]["phases"]["compute"]["iters"] == 3
    assert "Compute-only latency" in result.stdout
