"""TensorRT paths: version/GPU mismatch refusal, clear errors where TensorRT or a GPU is missing, the trtexec
command, and (only where TensorRT and a CUDA GPU are present) an engine build and run."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from edgekd.errors import EdgeKDError
from edgekd.export.tensorrt import EngineOptions, tensorrt_problems, trtexec_command
from edgekd.runtime import open_runner
from edgekd.runtime.metadata import BatchSpec, metadata_path
from edgekd.runtime.tensorrt_runner import engine_mismatch

BUILT = {"version": "10.3.0", "gpu": "Orin", "compute_capability": "8.7"}
TENSORRT_PROBLEMS = tensorrt_problems()


def test_engine_mismatch_names_version_and_gpu():
    assert engine_mismatch(BUILT, dict(BUILT)) is None
    version = engine_mismatch(BUILT, {**BUILT, "version": "10.7.0"})
    assert "TensorRT 10.3.0 (here: 10.7.0)" in version and "GPU" not in version
    gpu = engine_mismatch(BUILT, {**BUILT, "gpu": "NVIDIA GeForce RTX 4090", "compute_capability": "8.9"})
    assert "GPU 'Orin' sm 8.7 (here: 'NVIDIA GeForce RTX 4090' sm 8.9)" in gpu


def test_trtexec_command_fills_in_paths_precision_and_shapes():
    options = EngineOptions(fp16=True, workspace_mib=2048, timing_cache=Path("export/run/timing.cache"))
    command = trtexec_command(
        Path("export/run/model.onnx"), Path("export/run/model_fp16.engine"), options, BatchSpec(1, 4, 8), (192, 640)
    )
    assert command == (
        "trtexec --onnx=export/run/model.onnx --saveEngine=export/run/model_fp16.engine --fp16 "
        "--minShapes=images:1x3x192x640 --optShapes=images:4x3x192x640 --maxShapes=images:8x3x192x640 "
        "--memPoolSize=workspace:2048 --timingCacheFile=export/run/timing.cache"
    )
    static = trtexec_command(Path("m.onnx"), Path("m.engine"), EngineOptions(), BatchSpec.static(2), (64, 160))
    assert "Shapes" not in static and "--fp16" not in static and "--int8" not in static


def _fake_engine(tmp_path: Path, tensorrt: dict | None) -> Path:
    engine = tmp_path / "model_fp16.engine"
    engine.write_bytes(b"\0" * 16)
    meta = {
        "model": "retinanet_mobilenet_v3_lite",
        "family": "retinanet",
        "classes": ["Car"],
        "input_size": [64, 160],
        "mean": [0.5, 0.5, 0.5],
        "std": [0.2, 0.2, 0.2],
        "score_thresh": 0.05,
        "nms_thresh": 0.5,
        "max_detections": 100,
        "topk_candidates": 1000,
        "nms": "trt-plugin",
        "batch": {"min": 1, "opt": 1, "max": 1},
        "num_candidates": 10,
        "opset": 17,
        "precision": "fp16",
        "tensorrt": tensorrt,
        "format": "edgekd-export-v1",
    }
    metadata_path(engine).write_text(json.dumps(meta))
    return engine


@pytest.mark.skipif(not TENSORRT_PROBLEMS, reason="TensorRT and a GPU are present: the missing-TensorRT path")
def test_engine_without_tensorrt_or_gpu_is_a_clear_error(tmp_path):
    with pytest.raises(EdgeKDError) as error:
        open_runner(_fake_engine(tmp_path, BUILT))
    assert "TensorRT Python package" in str(error.value) or "GPU" in str(error.value)


def test_engine_metadata_without_build_record_is_refused(tmp_path):
    with pytest.raises(EdgeKDError, match="no 'tensorrt' section"):
        open_runner(_fake_engine(tmp_path, None))


def test_plugin_graph_is_refused_by_onnxruntime_with_a_reason(tmp_path):
    engine = _fake_engine(tmp_path, None)
    onnx_path = tmp_path / "model.onnx"
    onnx_path.write_bytes(b"")
    metadata_path(onnx_path).write_text(metadata_path(engine).read_text())
    with pytest.raises(EdgeKDError, match="EfficientNMS_TRT plugin, which only TensorRT runs"):
        open_runner(onnx_path, "ort-cpu")


@pytest.mark.skipif(bool(TENSORRT_PROBLEMS), reason="needs TensorRT and a CUDA GPU: " + "; ".join(TENSORRT_PROBLEMS))
def test_engine_build_and_run_matches_onnxruntime(tmp_path, tiny_kitti):
    import dataclasses

    import torch

    from edgekd.data.loader import load_dataset
    from edgekd.export.onnx import build_onnx
    from edgekd.export.tensorrt import build_engine
    from edgekd.models.detector import DetectorConfig
    from edgekd.models.zoo import build_detector
    from edgekd.runtime import predict_artifact
    from edgekd.runtime.metadata import ExportMetadata, write_metadata

    torch.manual_seed(0)
    classes = ("Car", "Pedestrian", "Cyclist")
    detector = build_detector(DetectorConfig("fcos_mobilenet_v3_lite", classes, (64, 160))).eval()
    batch = BatchSpec(1, 2, 4)
    exported = build_onnx(detector, "onnx", batch, 17)
    onnx_path = tmp_path / "model.onnx"
    onnx_path.write_bytes(exported.model.SerializeToString())
    config = detector.config
    meta = ExportMetadata(
        config.name, "fcos", list(classes), [64, 160], list(config.mean), list(config.std), 0.05, 0.5, 100, 1000,
        "onnx", batch, exported.num_candidates, 17,
    )  # fmt: skip
    write_metadata(onnx_path, meta)
    engine = tmp_path / "model.engine"
    info = build_engine(onnx_path, None, engine, EngineOptions(timing_cache=tmp_path / "t.cache"), batch, (64, 160))
    write_metadata(engine, dataclasses.replace(meta, tensorrt=info))
    assert (tmp_path / "t.cache").stat().st_size > 0
    val = load_dataset(tiny_kitti, "val", classes=classes)
    on_gpu = predict_artifact(engine, val, batch=2)
    on_cpu = predict_artifact(onnx_path, val, batch=2)
    for image_id, expected in on_cpu.items():
        got = on_gpu[image_id]
        assert len(got.scores) == len(expected.scores)
        np.testing.assert_allclose(got.scores, expected.scores, atol=1e-3)
