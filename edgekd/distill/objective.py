"""The distillation training objective: student detection losses + weighted KD losses against a frozen teacher.

Teacher and student see the same preprocessed batch. The teacher stays in eval mode with every parameter frozen
(BN statistics untouched); for gradient-guided KD its detection loss is differentiated w.r.t. its *features* only.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from edgekd.data.torch_dataset import DetectionDataset
from edgekd.distill.losses import build_loss
from edgekd.distill.losses.base import KDInputs
from edgekd.distill.losses.global_prototypes import (
    batch_instance_features,
    pgm_candidates,
    sample_images_per_class,
)
from edgekd.distill.pairing import check_losses
from edgekd.models.detector import Detector, Targets
from edgekd.models.two_stage import FasterRCNNDetector
from edgekd.train.objective import DetectionObjective, StepInfo

_NEEDS_TEACHER_GRADS = {"gkd"}
_NEEDS_LOGITS = {"logits", "global"}
_LOGIT_PROPOSALS_PER_IMAGE = 128


def candidate_labels(source: DetectionDataset, index: int, min_size: float) -> Tensor:
    """Labels of image `index`'s prototype candidates (`pgm_candidates` on its boxes in network pixels, as
    `source[index]` scales them), read from the records without decoding the image."""
    record = source.dataset.records[index]
    boxes, labels = record.targets(source.dataset.classes)
    height, width = source.input_size
    scale = torch.tensor([width / record.width, height / record.height], dtype=torch.float32).repeat(2)
    return torch.from_numpy(labels)[pgm_candidates(torch.from_numpy(boxes) * scale, min_size)]


def _per_level(batches: list[list[Tensor]], detector: Detector, device: torch.device) -> list[Tensor]:
    """Per-batch, per-level instance features joined per level; (0, C) per level when there were no batches."""
    if not batches:
        return [torch.zeros(0, detector.out_channels, device=device) for _ in detector.strides]
    return [torch.cat(level) for level in zip(*batches)]


def freeze(teacher: Detector) -> Detector:
    teacher.eval()
    for parameter in teacher.parameters():
        parameter.requires_grad_(False)
    return teacher


class DistillObjective(DetectionObjective):
    """`detector` is the student; `losses` (name -> KDLoss) own their adaptation layers.

    Building it validates every loss's options and checks that each loss can pair this teacher and student
    (`pairing.check_losses`); errors name `source` (the recipe file) when given.
    """

    def __init__(
        self,
        student: Detector,
        teacher: Detector,
        loss_options: dict[str, dict],
        prototype_source: DetectionDataset | None = None,
        source: str | None = None,
    ) -> None:
        super().__init__(student)
        self.teacher = freeze(teacher)
        self.prototype_source = prototype_source
        self._teacher_instances: tuple[Tensor, list[Tensor]] | None = None
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
        if _NEEDS_TEACHER_GRADS & set(self.losses):
            inputs.teacher_feature_grads = self.teacher_feature_grads(teacher_feats, targets)
        if _NEEDS_LOGITS & set(self.losses):
            self.add_logits(inputs, student_head, student_feats, teacher_feats)
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

    def add_logits(
        self, inputs: KDInputs, student_head: dict, student_feats: list[Tensor], teacher_feats: list[Tensor]
    ) -> None:
        """Class logits of student and teacher on the same boxes: all priors (one-stage) or the student's
        top RPN proposals (two-stage, softmax over background + classes)."""
        student, teacher = self.detector, self.teacher
        if isinstance(student, FasterRCNNDetector):
            proposals = [p[:_LOGIT_PROPOSALS_PER_IMAGE].detach() for p in student.proposals(student_head)]
            student_logits = student.roi_outputs(student_feats, proposals)[0]
            with torch.no_grad():
                teacher_logits = teacher.roi_outputs(teacher_feats, proposals)[0]
            sizes = [p.shape[0] for p in proposals]
            inputs.student_logits = list(student_logits.split(sizes))
            inputs.teacher_logits = list(teacher_logits.split(sizes))
            inputs.logit_boxes = proposals
            inputs.logit_activation = "softmax"
            return
        with torch.no_grad():
            teacher_logits = teacher.class_logits(teacher.head(teacher_feats))
        priors = torch.cat(inputs.priors)
        inputs.student_logits = list(student.class_logits(student_head).unbind(0))
        inputs.teacher_logits = list(teacher_logits.unbind(0))
        inputs.logit_boxes = [priors] * len(inputs.student_logits)
        inputs.logit_activation = "sigmoid"

    def on_epoch_start(self, epoch: int) -> None:
        """Global KD's Prototype Generation Module runs every `pgm_every` epochs (Tang et al., ECCV 2022)."""
        if "global" not in self.losses or self.prototype_source is None:
            return
        if epoch % self.losses["global"].config["pgm_every"] == 0:
            self.losses["global"].fit_prototypes(*self.instance_features())

    @torch.no_grad()
    def instance_features(self) -> tuple[Tensor, list[Tensor], list[Tensor]]:
        """Labels and per-level student / teacher features of the prototype candidates: GT boxes larger than
        `pgm_min_size` on un-augmented training images, for each class from up to `pgm_max_samples` images
        holding such a box of that class, drawn with a fixed seed (`sample_images_per_class`), so every epoch
        reads the same instances and the frozen teacher's features are computed once and cached."""
        cfg = self.losses["global"].config
        student, teacher = self.detector, self.teacher
        source = self.prototype_source
        candidates = [candidate_labels(source, index, cfg["pgm_min_size"]) for index in range(len(source))]
        per_class = sample_images_per_class(candidates, cfg["num_classes"], cfg["pgm_max_samples"])
        wanted: dict[int, list[int]] = {}
        for class_index, images in enumerate(per_class):
            for index in images.tolist():
                wanted.setdefault(index, []).append(class_index)
        order = sorted(wanted)
        was_training = student.training
        student.eval()
        device = next(student.parameters()).device
        labels, student_feats, teacher_feats = [torch.zeros(0, dtype=torch.long)], [], []
        for start in range(0, len(order), 8):
            batch = [(index, source[index]) for index in order[start : start + 8]]
            images = torch.stack([sample[0] for _, sample in batch]).to(device)
            keep = [
                pgm_candidates(sample[1]["boxes"], cfg["pgm_min_size"])
                & torch.isin(sample[1]["labels"], torch.tensor(wanted[index]))
                for index, sample in batch
            ]
            boxes = [sample[1]["boxes"][k].to(device) for (_, sample), k in zip(batch, keep)]
            labels += [sample[1]["labels"][k] for (_, sample), k in zip(batch, keep)]
            x = student.preprocess(images)
            student_feats.append(batch_instance_features(student.features(x), boxes, student.strides))
            if self._teacher_instances is None:
                teacher_feats.append(batch_instance_features(teacher.features(x), boxes, teacher.strides))
        student.train(was_training)
        all_labels = torch.cat(labels).to(device)
        per_level_student = _per_level(student_feats, student, device)
        if self._teacher_instances is None:
            self._teacher_instances = (all_labels, _per_level(teacher_feats, teacher, device))
        return all_labels, per_level_student, self._teacher_instances[1]

    def extra_state(self) -> dict:
        return {"losses": self.losses.state_dict()}

    def load_extra_state(self, state: dict) -> None:
        self.losses.load_state_dict(state["losses"])
