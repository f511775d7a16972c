"""Shared fixtures: a tiny synthetic KITTI-format dataset rendered once per test session."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def tiny_kitti(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """12 training and 6 validation images at 320x96 (synthetic, KITTI format)."""
    from edgekd.data.synth import render_dataset

    root = tmp_path_factory.mktemp("tiny_kitti")
    render_dataset(root, 12, 6, size=(320, 96), seed=3, workers=1, progress=False)
    return root
