"""The PyTorch backend on CPU: a tiny checkpoint benchmarked end to end (structure, not timings)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from edgekd.bench.latency import BenchOptions, run_bench
from edgekd.bench.schema import validate_bench_payload
from edgekd.data.loader import load_dataset
from edgekd.models.checkpoint import atomic_torch_save, detector_payload
from edgekd.models.complexity import count_parameters, gflops
from edgekd.models.detector import DetectorConfig
from edgekd.models.inference import predict_dataset as predict_detector
from edgekd.models.zoo import build_detector
from edgekd.runtime import RunnerOptions, open_runner, predict_dataset

CLASSES = ("Car", "Pedestrian", "Cyclist")


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    torch.manual_seed(0)
    detector = build_detector(DetectorConfig("retinanet_mobilenet_v3_lite", CLASSES, (32, 64))).eval()
    torch.nn.init.constant_(detector.head_module.classification_head.cls_logits.bias, -1.0)  # scores above 0.05
    path = tmp_path_factory.mktemp("runs") / "student" / "best.pt"
    atomic_torch_save(detector_payload(detector), path)
    return path, detector


def test_checkpoint_record(checkpoint):
    path, detector = checkpoint
    payload = run_bench(
        [path], BenchOptions(batches=(1,), warmup=0, iters=2, backend_options=RunnerOptions(device="cpu"))
    ).to_dict()
    validate_bench_payload(payload, "payload")
    record = payload["records"][0]
    assert (record["backend"], record["kind"], record["timer"], record["run"]) == (
        "torch",
        "checkpoint",
        "perf_counter",
        "student",
    )
    assert record["params"] == count_parameters(detector)
    assert record["gflops"] == pytest.approx(gflops(detector))
    assert record["role"] == "student" and record["compiled"] is False
    assert set(record["phases"]) == {"compute", "end_to_end"}
    assert len(record["source_sha256"]) == 64


def test_torch_pipeline_predicts_like_eval(checkpoint, tiny_kitti):
    path, detector = checkpoint
    dataset = load_dataset(tiny_kitti, "val", classes=CLASSES)
    with open_runner(path, "torch", RunnerOptions(device="cpu")) as runner:
        mine = predict_dataset(runner, dataset, 4)
    reference = predict_detector(detector, dataset, batch_size=4)
    assert sum(len(d.scores) for d in reference.values()) > 0
    for image_id, detections in reference.items():
        np.testing.assert_allclose(mine[image_id].boxes, detections.boxes, atol=1e-4)
        np.testing.assert_array_equal(mine[image_id].labels, detections.labels)
