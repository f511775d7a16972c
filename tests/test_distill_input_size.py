"""Recipes follow the teacher: a shipped recipe (no img_size) distils against teachers of different input sizes,
the student takes the teacher's size, and `--img-size` equal to the teacher's is accepted."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import yaml
from usererror import run_edgekd

from edgekd.models.checkpoint import atomic_torch_save, detector_payload
from edgekd.models.detector import DetectorConfig
from edgekd.models.zoo import build_detector

REPO = Path(__file__).resolve().parents[1]
CLASSES = ("Car", "Pedestrian", "Cyclist")
STUDENT = "retinanet_mobilenet_v3_lite"


def test_shipped_recipes_set_no_input_size():
    recipes = sorted((REPO / "recipes").glob("*.yaml"))
    assert recipes
    for path in recipes:
        assert "img_size" not in yaml.safe_load(path.read_text()), path


@pytest.mark.parametrize(("width", "height", "extra"), [(160, 64, ()), (192, 64, ("--img-size", "192x64"))])
def test_shipped_recipe_distils_at_the_teachers_size(width, height, extra, tiny_kitti, tmp_path, capsys, monkeypatch):
    torch.manual_seed(0)
    teacher = build_detector(DetectorConfig("retinanet_resnet18_lite", CLASSES, (height, width)))
    teacher_path = tmp_path / "teacher.pt"
    atomic_torch_save(detector_payload(teacher.eval()), teacher_path)
    out = tmp_path / "student"
    outcome = run_edgekd(
        capsys, monkeypatch, "distill", "--teacher", teacher_path, "--student", STUDENT,
        "--recipe", REPO / "recipes" / "fgfi.yaml", "--data", tiny_kitti, "-o", out,
        "--epochs", "1", "--batch", "4", "--device", "cpu", "--quiet", *extra,
    )  # fmt: skip
    assert outcome.code == 0, outcome.stderr + outcome.stdout
    payload = torch.load(out / "best.pt", weights_only=True)
    assert payload["config"]["name"] == STUDENT
    assert tuple(payload["config"]["input_size"]) == (height, width)
