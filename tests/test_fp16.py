"""`edgekd export --fp16` without TensorRT: model_fp16.onnx with FP32 inputs/outputs and fragile ops, its parity
with PyTorch on ONNX Runtime within the FP16 bounds (checked here independently of the report), a failing FP16
model kept as .rejected, and the TensorRT hand-off (strongly typed from the FP16 ONNX)."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import onnx
import pseudo_labels
import pytest
import torch
from pseudo_labels import CLASSES
from typer.testing import CliRunner

from edgekd.cli import app
from edgekd.data.loader import load_dataset
from edgekd.errors import EdgeKDError
from edgekd.evaluate import evaluate_detections
from edgekd.export.fp16 import FP16_AP_TOLERANCE, FP16_BOX_TOLERANCE, FP16_SCORE_TOLERANCE, FRAGILE_OPS
from edgekd.export.tensorrt import EngineOptions, tensorrt_problems, trtexec_command
from edgekd.models.checkpoint import atomic_torch_save, detector_payload
from edgekd.models.inference import predict_dataset
from edgekd.runtime import open_runner, predict_artifact
from edgekd.runtime.metadata import BatchSpec, read_metadata
from edgekd.runtime.preprocess import iterate_batches

runner = CliRunner()


@pytest.fixture(scope="module")
def fp16_export(tiny_kitti, tmp_path_factory):
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("fp16")
    detector = pseudo_labels.student()
    checkpoint = root / "run" / "best.pt"
    atomic_torch_save(detector_payload(detector), checkpoint)
    data = pseudo_labels.pseudo_labelled(tiny_kitti, root / "pseudo", detector)
    out = root / "export"
    args = ["export", str(checkpoint), "-o", str(out), "--data", str(data), "--fp16", "--nms", "onnx"]
    result = runner.invoke(app, [*args, "--threads", "1", "--quiet"])
    yield SimpleNamespace(result=result, root=root, checkpoint=checkpoint, data=data, out=out, detector=detector)
    torch.set_num_threads(threads)


def _value_types(model: onnx.ModelProto) -> dict[str, int]:
    inferred = onnx.shape_inference.infer_shapes(model)
    values = [*inferred.graph.value_info, *inferred.graph.input, *inferred.graph.output]
    types = {value.name: value.type.tensor_type.elem_type for value in values}
    types.update({tensor.name: tensor.data_type for tensor in inferred.graph.initializer})
    return types


def test_fp16_model_keeps_float32_io_and_fragile_ops(fp16_export):
    assert fp16_export.result.exit_code == 0, fp16_export.result.output
    model = onnx.load(fp16_export.out / "model_fp16.onnx")
    float32, float16 = onnx.TensorProto.FLOAT, onnx.TensorProto.FLOAT16
    assert [v.type.tensor_type.elem_type for v in model.graph.input] == [float32]
    outputs = {v.name: v.type.tensor_type.elem_type for v in model.graph.output}
    assert outputs["detection_boxes"] == float32 and outputs["detection_scores"] == float32
    types = _value_types(model)
    convs = [node for node in model.graph.node if node.op_type == "Conv"]
    assert convs and all(types[node.input[1]] == float16 for node in convs)  # every conv weight in FP16
    fragile = [node for node in model.graph.node if node.op_type in FRAGILE_OPS]
    assert {node.op_type for node in fragile} >= {"Exp", "Sigmoid", "NonMaxSuppression"}
    assert all(types[node.input[0]] == float32 for node in fragile)
    meta = read_metadata(fp16_export.out / "model_fp16.onnx")
    assert meta.precision == "fp16" and meta.nms == "onnx"


def test_fp16_raw_outputs_and_ap_are_within_the_fp16_bounds(fp16_export):
    """Raw outputs of model_fp16's graph against PyTorch on the validation images, and AP of the file itself."""
    val = load_dataset(fp16_export.data, "val", classes=CLASSES)
    raw_path = fp16_export.root / "raw_fp16.onnx"
    report = json.loads((fp16_export.out / "parity.json").read_text())
    model = onnx.load(fp16_export.out / "model_fp16.onnx")
    names = {node.output[0] for node in model.graph.node}
    assert {"boxes", "scores"} <= names  # the raw outputs feed the NMS tail
    raw = onnx.utils.Extractor(model).extract_model(["images"], ["boxes", "scores"])
    onnx.save(raw, raw_path)
    import onnxruntime

    session = onnxruntime.InferenceSession(str(raw_path), providers=["CPUExecutionProvider"])
    boxes_max = scores_max = 0.0
    for _, images, _ in iterate_batches(val, (64, 160), 1):
        with torch.no_grad():
            reference = fp16_export.detector.raw(torch.from_numpy(images))
        boxes, scores = session.run(["boxes", "scores"], {"images": images})
        boxes_max = max(boxes_max, float(np.abs(boxes - reference[0].numpy()).max()))
        scores_max = max(scores_max, float(np.abs(scores - reference[1].numpy()).max()))
    assert 0 < boxes_max <= FP16_BOX_TOLERANCE and 0 < scores_max <= FP16_SCORE_TOLERANCE
    assert report["fp16"]["raw"]["boxes_max_abs"] == pytest.approx(boxes_max, rel=1e-3, abs=1e-4)
    pytorch_ap = evaluate_detections(val, predict_dataset(fp16_export.detector, val)).coco.AP
    fp16_ap = evaluate_detections(val, predict_artifact(fp16_export.out / "model_fp16.onnx", val, threads=1)).coco.AP
    assert pytorch_ap > 50 and abs(fp16_ap - pytorch_ap) <= FP16_AP_TOLERANCE
    (fp16_row,) = [row for row in report["ap"]["rows"] if "FP16" in row["name"]]
    assert fp16_row["tolerance"] == FP16_AP_TOLERANCE and fp16_row["passed"] is True


def test_fp16_model_runs_through_the_runtime(fp16_export):
    with open_runner(fp16_export.out / "model_fp16.onnx", "ort-cpu") as model:
        outputs = model.infer(np.zeros((1, 3, 64, 160), np.float32))
    assert outputs["detection_boxes"].dtype == np.float32


def test_fp16_outside_its_bounds_is_kept_as_rejected(fp16_export, tmp_path, monkeypatch):
    monkeypatch.setattr("edgekd.export.fp16.FP16_SCORE_TOLERANCE", 0.0)
    out = tmp_path / "rejected"
    args = ["export", str(fp16_export.checkpoint), "-o", str(out), "--fp16", "--threads", "1", "--quiet"]
    result = runner.invoke(app, args)
    assert isinstance(result.exception, EdgeKDError), result.output
    assert "FP16 export failed parity" in str(result.exception) and "(tolerance 0)" in str(result.exception)
    assert (out / "model_fp16.onnx.rejected").is_file() and not (out / "model_fp16.onnx").exists()
    assert (out / "model.onnx").is_file()  # the FP32 model passed and stays
    assert json.loads((out / "parity.json").read_text())["fp16"]["passed"] is False


def test_tensorrt_hand_off_builds_fp16_strongly_typed_from_the_fp16_onnx(fp16_export, tmp_path):
    options = EngineOptions(fp16=True, strongly_typed=True)
    command = trtexec_command(Path("m_fp16.onnx"), Path("m_fp16.engine"), options, BatchSpec.static(1), (64, 160))
    assert "--onnx=m_fp16.onnx" in command and "--stronglyTyped" in command and "--fp16" not in command
    out = tmp_path / "trt"
    args = ["export", str(fp16_export.checkpoint), "-o", str(out), "--fp16", "--trt", "--threads", "1", "--quiet"]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    if tensorrt_problems():
        tensorrt = json.loads((out / "parity.json").read_text())["tensorrt"]
        assert f"--onnx={out / 'model_fp16.onnx'}" in tensorrt["trtexec"] and "--stronglyTyped" in tensorrt["trtexec"]
    else:
        assert read_metadata(out / "model_fp16.engine").precision == "fp16"


def test_engine_bounds_per_precision_and_ungated_int8_raw_outputs():
    from edgekd.export.parity import AP_TOLERANCE, INT8_AP_AIM, RAW_TOLERANCE, ModelParity, RawDifference
    from edgekd.export.run import engine_bounds

    assert engine_bounds("fp32", None) == (RAW_TOLERANCE, RAW_TOLERANCE, AP_TOLERANCE, True)
    assert engine_bounds("fp16", 2.0) == (FP16_BOX_TOLERANCE, FP16_SCORE_TOLERANCE, FP16_AP_TOLERANCE, True)
    assert engine_bounds("int8", None)[2:] == (INT8_AP_AIM + AP_TOLERANCE, False)
    assert engine_bounds("int8", 0.5)[2] == pytest.approx(0.5 + AP_TOLERANCE)
    far = RawDifference(boxes_max=3.0, scores_max=0.2)
    assert not ModelParity("TensorRT fp16 engine", "m.engine", far, "x", 0.5, 1e-2).passed
    assert ModelParity("TensorRT int8 engine", "m.engine", far, "x", 0.0, 0.0, checked=False).passed
    assert ModelParity("TensorRT fp32 engine (NMS)", "m.engine", None, "x", 1e-3, 1e-3).passed
