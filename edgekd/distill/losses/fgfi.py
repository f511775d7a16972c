"""Fine-grained Feature Imitation (FGFI).

Wang, Yuan, Zhang, Feng, "Distilling Object Detectors with Fine-grained Feature Imitation", CVPR 2019,
arXiv:1906.03609. Equation numbers not available (paper body not retrieved); formulas as restated in
docs/kd/fgfi.md eqs. (1)-(7):

    m_k(i,j,a) = IoU(prior(i,j,a), g_k);   F_k = psi * max m_k;   I_k(i,j) = [exists a: m_k(i,j,a) > F_k]
    I = OR_k I_k;   L_imit = 1/(2 N_p) * sum_ij sum_c I_ij (f_adap(s)_ijc - t_ijc)^2,  N_p = sum I

edgekd on FPN (docs/kd/fgfi.md "edgekd decisions"): the mask is built per level; the per-GT maximum is taken per level
(`max_over="level"`, the todd FGFIMask variant) or over all levels (`"all"`); the loss sums masked squared
errors over the distilled levels and divides by 2 * (total positive cells, clamped >= 1, so a batch without
GT gives exactly 0); one 3x3 conv adapter per level, N(0, 1e-4) init, no ReLU (FPN outputs are not
post-ReLU; `relu=True` restores the original); `warmup_steps` zeroes the loss for the first global steps
(the reference used 400).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor
from torchvision.ops import box_iou

from edgekd.distill.losses.base import (
    LEVELS_OPTION,
    WEIGHT_HELP,
    KDInputs,
    Option,
    non_negative,
    open_unit_interval,
    positive,
    require,
)
from edgekd.distill.losses.common import ADAPTER_INITS, ADAPTER_KINDS, FEATURE_NORM_OPTION, AdaptedFeatureLoss
from edgekd.errors import EdgeKDError


def imitation_masks(
    priors: Sequence[Tensor],
    anchors_per_location: Sequence[int],
    feature_sizes: Sequence[tuple[int, int]],
    gt_boxes: Sequence[Tensor],
    psi: float = 0.5,
    max_over: str = "level",
) -> list[Tensor]:
    """FGFI imitation mask per level, (B, H_l, W_l) bool (Wang et al. 2019, docs/kd/fgfi.md eqs. (1)-(4)).

    `priors[l]` is (H_l*W_l*A_l, 4), row-major over (h, w, a). A GT box marks the cells that hold a prior
    whose IoU with it is strictly above psi times its best IoU (per level, or over all levels with
    max_over="all", over every level given, distilled or not); the mask is the union over boxes. Images
    without boxes get an empty mask.
    """
    if max_over not in ("level", "all"):
        raise EdgeKDError(f"fgfi: max_over must be 'level' or 'all', got {max_over!r}")
    if not len(priors) == len(anchors_per_location) == len(feature_sizes):
        raise EdgeKDError(
            f"fgfi: {len(priors)} prior levels and {len(anchors_per_location)} anchors_per_location entries for "
            f"{len(feature_sizes)} feature levels; one of each per level is needed"
        )
    for level, (p, a, (h, w)) in enumerate(zip(priors, anchors_per_location, feature_sizes, strict=True)):
        if p.shape != (h * w * a, 4):
            raise EdgeKDError(
                f"fgfi: level {level} priors have shape {tuple(p.shape)}, expected ({h}*{w}*{a}, 4) "
                f"for a {h}x{w} map with {a} priors per location"
            )
    device = priors[0].device
    masks = [torch.zeros(len(gt_boxes), h, w, dtype=torch.bool, device=device) for h, w in feature_sizes]
    for b, boxes in enumerate(gt_boxes):
        if boxes.shape[0] == 0:
            continue
        boxes = boxes.to(device=device, dtype=torch.float32)
        ious = [box_iou(p.float(), boxes) for p in priors]  # per level (P_l, N)
        best_per_level = torch.stack([iou.max(dim=0).values for iou in ious])  # (L, N)
        if max_over == "all":
            best_per_level = best_per_level.max(dim=0, keepdim=True).values.expand_as(best_per_level)
        for level, (iou, (h, w), a) in enumerate(zip(ious, feature_sizes, anchors_per_location, strict=True)):
            above = iou > psi * best_per_level[level]  # strict '>' as the reference
            masks[level][b] = above.view(h, w, a * boxes.shape[0]).any(dim=-1)
    return masks


def masked_imitation(
    adapted: Sequence[Tensor], teacher: Sequence[Tensor], masks: Sequence[Tensor], norm_factor: float = 2.0
) -> tuple[Tensor, Tensor]:
    """sum_l sum_{b,c,h,w} I (s - t)^2 / (norm_factor * max(1, N_p)) and N_p = sum_l sum I, over the levels
    given: (B, C, H, W) adapted student and teacher maps and (B, H, W) masks."""
    masked_se = adapted[0].new_zeros((), dtype=torch.float32)
    positives = masked_se.new_zeros(())
    for s, t, mask in zip(adapted, teacher, masks, strict=True):
        se = (s.float() - t.float()).pow(2).sum(dim=1)  # (B, H, W)
        weight = mask.to(se.dtype)
        masked_se = masked_se + (se * weight).sum()
        positives = positives + weight.sum()
    return masked_se / (norm_factor * positives.clamp(min=1.0)), positives


class FGFILoss(AdaptedFeatureLoss):
    """FGFI masked feature imitation (module docstring); options in docs/kd/fgfi.md."""

    name = "fgfi"
    options = {
        "weight": Option(0.01, (float,), non_negative, help=WEIGHT_HELP + " (lambda; reference --ilw 0.01)"),
        "psi": Option(0.5, (float,), open_unit_interval, help="threshold factor on each GT's best prior IoU"),
        "max_over": Option("level", (str,), choices=("level", "all"), help="where each GT's best IoU is taken"),
        "warmup_steps": Option(0, (int,), non_negative, help="loss is 0 while step < warmup_steps"),
        "levels": LEVELS_OPTION,
        "norm_factor": Option(2.0, (float,), positive, help="denominator factor: loss = SE / (norm_factor*N_p)"),
        "relu": Option(False, (bool,), help="ReLU after the adapter (original single-level, post-ReLU features)"),
        "adapter": Option("conv3x3", (str,), choices=ADAPTER_KINDS),
        "adapter_init": Option("tiny", (str,), choices=ADAPTER_INITS),
        "feature_norm": FEATURE_NORM_OPTION,
    }

    def compute(self, inputs: KDInputs) -> tuple[Tensor, dict[str, Tensor]]:
        cfg = self.config
        priors = require(inputs.priors, self.name, "priors", "the imitation mask is built from prior IoUs")
        sizes = [(int(f.shape[-2]), int(f.shape[-1])) for f in inputs.teacher_feats]
        masks = imitation_masks(
            priors, inputs.anchors_per_location, sizes, inputs.gt_boxes, cfg["psi"], cfg["max_over"]
        )
        adapted, teacher = [], []
        for adapter, level in zip(self.adapters, self.levels, strict=True):
            student = adapter(inputs.student_feats[level])
            student, target = self.scaled_pair(student.relu() if cfg["relu"] else student, inputs.teacher_feats[level])
            adapted.append(student)
            teacher.append(target)
        imitation, positives = masked_imitation(
            adapted, teacher, [masks[level] for level in self.levels], cfg["norm_factor"]
        )
        active = 1.0 if inputs.step >= cfg["warmup_steps"] else 0.0
        return imitation * active, {"imitation": imitation, "positives": positives}
