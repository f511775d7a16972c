"""The distillation training objective: student detection losses + weighted KD losses against a frozen teacher.

Teacher and student see the same preprocessed batch. The teacher stays in eval mode with every parameter frozen
(BN statistics untouched); for gradient-guided KD its detection loss is differentiated w.r.t. its *features* only.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from edgekd.data.torch_dataset import DetectionDataset
from edgekd.distill.losses import build_loss
from edgekd.distill.losses.base import EpochContext, KDInputs
from edgekd.distill.pairing import check_losses
from edgekd.models.detector import Detector, Targets
from edgekd.train.objective import DetectionObjective, StepInfo


def freeze(teacher: Detector) -> Detector:
    teacher.eval()
    for parameter in teacher.parameters():
        parameter.requires_grad_(False)
    return teacher


class DistillObjective(DetectionObjective):
    """`detector` is the student; `losses` (name -> KDLoss) own their adaptation layers.

    Building it validates every loss's options and checks that each loss can pair this teacher and student
    (`pairing.check_losses`); errors name `source` (the recipe file) when given. Each step computes what some loss
    declares it needs (`KDLoss.needs_teacher_feature_grads`, `KDLoss.needs_logits`); before each epoch every loss's
    `on_epoch_start` sees the pair and `train_images` (un-augmented training images at the input size).
    """

    def __init__(
        self,
        student: Detector,
        teacher: Detector,
        loss_options: dict[str, dict],
        train_images: DetectionDataset | None = None,
        source: str | None = None,
    ) -> None:
        super().__init__(student)
        self.teacher = freeze(teacher)
        self.train_images = train_images
        student_channels = [student.out_channels] * len(student.strides)
        teacher_channels = [teacher.out_channels] * len(teacher.strides)
        self.losses = nn.ModuleDict(
            {
                name: build_loss(name, options, student_channels, teacher_channels, source)
                for name, options in loss_options.items()
            }
        )
        check_losses(teacher, student, self.losses, source)

    def train(self, mode: bool = True) -> DistillObjective:
        super().train(mode)
        self.teacher.eval()
        return self

    def forward(self, images: Tensor, targets: Targets, info: StepInfo) -> tuple[Tensor, dict[str, float]]:
        student, teacher = self.detector, self.teacher
        x = student.preprocess(images)
        student_feats = student.features(x)
        student_head = student.head(student_feats)
        losses = student.loss(student_head, student_feats, targets)
        with torch.no_grad():
            teacher_feats = teacher.features(x)
        inputs = KDInputs(
            student_feats=student_feats,
            teacher_feats=teacher_feats,
            strides=list(student.strides),
            image_size=tuple(student.config.input_size),
            gt_boxes=[t["boxes"] for t in targets],
            gt_labels=[t["labels"] for t in targets],
            priors=student.priors(student_feats),
            anchors_per_location=student.anchors_per_location(),
            step=info.step,
            epoch=info.epoch,
            max_epochs=info.max_epochs,
        )
        if any(loss.needs_teacher_feature_grads for loss in self.losses.values()):
            inputs.teacher_feature_grads = self.teacher_feature_grads(teacher_feats, targets)
        if any(loss.needs_logits for loss in self.losses.values()):
            logits = student.paired_logits(student_head, student_feats, teacher, teacher_feats)
            inputs.student_logits, inputs.teacher_logits = logits.student, logits.teacher
            inputs.logit_boxes, inputs.logit_activation = logits.boxes, logits.activation
        parts = {name: float(value.detach()) for name, value in losses.items()}
        total = sum(losses.values())
        for name, loss in self.losses.items():
            value, logged = loss(inputs)
            total = total + value
            parts[f"loss_{name}"] = float(value.detach())
            parts.update({f"{name}/{key}": item for key, item in logged.items()})
        return total, parts

    def teacher_feature_grads(self, teacher_feats: list[Tensor], targets: Targets) -> list[Tensor]:
        """d(teacher detection loss against the GT)/d(teacher FPN features), same batch; weights untouched."""
        leaves = [f.detach().float().requires_grad_(True) for f in teacher_feats]
        with torch.enable_grad():
            losses = self.teacher.loss(self.teacher.head(leaves), leaves, targets)
            grads = torch.autograd.grad(sum(losses.values()), leaves, allow_unused=True)
        return [torch.zeros_like(leaf) if g is None else g.detach() for leaf, g in zip(leaves, grads)]

    def on_epoch_start(self, epoch: int) -> None:
        """Every loss's `on_epoch_start` (global KD regenerates its prototypes), with the pair and training images."""
        context = EpochContext(self.detector, self.teacher, self.train_images)
        for loss in self.losses.values():
            loss.on_epoch_start(epoch, context)

    def extra_state(self) -> dict:
        return {"losses": self.losses.state_dict()}

    def load_extra_state(self, state: dict) -> None:
        self.losses.load_state_dict(state["losses"])
