"""The typed parity report keeps the parity.json layout, and judges an export by its tolerances."""

from __future__ import annotations

import numpy as np
import pytest

from edgekd.export.parity import ApRow, ApSection, ParityReport, RawDifference, TensorRTStatus, report_markdown

METRICS = {"AP": 40.0, "AP50": 60.0, "kitti_moderate": 30.0}


def _report(**fields) -> ParityReport:
    stats = RawDifference()
    stats.add(np.array([0.5, 0.25], np.float32), np.array([0.001], np.float32))
    stats.images = 2
    return ParityReport(
        "runs/s/best.pt", "ab" * 32, "export/s/model.onnx", "none", "static 1", 17, stats, "2 validation images",
        raw_tolerance=1.0, **fields,
    )  # fmt: skip


def test_report_keeps_the_parity_json_layout_and_verdict():
    reference = ApRow.measured("PyTorch eager FP32", METRICS, None, False)
    exported = ApRow.measured("ONNX", {"AP": 39.95, "AP50": 59.0, "kitti_moderate": 30.2}, reference, True)
    report = _report(ap=ApSection("data (val)", 2, [reference, exported]))
    report.tensorrt = TensorRTStatus("not built here: missing TensorRT", "trtexec --onnx=m.onnx")
    data = report.to_dict()
    assert list(data) == [
        "checkpoint", "checkpoint_sha256", "model", "nms", "batch", "opset", "raw", "notes", "ap", "passed", "tensorrt"
    ]  # fmt: skip
    assert data["raw"] == {
        "inputs": "2 validation images",
        "images": 2,
        "boxes_max_abs": 0.5,
        "boxes_mean_abs": 0.375,
        "scores_max_abs": pytest.approx(0.001),
        "scores_mean_abs": pytest.approx(0.001),
        "tolerance": 1.0,
        "passed": True,
    }
    assert data["ap"]["rows"][0] == {"name": "PyTorch eager FP32", **METRICS}
    row = data["ap"]["rows"][1]
    assert row["delta"] == pytest.approx({"AP": -0.05, "AP50": -1.0, "kitti_moderate": 0.2})
    assert (row["tolerance"], row["passed"]) == (0.1, False)  # KITTI Moderate moved 0.2 > 0.1 points
    assert data["passed"] is False and report.passed is False
    assert data["tensorrt"] == {"status": "not built here: missing TensorRT", "trtexec": "trtexec --onnx=m.onnx"}
    assert "**FAILED**" in report_markdown(report) and "| ONNX | 39.95 | 59.00 | 30.20 | -0.05 | 0.20 | FAIL |" in (
        report_markdown(report)
    )


def test_report_without_data_says_why_ap_is_missing():
    report = _report(ap_skipped="AP not measured: no --data given")
    data = report.to_dict()
    assert data["ap"] == {"skipped": "AP not measured: no --data given"} and data["passed"] is True
    assert "AP not measured: no --data given" in report_markdown(report)
