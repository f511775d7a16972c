"""`edgekd distill` end to end on tiny data: every loss trains through the CLI, the teacher stays untouched,
the student checkpoint stands alone, resume is exact, and impossible setups fail before training."""

from __future__ import annotations

import pytest
import torch
import yaml
from typer.testing import CliRunner

from edgekd.cli import app
from edgekd.data.loader import load_dataset
from edgekd.distill.objective import DistillObjective
from edgekd.errors import EdgeKDError
from edgekd.models.checkpoint import atomic_torch_save, detector_payload
from edgekd.models.detector import DetectorConfig
from edgekd.models.zoo import build_detector
from edgekd.train.objective import StepInfo
from edgekd.train.trainer import Trainer

runner = CliRunner()
CLASSES = ("Car", "Pedestrian", "Cyclist")
SIZE = (64, 160)
ALL_LOSSES = {
    "fgfi": {"weight": 0.01},
    "ssim": {"weight": 2.0},
    "gkd": {"weight": 0.01},
    "bmfi": {"lambda_": 0.00001},
    "global": {"pgm_min_size": 4, "pgm_max_samples": 8},
    "fitnet": {"weight": 1.0},
    "logits": {"weight": 1.0},
}


def _teacher(tmp_path, name="retinanet_resnet18_lite"):
    torch.manual_seed(0)
    detector = build_detector(DetectorConfig(name, CLASSES, SIZE))
    path = tmp_path / f"{name}.pt"
    atomic_torch_save(detector_payload(detector), path)
    return path


def _recipe(tmp_path, losses, **extra):
    path = tmp_path / f"recipe{len(list(tmp_path.glob('recipe*.yaml')))}.yaml"
    path.write_text(yaml.safe_dump({"losses": losses, "schedule": {"epochs": 1, "batch": 4}, **extra}))
    return path


def _args(teacher, recipe, data, out, student="retinanet_mobilenet_v3_lite"):
    return ["distill", "--teacher", str(teacher), "--student", student, "--recipe", str(recipe),
            "--data", str(data), "-o", str(out), "--device", "cpu", "--quiet"]  # fmt: skip


@pytest.mark.parametrize(
    ("teacher_name", "student"),
    [
        ("retinanet_resnet18_lite", "retinanet_mobilenet_v3_lite"),
        ("fasterrcnn_resnet18_lite", "fasterrcnn_mobilenet_v3_lite"),
    ],
)
def test_every_loss_trains_and_the_student_stands_alone(tiny_kitti, tmp_path, teacher_name, student):
    teacher = _teacher(tmp_path, teacher_name)
    out = tmp_path / "run"
    result = runner.invoke(app, _args(teacher, _recipe(tmp_path, ALL_LOSSES), tiny_kitti, out, student))
    assert result.exit_code == 0, result.output
    payload = torch.load(out / "best.pt", weights_only=True)
    plain = build_detector(DetectorConfig(student, CLASSES, SIZE))
    assert set(payload["model"]) == set(plain.state_dict())  # adaptation layers dropped
    assert payload["recipe"]["losses"].keys() == ALL_LOSSES.keys()
    last = torch.load(out / "last.pt", weights_only=True)
    assert any(key.startswith("fgfi.") for key in last["objective"]["losses"])  # kept for resume
    for name in ALL_LOSSES:
        assert f"loss_{name}" in last["history"][0]
    assert runner.invoke(app, ["eval", str(out / "best.pt"), "--data", str(tiny_kitti)]).exit_code == 0


def test_teacher_stays_frozen_and_gradients_reach_only_the_student(tiny_kitti):
    torch.manual_seed(0)
    teacher = build_detector(DetectorConfig("retinanet_resnet18_lite", CLASSES, SIZE))
    before = {k: v.clone() for k, v in teacher.state_dict().items()}
    student = build_detector(DetectorConfig("retinanet_mobilenet_v3_lite", CLASSES, SIZE))
    objective = DistillObjective(student, teacher, ALL_LOSSES).train()
    assert not teacher.training
    images = torch.rand(2, 3, *SIZE) * 255
    targets = [
        {"boxes": torch.tensor([[10.0, 10.0, 60.0, 40.0]]), "labels": torch.tensor([0])},
        {"boxes": torch.zeros(0, 4), "labels": torch.zeros(0, dtype=torch.int64)},
    ]
    total, parts = objective(images, targets, StepInfo(step=200, epoch=0, max_epochs=1))
    total.backward()
    assert torch.isfinite(total) and all(parts[f"loss_{name}"] == parts[f"loss_{name}"] for name in ALL_LOSSES)
    assert all(p.grad is None for p in teacher.parameters())
    assert any(p.grad is not None for p in objective.losses.parameters())
    for key, value in teacher.state_dict().items():
        assert torch.equal(before[key], value), key  # BN running statistics untouched too


def test_distill_resume_is_exact(tiny_kitti, tmp_path, monkeypatch):
    teacher = _teacher(tmp_path)
    recipe = tmp_path / "r.yaml"
    recipe.write_text(yaml.safe_dump({"losses": {"fgfi": {}, "ssim": {}}, "schedule": {"epochs": 2, "batch": 4}}))
    straight, interrupted = tmp_path / "a", tmp_path / "b"
    assert runner.invoke(app, _args(teacher, recipe, tiny_kitti, straight)).exit_code == 0
    original = Trainer._train_epoch

    def stop_in_second_epoch(self, epoch):
        if epoch == 1:
            raise KeyboardInterrupt
        return original(self, epoch)

    monkeypatch.setattr(Trainer, "_train_epoch", stop_in_second_epoch)
    runner.invoke(app, _args(teacher, recipe, tiny_kitti, interrupted))
    monkeypatch.setattr(Trainer, "_train_epoch", original)
    result = runner.invoke(app, [*_args(teacher, recipe, tiny_kitti, interrupted), "--resume"])
    assert result.exit_code == 0, result.output
    expected = torch.load(straight / "last.pt", weights_only=True)
    actual = torch.load(interrupted / "last.pt", weights_only=True)
    for key in expected["model"]:
        assert torch.equal(expected["model"][key], actual["model"][key]), key
    for key in expected["objective"]["losses"]:
        assert torch.equal(expected["objective"]["losses"][key], actual["objective"]["losses"][key]), key


def test_impossible_setups_fail_before_training(tiny_kitti, tmp_path):
    teacher = _teacher(tmp_path)
    recipe = _recipe(tmp_path, {"fgfi": {}})
    cases = [
        (_args(teacher, recipe, tiny_kitti, tmp_path / "o1", "fasterrcnn_mobilenet_v3_lite"), "strides"),
        (_args(teacher, _recipe(tmp_path, {"fgfi": {"psy": 0.5}}), tiny_kitti, tmp_path / "o2"), "psy"),
        (_args(teacher, _recipe(tmp_path, {"mimic": {}}), tiny_kitti, tmp_path / "o3"), "unknown loss 'mimic'"),
        (_args(teacher, _recipe(tmp_path, {"fgfi": {}}, lr=0.1), tiny_kitti, tmp_path / "o4"), "unknown key"),
        (_args(tmp_path / "missing.pt", recipe, tiny_kitti, tmp_path / "o5"), "checkpoint not found"),
    ]
    for args, message in cases:
        result = runner.invoke(app, args)
        assert isinstance(result.exception, EdgeKDError), result.output
        assert message in str(result.exception)
    assert not any((tmp_path / f"o{i}").exists() for i in range(1, 6))


def test_teacher_with_other_classes_is_refused(tiny_kitti, tmp_path):
    detector = build_detector(DetectorConfig("retinanet_resnet18_lite", ("Car", "Truck"), SIZE))
    path = tmp_path / "other.pt"
    atomic_torch_save(detector_payload(detector), path)
    result = runner.invoke(app, _args(path, _recipe(tmp_path, {"fgfi": {}}), tiny_kitti, tmp_path / "o"))
    assert "detects ['Car', 'Truck']" in str(result.exception)
    assert load_dataset(tiny_kitti, "train").classes == CLASSES


@pytest.mark.parametrize(("teacher_name", "warned"), [("retinanet_resnet18_lite", False), ("retinanet_resnet18", True)])
def test_inheriting_reports_what_it_copied_and_warns_when_no_weight_fits(tiny_kitti, tmp_path, teacher_name, warned):
    teacher = _teacher(tmp_path, teacher_name)
    recipe = _recipe(tmp_path, {"fitnet": {"weight": 0.0}}, inherit=True)
    args = [a for a in _args(teacher, recipe, tiny_kitti, tmp_path / "run") if a != "--quiet"]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    output = " ".join(result.output.split())
    assert "neck and head tensors copied from the teacher" in output
    assert ("no neck or head weight inherited" in output) == warned
