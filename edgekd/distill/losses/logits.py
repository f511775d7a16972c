"""Soft-label (logit) distillation baseline on the classification outputs of GT-matched boxes.

Hinton, Vinyals, Dean, "Distilling the Knowledge in a Neural Network", NIPS 2014 Deep Learning Workshop,
arXiv:1503.02531 (section 2: softened softmax, gradients scaled by T^2); for detectors as in Chen et al.,
"Learning Efficient Object Detection Models with Knowledge Distillation", NeurIPS 2017 (soft-label term of
their eq. 1-2), one of the baselines the four papers compare against; equations in docs/kd/logits.md.

    softmax (two-stage, with background):  L = T^2 KL(softmax(t/T) || softmax(s/T))  summed over classes
    sigmoid (one-stage, per class):        L = T^2 sum_k KLbin(sigmoid(t_k/T) || sigmoid(s_k/T))

averaged over the boxes (`logit_boxes`) whose IoU with some GT box is >= 0.5 (torchvision box_iou). A batch
without GT, or without a matched box, gives exactly 0.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from edgekd.distill.losses.base import (
    WEIGHT_HELP,
    KDInputs,
    KDLoss,
    Option,
    PairNeed,
    non_negative,
    positive,
    require,
    unit_interval,
)
from edgekd.distill.losses.common import match_to_gt
from edgekd.errors import EdgeKDError

ACTIVATIONS = ("sigmoid", "softmax")


def distill_kl(
    student_logits: Tensor, teacher_logits: Tensor, temperature: float, activation: str, class_reduction: str = "sum"
) -> Tensor:
    """Per-box T^2 * KL(teacher || student) of temperature-softened class distributions -> (P,), at least fp32.

    `activation` "softmax": one distribution over the K' classes; "sigmoid": K' independent Bernoulli
    distributions (binary KL per class). The per-class terms are summed (`class_reduction="sum"`, the usual
    KD) or averaged ("mean", the global-KD reference).
    """
    dtype = torch.promote_types(student_logits.dtype, torch.float32)
    s = student_logits.to(dtype) / temperature
    t = teacher_logits.to(dtype) / temperature
    if activation == "softmax":
        log_ps, log_pt = F.log_softmax(s, dim=-1), F.log_softmax(t, dim=-1)
        per_class = log_pt.exp() * (log_pt - log_ps)
    elif activation == "sigmoid":
        log_ps, log_pt = F.logsigmoid(s), F.logsigmoid(t)
        log_qs, log_qt = F.logsigmoid(-s), F.logsigmoid(-t)
        per_class = log_pt.exp() * (log_pt - log_ps) + log_qt.exp() * (log_qt - log_qs)
    else:
        raise EdgeKDError(f"logit_activation must be one of {list(ACTIVATIONS)}, got {activation!r}")
    reduced = per_class.sum(dim=-1) if class_reduction == "sum" else per_class.mean(dim=-1)
    return reduced * temperature**2


def matched_logits(inputs: KDInputs, loss_name: str, iou_threshold: float) -> list[tuple[Tensor, Tensor, Tensor]]:
    """Per image: (student logits, teacher logits, matched GT index) of the boxes matched to a GT."""
    why = "soft-label distillation on GT-matched boxes"
    if inputs.logit_activation not in ACTIVATIONS:
        raise EdgeKDError(
            f"loss '{loss_name}': logit_activation must be one of {list(ACTIVATIONS)}, got {inputs.logit_activation!r}"
        )
    student = require(inputs.student_logits, loss_name, "student_logits", why)
    teacher = require(inputs.teacher_logits, loss_name, "teacher_logits", why)
    boxes = require(inputs.logit_boxes, loss_name, "logit_boxes", why)
    if not len(student) == len(teacher) == len(boxes) == len(inputs.gt_boxes):
        raise EdgeKDError(
            f"loss '{loss_name}': student_logits/teacher_logits/logit_boxes/gt_boxes must have one entry per "
            f"image, got {len(student)}/{len(teacher)}/{len(boxes)}/{len(inputs.gt_boxes)}"
        )
    matched = []
    for b, (s, t, bx) in enumerate(zip(student, teacher, boxes, strict=True)):
        if s.shape != t.shape or s.shape[0] != bx.shape[0]:
            raise EdgeKDError(
                f"loss '{loss_name}': image {b} student logits {tuple(s.shape)}, teacher logits "
                f"{tuple(t.shape)} and logit_boxes {tuple(bx.shape)} must describe the same boxes (teacher and "
                "student heads with the same priors per location)"
            )
        positive_idx, gt_idx = match_to_gt(bx, inputs.gt_boxes[b], iou_threshold)
        matched.append((s[positive_idx], t[positive_idx], gt_idx))
    return matched


class LogitsKDLoss(KDLoss):
    """Temperature KD on GT-matched class logits (module docstring)."""

    name = "logits"
    needs_logits = True
    options = {
        "weight": Option(1.0, (float,), non_negative, help=WEIGHT_HELP),
        "temperature": Option(2.0, (float,), positive),
        "iou_threshold": Option(0.5, (float,), unit_interval, help="a box is matched when its best GT IoU >= this"),
    }

    @classmethod
    def pair_needs(cls, config: Mapping[str, Any]) -> dict[PairNeed, str]:
        """Teacher logits are read on the student's boxes, so both heads must describe the same priors."""
        return {PairNeed.SAME_PRIORS: "it compares class logits of teacher and student prior by prior"}

    def __init__(self, student_channels: Sequence[int], teacher_channels: Sequence[int], **options: Any) -> None:
        super().__init__(student_channels, teacher_channels, options)

    def compute(self, inputs: KDInputs) -> tuple[Tensor, dict[str, Tensor]]:
        cfg = self.config
        matched = matched_logits(inputs, self.name, cfg["iou_threshold"])
        per_box = [
            distill_kl(s, t, cfg["temperature"], inputs.logit_activation) for s, t, _ in matched if s.shape[0] > 0
        ]
        count = sum(int(p.shape[0]) for p in per_box)
        if count == 0:
            zero = torch.stack([s.float().sum() for s, _, _ in matched]).sum()  # sums of empty slices: exactly 0
            return zero, {"kl": zero, "matched": torch.zeros(())}
        kl = torch.cat(per_box).mean()
        return kl, {"kl": kl, "matched": torch.tensor(float(count))}
