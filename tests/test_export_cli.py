"""`edgekd export` end to end on a tiny student, then `edgekd eval MODEL.onnx` in a process where torch cannot be
imported. AP is measured on a pseudo-labelled copy of the tiny validation set (labels = the PyTorch model's own
top detections), so the PyTorch AP is far from 0 and any drift of the exported model shows."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
import textwrap
from pathlib import Path
from types import SimpleNamespace

import onnx
import pytest
import torch
from pseudo_labels import pseudo_labelled
from typer.testing import CliRunner

from edgekd.cli import app
from edgekd.data.loader import load_dataset
from edgekd.errors import EdgeKDError
from edgekd.evaluate import evaluate_detections
from edgekd.export.tensorrt import tensorrt_problems
from edgekd.models.checkpoint import atomic_torch_save, detector_payload
from edgekd.models.detector import DetectorConfig
from edgekd.models.inference import predict_dataset
from edgekd.models.zoo import build_detector
from edgekd.runtime.metadata import read_metadata

runner = CliRunner()
CLASSES = ("Car", "Pedestrian", "Cyclist")


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _student(name: str = "retinanet_mobilenet_v3_lite"):
    torch.manual_seed(0)
    detector = build_detector(DetectorConfig(name, CLASSES, (64, 160))).eval()
    if detector.family == "retinanet":  # spread scores above the 0.05 threshold (random weights)
        torch.nn.init.normal_(detector.head_module.classification_head.cls_logits.weight, std=0.01)
        torch.nn.init.constant_(detector.head_module.classification_head.cls_logits.bias, -1.0)
    return detector


@pytest.fixture(scope="module")
def export_run(tiny_kitti, tmp_path_factory):
    root = tmp_path_factory.mktemp("export_cli")
    detector = _student()
    checkpoint = root / "runs" / "student" / "best.pt"
    atomic_torch_save(detector_payload(detector), checkpoint)
    data = pseudo_labelled(tiny_kitti, root / "pseudo", detector)
    out = root / "export"
    args = ["export", str(checkpoint), "-o", str(out), "--data", str(data), "--nms", "onnx", "--int8"]
    args += ["--calib-data", str(data), "--calib-images", "6", "--trt", "--fp16", "--threads", "1", "--quiet"]
    result = runner.invoke(app, args)
    val = load_dataset(data, "val", classes=CLASSES)
    reference = evaluate_detections(val, predict_dataset(detector, val)).to_dict()
    return SimpleNamespace(result=result, checkpoint=checkpoint, data=data, out=out, root=root, reference=reference)


def test_export_writes_model_metadata_and_a_passing_parity_report(export_run):
    out = export_run.out
    onnx.checker.check_model(onnx.load(out / "model.onnx"))
    meta = read_metadata(out / "model.onnx")
    assert meta.classes == list(CLASSES) and meta.input_size == [64, 160] and meta.nms == "onnx"
    assert (meta.score_thresh, meta.nms_thresh, meta.max_detections) == (0.05, 0.5, 100)
    assert meta.source["sha256"] == hashlib.sha256(export_run.checkpoint.read_bytes()).hexdigest()
    assert meta.versions["onnx"] == onnx.__version__ and meta.versions["torch"] == torch.__version__.split("+")[0]
    report = json.loads((out / "parity.json").read_text())
    assert report["passed"] and report["raw"]["boxes_max_abs"] < 1e-3 and report["raw"]["images"] == 6
    pytorch_row, onnx_row, int8_row = report["ap"]["rows"][:3]
    assert pytorch_row["AP"] == pytest.approx(export_run.reference["coco"]["AP"])
    assert pytorch_row["AP"] > 50  # pseudo labels: the check has teeth
    assert abs(onnx_row["delta"]["AP"]) <= 0.1 and onnx_row["passed"]
    assert "INT8" in int8_row["name"] and 0 <= int8_row["AP"] <= 100
    assert "trtexec" in (out / "parity.md").read_text()


def test_int8_qdq_model_has_its_own_metadata_and_runs(export_run):
    from edgekd.runtime import predict_artifact

    path = export_run.out / "model_int8.onnx"
    model = onnx.load(path)
    assert any(node.op_type == "QuantizeLinear" for node in model.graph.node)
    meta = read_metadata(path)
    assert meta.precision == "int8-qdq" and meta.quantization["calibration_images"] == 6
    assert any("cls_logits" in name for name in meta.quantization["kept_float_nodes"])
    val = load_dataset(export_run.data, "val", classes=CLASSES)
    int8_ap = evaluate_detections(val, predict_artifact(path, val, threads=1)).coco.AP
    reported = json.loads((export_run.out / "parity.json").read_text())["ap"]["rows"][2]["AP"]
    assert int8_ap == pytest.approx(reported, abs=0.1)  # in-graph NMS of the file == host NMS of the report


def test_tensorrt_step_builds_or_names_trtexec(export_run):
    result = export_run.result
    if tensorrt_problems():
        # the ONNX export completes (exit 0); the engine's absence is said, with the trtexec hand-off alone on its line
        assert result.exit_code == 0, result.output
        lines = result.output.splitlines()
        assert any(line.startswith("engine not built: not built here: missing") for line in lines), result.output
        int8_model = export_run.out / "model_int8.onnx"
        (command,) = [line for line in lines if line.startswith("trtexec ")]
        assert command.startswith(f"trtexec --onnx={int8_model} --saveEngine={export_run.out / 'model_int8.engine'}")
        assert "--fp16 --int8" in command and "--memPoolSize=workspace:4096" in command
        tensorrt = json.loads((export_run.out / "parity.json").read_text())["tensorrt"]
        assert tensorrt["trtexec"] == command and not (export_run.out / "model_int8.engine").exists()
    else:
        assert result.exit_code == 0, result.output
        assert read_metadata(export_run.out / "model_int8.engine").tensorrt["version"]


def test_eval_of_the_onnx_model_matches_pytorch_without_torch(export_run):
    metrics = export_run.root / "onnx_metrics.json"
    script = textwrap.dedent(
        f"""
        import importlib.abc, sys

        class BlockTorch(importlib.abc.MetaPathFinder):
            def find_spec(self, name, path=None, target=None):
                if name.split(".")[0] in ("torch", "torchvision"):
                    raise ImportError("torch is blocked: " + name)
                return None

        sys.meta_path.insert(0, BlockTorch())
        sys.argv = ["edgekd", "eval", {str(export_run.out / "model.onnx")!r}, "--data", {str(export_run.data)!r},
                    "--json", {str(metrics)!r}]
        from edgekd.cli import main
        try:
            main()
        finally:
            print("TORCH_MODULES", sorted(m for m in sys.modules if m.split(".")[0] in ("torch", "torchvision")))
        """
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, cwd=Path(__file__).parents[1])
    assert done.returncode == 0, done.stdout + done.stderr
    assert "TORCH_MODULES []" in done.stdout
    results = json.loads(metrics.read_text())
    for key in ("AP", "AP50"):
        assert results["coco"][key] == pytest.approx(export_run.reference["coco"][key], abs=0.1)
    for cls, by_difficulty in export_run.reference["kitti"].items():
        assert results["kitti"][cls]["moderate"] == pytest.approx(by_difficulty["moderate"], abs=0.1)


def test_parity_outside_tolerance_fails_with_the_numbers(export_run, monkeypatch, tmp_path):
    import edgekd.export.run as export_module

    monkeypatch.setattr(export_module, "RAW_TOLERANCE", 0.0)
    out = tmp_path / "strict"
    result = runner.invoke(app, ["export", str(export_run.checkpoint), "-o", str(out), "--threads", "1", "--quiet"])
    assert isinstance(result.exception, EdgeKDError)
    message = str(result.exception)
    assert "export failed parity" in message and "raw boxes max |diff|" in message and "(tolerance 0)" in message
    assert (out / "model.onnx.rejected").is_file() and not (out / "model.onnx").exists()
    assert json.loads((out / "parity.json").read_text())["passed"] is False


def test_bad_checkpoint_and_unsupported_options_fail_cleanly(export_run, tmp_path):
    def error_of(*args: str) -> str:
        result = runner.invoke(app, ["export", *args])
        assert isinstance(result.exception, EdgeKDError), result.output
        return str(result.exception)

    checkpoint = str(export_run.checkpoint)
    assert "checkpoint not found" in error_of(str(tmp_path / "missing.pt"))
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint")
    assert "cannot read checkpoint" in error_of(str(tmp_path / "junk.pt"))
    assert "--nms fast" in error_of(checkpoint, "--nms", "fast", "-o", str(tmp_path / "a"))
    assert "not both" in error_of(checkpoint, "--batch", "2", "--dynamic-batch", "1:2:4")
    assert "--int8-target cpu" in error_of(checkpoint, "--int8-target", "cpu")
    assert "--int8 needs calibration images" in error_of(checkpoint, "--int8")
    assert "--opset 9" in error_of(checkpoint, "--opset", "9", "-o", str(tmp_path / "b"))
    two_stage = tmp_path / "frcnn.pt"
    atomic_torch_save(detector_payload(_student("fasterrcnn_mobilenet_v3_lite")), two_stage)
    assert "--dynamic-batch: fasterrcnn" in error_of(str(two_stage), "--dynamic-batch", "1:2:4")


def test_default_output_folder_and_int8_keep_parsing():
    from edgekd.commands.export import parse_keep
    from edgekd.export.run import default_out_dir

    assert default_out_dir(Path("runs/student/best.pt")) == Path("export/student")
    assert parse_keep("auto") is None and parse_keep("none") == ()
    assert parse_keep("cls_logits, bbox_reg") == ("cls_logits", "bbox_reg")
    with pytest.raises(EdgeKDError, match="--int8-keep"):
        parse_keep(" , ")
