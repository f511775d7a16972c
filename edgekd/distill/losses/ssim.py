"""Structural knowledge distillation (SSIM-KD).

de Rijk, Schneider, Cordts, Gavrila, "Structural Knowledge Distillation for Object Detection", NeurIPS 2022,
arXiv:2211.13133. Equation numbers not available (paper body not retrieved); formulas as restated in
docs/kd/ssim.md eqs. (1)-(6):

    L_feat = sum_r mean_{c,h,w} (1 - SSIM(psi(phi(S_r)), psi(T_r)))_{chw} / 2
    SSIM = ((2 mu_s mu_t + C1)(2 sigma_st + C2)) / ((mu_s^2 + mu_t^2 + C1)(sigma_s^2 + sigma_t^2 + C2))

with local statistics from a depth-wise (per channel) Gaussian window (11x11, sigma 1.5, reflect padding),
C1 = 1e-4, C2 = 9e-4 (K1 = 0.01, K2 = 0.03, dynamic range 1 after psi), the dissimilarity clamped to [0, 1]
(the kornia `ssim_loss` convention). phi is a 1x1 conv adapter on the student; psi is min-max scaling per
sample and level over C*H*W, teacher and student separately (edgekd's choice; the granularity is not in the
sources). Maps smaller than the window use the largest odd window that fits reflect padding
(k <= 2*min(H, W) - 1), logged as `window_l<level>`. Everything is computed in fp32, outside autocast.
Our own implementation (no kornia dependency), checked against kornia's values (docs/kd/ssim.md vectors B1-B3, B5).
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from edgekd.distill.losses.base import (
    LEVELS_OPTION,
    WEIGHT_HELP,
    KDInputs,
    Option,
    non_negative,
    odd_positive,
    positive,
)
from edgekd.distill.losses.common import ADAPTER_INITS, ADAPTER_KINDS, AdaptedFeatureLoss

MINMAX_EPS = 1e-6


def gaussian_window(size: int, sigma: float, device: torch.device | None = None) -> Tensor:
    """Normalised 1-D Gaussian of odd length `size` centred on its middle tap (float64)."""
    x = torch.arange(size, dtype=torch.float64, device=device) - size // 2
    g = torch.exp(-(x**2) / (2.0 * sigma**2))
    return g / g.sum()


def effective_window(window: int, height: int, width: int) -> int:
    """`window`, or the largest odd size whose reflect padding fits an H x W map (k <= 2*min(H, W) - 1)."""
    return min(window, 2 * min(height, width) - 1)


def minmax_normalise(x: Tensor, eps: float = MINMAX_EPS) -> Tensor:
    """Scale each sample of (B, C, H, W) to [0, 1] over C*H*W; a constant sample maps to 0."""
    flat = x.flatten(1)
    low = flat.min(dim=1).values.view(-1, 1, 1, 1)
    high = flat.max(dim=1).values.view(-1, 1, 1, 1)
    return (x - low) / (high - low).clamp(min=eps)


def ssim_map(x: Tensor, y: Tensor, window: int = 11, sigma: float = 1.5, c1: float = 1e-4, c2: float = 9e-4) -> Tensor:
    """Per-channel SSIM map of two (B, C, H, W) tensors with a Gaussian window, in fp32 (fp64 stays fp64).

    The window shrinks to `effective_window` on small maps. Local statistics come from one separable,
    depth-wise convolution over the stacked (x, y, x^2, y^2, xy) with reflect padding; variances are clamped
    at 0 against cancellation.
    """
    with torch.autocast(device_type=x.device.type, enabled=False):
        dtype = torch.promote_types(torch.promote_types(x.dtype, y.dtype), torch.float32)
        x, y = x.to(dtype), y.to(dtype)
        channels, height, width = x.shape[1:]
        k = effective_window(window, height, width)
        g = gaussian_window(k, sigma, x.device).to(dtype)
        stacked = torch.cat([x, y, x * x, y * y, x * y], dim=1)  # (B, 5C, H, W)
        groups = stacked.shape[1]
        pad = k // 2
        filtered = F.pad(stacked, (pad, pad, pad, pad), mode="reflect") if pad else stacked
        filtered = F.conv2d(filtered, g.view(1, 1, 1, k).expand(groups, 1, 1, k), groups=groups)
        filtered = F.conv2d(filtered, g.view(1, 1, k, 1).expand(groups, 1, k, 1), groups=groups)
        mu_x, mu_y, e_xx, e_yy, e_xy = filtered.split(channels, dim=1)
        var_x = (e_xx - mu_x * mu_x).clamp(min=0.0)
        var_y = (e_yy - mu_y * mu_y).clamp(min=0.0)
        cov = e_xy - mu_x * mu_y
        numerator = (2 * mu_x * mu_y + c1) * (2 * cov + c2)
        denominator = (mu_x * mu_x + mu_y * mu_y + c1) * (var_x + var_y + c2)
        return numerator / denominator


def ssim_dissimilarity(x: Tensor, y: Tensor, **ssim_options: Any) -> Tensor:
    """mean(clamp((1 - SSIM) / 2, 0, 1)) over B*C*H*W (the kornia `ssim_loss` reduction)."""
    return ((1.0 - ssim_map(x, y, **ssim_options)) / 2.0).clamp(0.0, 1.0).mean()


class SSIMLoss(AdaptedFeatureLoss):
    """SSIM-KD over the neck levels (module docstring); weight 2 (the paper's best lambda is 2 or 4)."""

    name = "ssim"
    options = {
        "weight": Option(2.0, (float,), non_negative, help=WEIGHT_HELP + " (lambda, 2-4 in the paper)"),
        "window": Option(11, (int,), odd_positive, help="Gaussian window size"),
        "sigma": Option(1.5, (float,), positive, help="Gaussian window sigma"),
        "c1": Option(1e-4, (float,), positive),
        "c2": Option(9e-4, (float,), positive),
        "minmax": Option(True, (bool,), help="min-max scale teacher and student per sample and level first"),
        "levels": LEVELS_OPTION,
        "adapter": Option("conv1x1", (str,), choices=ADAPTER_KINDS),
        "adapter_init": Option("default", (str,), choices=ADAPTER_INITS),
    }

    def compute(self, inputs: KDInputs) -> tuple[Tensor, dict[str, Tensor]]:
        cfg = self.config
        window = {"window": cfg["window"], "sigma": cfg["sigma"], "c1": cfg["c1"], "c2": cfg["c2"]}
        total = inputs.student_feats[0].new_zeros((), dtype=torch.float32)
        parts: dict[str, Tensor] = {}
        for adapter, level in zip(self.adapters, self.levels, strict=True):
            student = adapter(inputs.student_feats[level])
            with torch.autocast(device_type=student.device.type, enabled=False):
                dtype = torch.promote_types(student.dtype, torch.float32)
                student, teacher = student.to(dtype), inputs.teacher_feats[level].to(dtype)
                if cfg["minmax"]:
                    student, teacher = minmax_normalise(student), minmax_normalise(teacher)
                level_loss = ssim_dissimilarity(student, teacher, **window)
            total = total + level_loss
            parts[f"l{level}"] = level_loss
            parts[f"window_l{level}"] = torch.tensor(
                float(effective_window(cfg["window"], *student.shape[-2:])), device=total.device
            )
        return total, parts
