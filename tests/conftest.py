"""Shared fixtures: a tiny synthetic KITTI-format dataset rendered once per test session."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture(scope="module")
def one_torch_thread():
    """One intra-op torch thread for a test module (`pytestmark = pytest.mark.usefixtures("one_torch_thread")`):
    tiny tensors gain nothing from more on a small shared CI machine, and float sums then run in one order in every
    run (exact-resume tests compare weights bit for bit)."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="session")
def tiny_kitti(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """12 training and 6 validation images at 320x96 (synthetic, KITTI format)."""
    from edgekd.data.synth import render_dataset

    root = tmp_path_factory.mktemp("tiny_kitti")
    render_dataset(root, 12, 6, size=(320, 96), seed=3, workers=1, progress=False)
    return root


@pytest.fixture(scope="session")
def tiny_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An untrained retinanet_mobilenet_v3_lite checkpoint at 160x64 for KITTI's three classes (shared by the
    bad-input corpus: tests that need a real checkpoint but not a trained one)."""
    import torch

    from edgekd.models.checkpoint import atomic_torch_save, detector_payload
    from edgekd.models.detector import DetectorConfig
    from edgekd.models.zoo import build_detector

    torch.manual_seed(0)
    config = DetectorConfig("retinanet_mobilenet_v3_lite", ("Car", "Pedestrian", "Cyclist"), (64, 160))
    detector = build_detector(config)
    path = tmp_path_factory.mktemp("tiny_checkpoint") / "run" / "best.pt"
    atomic_torch_save(detector_payload(detector.eval()), path)
    return path


@pytest.fixture(scope="session")
def tiny_export(tiny_checkpoint: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """`edgekd export` of `tiny_checkpoint` (static batch 1, host NMS): the folder holding model.onnx + metadata."""
    from typer.testing import CliRunner

    from edgekd.cli import app

    out = tmp_path_factory.mktemp("tiny_export") / "student"
    result = CliRunner().invoke(app, ["export", str(tiny_checkpoint), "-o", str(out), "--quiet"])
    assert result.exit_code == 0, result.output
    return out
