"""FitNets-style hint baseline: plain L2 between the adapted student and the teacher over whole neck maps.

Romero, Ballas, Kahou, Chassang, Gatta, Bengio, "FitNets: Hints for Thin Deep Nets", ICLR 2015,
arXiv:1412.6550, eq. 3 (L_HT = 1/2 ||u_h(x) - r(v_g(x))||^2, r a regressor on the student's guided layer).
One of the baselines the detection-KD papers compare against; edgekd's form (docs/kd/fitnet.md eq. (1)):

    L = sum_l mean_{b,c,h,w} (f_adapt(S_l) - T_l)^2

with a 1x1 conv adapter on every distilled level (kept even when channel counts match). It needs no GT.
"""

from __future__ import annotations

import torch
from torch import Tensor

from edgekd.distill.losses.base import LEVELS_OPTION, WEIGHT_HELP, KDInputs, Option, non_negative
from edgekd.distill.losses.common import ADAPTER_INITS, ADAPTER_KINDS, FEATURE_NORM_OPTION, AdaptedFeatureLoss


class FitNetLoss(AdaptedFeatureLoss):
    """Whole-map MSE per level, summed over levels (module docstring)."""

    name = "fitnet"
    options = {
        "weight": Option(1.0, (float,), non_negative, help=WEIGHT_HELP),
        "levels": LEVELS_OPTION,
        "adapter": Option("conv1x1", (str,), choices=ADAPTER_KINDS),
        "adapter_init": Option("default", (str,), choices=ADAPTER_INITS),
        "feature_norm": FEATURE_NORM_OPTION,
    }

    def compute(self, inputs: KDInputs) -> tuple[Tensor, dict[str, Tensor]]:
        total = inputs.student_feats[0].new_zeros((), dtype=torch.float32)
        parts: dict[str, Tensor] = {}
        for adapter, level in zip(self.adapters, self.levels, strict=True):
            adapted, teacher = self.scaled_pair(adapter(inputs.student_feats[level]), inputs.teacher_feats[level])
            level_loss = (adapted - teacher).pow(2).mean()
            total = total + level_loss
            parts[f"l{level}"] = level_loss
        return total, parts
