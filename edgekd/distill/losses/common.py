"""Pieces several KD losses share: student->teacher adaptation layers, feature scaling and prior-to-GT matching.

Adaptation layers belong to the loss (they train with the student and are dropped at export). Kinds:
`conv1x1`, `conv3x3` (stride 1, padding 1, with bias), `auto` (1x1 conv only where channel counts differ,
identity elsewhere: the GKD/FGD reference code) and `none` (identity; channel counts must match).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor, nn
from torchvision.ops import box_iou

from edgekd.distill.losses.base import KDLoss, Option
from edgekd.errors import EdgeKDError

ADAPTER_KINDS = ("conv1x1", "conv3x3", "auto", "none")
ADAPTER_INITS = ("default", "tiny")
TINY_INIT_STD = 1e-4
FEATURE_NORMS = ("none", "teacher_rms")
FEATURE_NORM_OPTION = Option(
    "none",
    (str,),
    choices=FEATURE_NORMS,
    help="teacher_rms: divide adapted student and teacher maps of a level by the teacher map's RMS (detached)",
)


def make_adapters(
    loss_name: str,
    student_channels: Sequence[int],
    teacher_channels: Sequence[int],
    levels: Sequence[int],
    kind: str,
    init: str = "default",
) -> nn.ModuleList:
    """One adaptation layer per distilled level (entry k adapts level `levels[k]`).

    init `tiny`: weights from N(0, 1e-4) truncated at 2 sigma, bias 0 (FGFI, Wang et al. 2019: the reference
    draws `normal_().fmod_(2) * 1e-4` and leaves the bias at PyTorch's default; we zero it so the adapted
    student starts at exactly 0 instead of at a random constant). `default`: PyTorch's own conv init.
    """
    layers: list[nn.Module] = []
    for level in levels:
        cs, ct = student_channels[level], teacher_channels[level]
        if kind == "none" or (kind == "auto" and cs == ct):
            if cs != ct:
                raise EdgeKDError(
                    f"loss '{loss_name}': option adapter='none' needs equal channels, level {level} has "
                    f"student {cs} vs teacher {ct}"
                )
            layers.append(nn.Identity())
            continue
        size = 3 if kind == "conv3x3" else 1
        conv = nn.Conv2d(cs, ct, kernel_size=size, stride=1, padding=size // 2)
        if init == "tiny":
            nn.init.trunc_normal_(conv.weight, std=TINY_INIT_STD, a=-2 * TINY_INIT_STD, b=2 * TINY_INIT_STD)
            nn.init.zeros_(conv.bias)
        layers.append(conv)
    return nn.ModuleList(layers)


def match_to_gt(boxes: Tensor, gt_boxes: Tensor, iou_threshold: float) -> tuple[Tensor, Tensor]:
    """Indices of `boxes` whose best IoU with a GT box is >= threshold, and that GT's index for each.

    Both outputs are int64 of equal length (0 when there is no GT or no box qualifies).
    """
    empty = torch.zeros(0, dtype=torch.long, device=boxes.device)
    if gt_boxes.shape[0] == 0 or boxes.shape[0] == 0:
        return empty, empty
    best_iou, best_gt = box_iou(boxes.float(), gt_boxes.float().to(boxes.device)).max(dim=1)
    positive = torch.nonzero(best_iou >= iou_threshold).flatten()
    return positive, best_gt[positive]


class AdaptedFeatureLoss(KDLoss):
    """A feature-imitation loss with one adaptation layer per distilled level (options `adapter`, `adapter_init`),
    owned by the loss so it trains with the student and is dropped with the loss at export."""

    def __init__(self, student_channels: Sequence[int], teacher_channels: Sequence[int], **options: Any) -> None:
        super().__init__(student_channels, teacher_channels, options)
        cfg = self.config
        self.adapters = make_adapters(
            self.name, self.student_channels, self.teacher_channels, self.levels, cfg["adapter"], cfg["adapter_init"]
        )

    def scaled_pair(self, adapted: Tensor, teacher: Tensor) -> tuple[Tensor, Tensor]:
        """(adapted student, teacher) of one level in fp32, both divided by the teacher map's RMS when the option
        `feature_norm` is `teacher_rms`.

        edgekd's decision, where the papers are silent: their loss weights were tuned on ImageNet-pretrained FPN
        features (RMS near 1); a teacher trained from scratch can have level RMS of 5-10, which multiplies every
        squared-error loss by 25-100 and lets imitation drown the detection loss. Dividing by the teacher's RMS
        (one detached scalar per level and batch) restores the scale the weights were tuned for. The loss is then
        computed on the divided maps: a squared-error term is divided by RMS^2 exactly; BMFI's attention maps are
        formed from the divided maps too (docs/kd/README.md section 5).
        """
        adapted, teacher = adapted.float(), teacher.float()
        if self.config.get("feature_norm", "none") == "teacher_rms":
            rms = teacher.detach().pow(2).mean().sqrt().clamp(min=1e-6)
            return adapted / rms, teacher / rms
        return adapted, teacher
