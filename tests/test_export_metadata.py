"""Export metadata: batch specs, the JSON round trip, clear errors for missing or malformed files."""

from __future__ import annotations

import json

import pytest

from edgekd.errors import EdgeKDError
from edgekd.runtime.metadata import BatchSpec, ExportMetadata, metadata_path, read_metadata, write_metadata


def _metadata(nms: str = "onnx", batch: BatchSpec | None = None) -> ExportMetadata:
    meta = ExportMetadata(
        model="retinanet_mobilenet_v3_lite",
        family="retinanet",
        classes=["Car", "Pedestrian", "Cyclist"],
        input_size=[64, 160],
        mean=[0.485, 0.456, 0.406],
        std=[0.229, 0.224, 0.225],
        score_thresh=0.05,
        nms_thresh=0.5,
        max_detections=100,
        topk_candidates=1000,
        nms=nms,
        batch=batch or BatchSpec.static(2),
        num_candidates=200,
        opset=17,
        source={"checkpoint": "runs/x/best.pt", "sha256": "ab" * 32},
    )
    meta.outputs = meta.describe_outputs()
    return meta


def test_batch_spec_parsing():
    assert BatchSpec.parse_dynamic("1:4:8") == BatchSpec(1, 4, 8)
    assert BatchSpec.parse_dynamic("1:4:8").dynamic and not BatchSpec.static(3).dynamic
    for bad in ("1:4", "4:2:8", "0:1:2", "a:b:c"):
        with pytest.raises(EdgeKDError, match="--dynamic-batch"):
            BatchSpec.parse_dynamic(bad)
    with pytest.raises(EdgeKDError, match="--batch 0"):
        BatchSpec.static(0)


def test_metadata_round_trip(tmp_path):
    model = tmp_path / "model.onnx"
    meta = _metadata()
    assert write_metadata(model, meta) == tmp_path / "model.onnx.json" == metadata_path(model)
    assert read_metadata(model) == meta


def test_output_layout_per_nms_mode():
    # 200 candidates x 3 classes = 600 enter top-k (min(1000, 600)); max_detections = 100 rows come out
    onnx_mode = {o["name"]: o for o in _metadata("onnx").describe_outputs()}
    assert onnx_mode["detection_boxes"]["shape"] == [2, 100, 4]
    assert onnx_mode["num_detections"]["dtype"] == "int32"
    raw = {o["name"]: o for o in _metadata("none", BatchSpec(1, 2, 4)).describe_outputs()}
    assert raw["scores"]["shape"] == ["batch", 200, 3]


def test_read_metadata_names_the_missing_file(tmp_path):
    with pytest.raises(EdgeKDError, match="model.engine.json: metadata not found"):
        read_metadata(tmp_path / "model.engine")


def test_read_metadata_names_a_bad_field(tmp_path):
    model = tmp_path / "model.onnx"
    data = _metadata().to_dict()
    data["nms"] = "fast"
    metadata_path(model).write_text(json.dumps(data))
    with pytest.raises(EdgeKDError, match="field 'nms'"):
        read_metadata(model)
    metadata_path(model).write_text(json.dumps({"format": "something-else"}))
    with pytest.raises(EdgeKDError, match="not edgekd export metadata"):
        read_metadata(model)
