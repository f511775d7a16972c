"""KD losses declare what they need (docs/kd/README.md section 2): a loss registered only in `LOSSES`, with no
edit to the objective, gets teacher feature gradients, paired class logits and its epoch-start hook."""

from __future__ import annotations

from typing import ClassVar

import pytest
import torch

from edgekd.data.records import Dataset
from edgekd.data.torch_dataset import DetectionDataset
from edgekd.distill.losses import LOSSES, KDInputs, KDLoss, Option
from edgekd.distill.losses.base import EpochContext
from edgekd.distill.objective import DistillObjective
from edgekd.models.detector import DetectorConfig
from edgekd.models.two_stage import LOGIT_PROPOSALS_PER_IMAGE
from edgekd.models.zoo import build_detector
from edgekd.train.objective import StepInfo

CLASSES = ("Car", "Pedestrian", "Cyclist")
SIZE = (64, 160)
TARGETS = [
    {"boxes": torch.tensor([[10.0, 5.0, 60.0, 50.0]]), "labels": torch.tensor([0])},
    {"boxes": torch.tensor([[70.0, 4.0, 150.0, 60.0]]), "labels": torch.tensor([1])},
]


class _Probe(KDLoss):
    """Records what the objective hands it; the loss value is 0 on the student's maps."""

    name = "probe"
    options: ClassVar[dict[str, Option]] = {"weight": Option(1.0, (float,))}
    seen: ClassVar[list] = []

    def __init__(self, student_channels: list[int], teacher_channels: list[int], **options: object) -> None:
        super().__init__(student_channels, teacher_channels, options)

    def compute(self, inputs: KDInputs) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        type(self).seen.append(inputs)
        return inputs.student_feats[0].sum() * 0.0, {}

    def on_epoch_start(self, epoch: int, context: EpochContext) -> None:
        type(self).seen.append((epoch, context))


class _NeedsAll(_Probe):
    name = "needs_all"
    needs_teacher_feature_grads = True
    needs_logits = True


def _pair(family: str, monkeypatch: pytest.MonkeyPatch, losses: list[type[KDLoss]]) -> DistillObjective:
    for cls in losses:
        monkeypatch.setitem(LOSSES, cls.name, cls)
        monkeypatch.setattr(cls, "seen", [])
    torch.manual_seed(0)
    name = f"{family}_mobilenet_v3_lite"
    teacher, student = (build_detector(DetectorConfig(name, CLASSES, SIZE)) for _ in range(2))
    return DistillObjective(student, teacher, {cls.name: {} for cls in losses})


def test_a_loss_that_declares_nothing_gets_no_gradients_or_logits(monkeypatch):
    objective = _pair("retinanet", monkeypatch, [_Probe])
    objective(torch.rand(2, 3, *SIZE) * 255, TARGETS, StepInfo(0, 0, 1))
    (inputs,) = _Probe.seen
    assert inputs.teacher_feature_grads is None and inputs.student_logits is None and inputs.logit_boxes is None


@pytest.mark.parametrize("family", ["retinanet", "fcos"])
def test_one_stage_pair_gets_gradients_and_logits_on_every_prior(monkeypatch, family):
    objective = _pair(family, monkeypatch, [_NeedsAll])
    objective(torch.rand(2, 3, *SIZE) * 255, TARGETS, StepInfo(0, 0, 1))
    (inputs,) = _NeedsAll.seen
    assert [g.shape for g in inputs.teacher_feature_grads] == [t.shape for t in inputs.teacher_feats]
    assert any(float(g.abs().sum()) > 0 for g in inputs.teacher_feature_grads)
    priors = torch.cat(inputs.priors)
    assert inputs.logit_activation == "sigmoid"
    assert len(inputs.student_logits) == len(inputs.teacher_logits) == len(inputs.logit_boxes) == 2
    for student, teacher, boxes in zip(inputs.student_logits, inputs.teacher_logits, inputs.logit_boxes):
        assert student.shape == teacher.shape == (priors.shape[0], len(CLASSES))
        assert torch.equal(boxes, priors)
        assert student.requires_grad and not teacher.requires_grad


def test_two_stage_pair_gets_logits_on_the_student_proposals(monkeypatch):
    objective = _pair("fasterrcnn", monkeypatch, [_NeedsAll])
    objective(torch.rand(2, 3, *SIZE) * 255, TARGETS, StepInfo(0, 0, 1))
    (inputs,) = _NeedsAll.seen
    assert inputs.logit_activation == "softmax"
    for student, teacher, boxes in zip(inputs.student_logits, inputs.teacher_logits, inputs.logit_boxes):
        assert 0 < boxes.shape[0] <= LOGIT_PROPOSALS_PER_IMAGE
        assert student.shape == teacher.shape == (boxes.shape[0], len(CLASSES) + 1)  # background + classes
        assert not boxes.requires_grad and not teacher.requires_grad and student.requires_grad


def test_every_loss_sees_the_epoch_start_with_the_pair_and_training_images(monkeypatch, tmp_path):
    objective = _pair("retinanet", monkeypatch, [_Probe])
    images = DetectionDataset(Dataset(tmp_path, "train", CLASSES, [], "kitti"), SIZE)
    objective.train_images = images
    objective.on_epoch_start(3)
    ((epoch, context),) = _Probe.seen
    assert epoch == 3
    assert context.student is objective.detector and context.teacher is objective.teacher
    assert context.train_images is images


def test_registered_losses_declare_their_needs():
    declared = {name: (cls.needs_teacher_feature_grads, cls.needs_logits) for name, cls in LOSSES.items()}
    assert declared == {
        "fgfi": (False, False),
        "ssim": (False, False),
        "gkd": (True, False),
        "bmfi": (False, False),
        "global": (False, True),
        "fitnet": (False, False),
        "logits": (False, True),
    }
