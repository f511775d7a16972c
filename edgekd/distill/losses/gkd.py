"""Gradient-guided knowledge distillation (GKD), edgekd's differentiable definition.

Lan, Tian, "Gradient-Guided Knowledge Distillation for Object Detectors", WACV 2024, arXiv:2303.04240.
Equation numbers not available (paper body not retrieved).

The released code (lanqz7766/GKD, `GKD_FeatureLoss`) compares numpy Grad-CAM maps of teacher and student,
so its loss carries no gradient to the student (docs/kd/gkd.md, "What the released code does"). edgekd
implements instead the differentiable version of the paper's idea defined in docs/kd/gkd.md eqs. (1)-(5):

    alpha_c = mean_hw dL_det/dT_c;   cam = ReLU(sum_c alpha_c T_c);   w = cam / sum_hw cam   (uniform if cam == 0)
    L_GKD = sum_l mean_b sum_hw w_l(b,h,w) * sum_c (f_adapt(S)_l - T_l)^2

where L_det is the teacher's detection loss against the ground truth on the same training batch and the
gradient is taken w.r.t. the teacher's features only (never its weights); the trainer computes it and passes
it as `KDInputs.teacher_feature_grads`. The map is detached. This is edgekd's interpretation, not the paper's.
An image without GT still has a teacher detection loss (background only), so the loss stays defined there.
Adapter: 1x1 conv only where channels differ (`auto`, the reference's align conv).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from edgekd.distill.losses.base import (
    LEVELS_OPTION,
    WEIGHT_HELP,
    KDInputs,
    Option,
    non_negative,
    require,
)
from edgekd.distill.losses.common import ADAPTER_INITS, ADAPTER_KINDS, FEATURE_NORM_OPTION, AdaptedFeatureLoss
from edgekd.errors import EdgeKDError


@torch.no_grad()
def gradcam_weights(teacher_feats: Sequence[Tensor], grads: Sequence[Tensor]) -> list[Tensor]:
    """Grad-CAM weight map per level, (B, H, W) summing to 1 per image (detached, fp32).

    Channel weights are the spatially averaged gradients; the map is the ReLU of their weighted channel sum
    (Selvaraju et al., Grad-CAM, ICCV 2017, eq. 1-2), normalised to sum 1; an all-zero map becomes uniform.
    """
    if len(teacher_feats) != len(grads):
        raise EdgeKDError(f"gkd: {len(teacher_feats)} feature levels but {len(grads)} gradient levels")
    maps = []
    for level, (feat, grad) in enumerate(zip(teacher_feats, grads, strict=True)):
        if feat.shape != grad.shape:
            raise EdgeKDError(
                f"gkd: level {level} gradient shape {tuple(grad.shape)} != feature shape {tuple(feat.shape)}"
            )
        feat, grad = feat.detach().float(), grad.detach().float()
        channel_weights = grad.mean(dim=(2, 3), keepdim=True)  # (B, C, 1, 1)
        cam = (channel_weights * feat).sum(dim=1).relu()  # (B, H, W)
        total = cam.sum(dim=(1, 2), keepdim=True)
        uniform = torch.full_like(cam, 1.0 / (cam.shape[1] * cam.shape[2]))
        maps.append(torch.where(total > 0, cam / total.clamp(min=torch.finfo(cam.dtype).tiny), uniform))
    return maps


def weighted_imitation(student: Tensor, teacher: Tensor, weights: Tensor) -> Tensor:
    """mean_b sum_hw weights * sum_c (student - teacher)^2 for (B, C, H, W) maps and (B, H, W) weights."""
    se = (student.float() - teacher.float()).pow(2).sum(dim=1)
    return (weights * se).sum(dim=(1, 2)).mean()


class GKDLoss(AdaptedFeatureLoss):
    """Grad-CAM-weighted feature imitation (module docstring).

    Default weight 0.01: the released beta weighs the gradient-free CAM-L1 term and does not transfer; with
    per-image weights summing to 1 this loss is a per-position channel-summed squared error, the scale of
    FGFI's loss, so FGFI's lambda is used.
    """

    name = "gkd"
    needs_teacher_feature_grads = True
    options = {
        "weight": Option(0.01, (float,), non_negative, help=WEIGHT_HELP),
        "levels": LEVELS_OPTION,
        "adapter": Option("auto", (str,), choices=ADAPTER_KINDS),
        "adapter_init": Option("default", (str,), choices=ADAPTER_INITS),
        "feature_norm": FEATURE_NORM_OPTION,
    }

    def compute(self, inputs: KDInputs) -> tuple[Tensor, dict[str, Tensor]]:
        grads = require(
            inputs.teacher_feature_grads,
            self.name,
            "teacher_feature_grads",
            "d(teacher detection loss)/d(teacher features) for the Grad-CAM weights",
        )
        if len(grads) != len(inputs.teacher_feats):
            raise EdgeKDError(
                f"loss 'gkd': teacher_feature_grads has {len(grads)} levels, features have {len(inputs.teacher_feats)}"
            )
        teacher = [inputs.teacher_feats[level] for level in self.levels]
        weights = gradcam_weights(teacher, [grads[level] for level in self.levels])
        total = inputs.student_feats[0].new_zeros((), dtype=torch.float32)
        parts: dict[str, Tensor] = {}
        for adapter, level, t, w in zip(self.adapters, self.levels, teacher, weights, strict=True):
            level_loss = weighted_imitation(*self.scaled_pair(adapter(inputs.student_feats[level]), t), w)
            total = total + level_loss
            parts[f"l{level}"] = level_loss
        return total, parts
