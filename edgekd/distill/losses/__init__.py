"""Knowledge-distillation losses of edgekd, one module per method, and the registry that builds them.

    loss = build_loss("fgfi", {"weight": 0.01, "psi": 0.5}, student_channels, teacher_channels)
    value, parts = loss(KDInputs(...))        # weighted scalar, {part: float}

Names: fgfi, ssim, gkd, bmfi, global, fitnet, logits (definitions in each module's docstring and in
kd-methods.md). Options are validated: an unknown or mistyped key raises EdgeKDError naming it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from edgekd.distill.losses.base import KDInputs, KDLoss, Option, resolve_options
from edgekd.distill.losses.bmfi import BMFILoss
from edgekd.distill.losses.fgfi import FGFILoss
from edgekd.distill.losses.fitnet import FitNetLoss
from edgekd.distill.losses.gkd import GKDLoss, gradcam_weights
from edgekd.distill.losses.global_kd import GlobalKDLoss
from edgekd.distill.losses.logits import LogitsKDLoss
from edgekd.distill.losses.ssim import SSIMLoss
from edgekd.errors import EdgeKDError

LOSSES: dict[str, type[KDLoss]] = {
    cls.name: cls for cls in (FGFILoss, SSIMLoss, GKDLoss, BMFILoss, GlobalKDLoss, FitNetLoss, LogitsKDLoss)
}


def build_loss(
    name: str, options: Mapping[str, Any] | None, student_channels: Sequence[int], teacher_channels: Sequence[int]
) -> KDLoss:
    """The loss registered as `name`, built for these per-level neck channels with validated `options`."""
    if name not in LOSSES:
        raise EdgeKDError(f"unknown KD loss '{name}' (available: {', '.join(LOSSES)})")
    if options is None:
        options = {}
    if not isinstance(options, Mapping) or not all(isinstance(key, str) for key in options):
        raise EdgeKDError(f"loss '{name}': options must be a mapping of option names to values, got {options!r}")
    resolve_options(name, LOSSES[name].options, options)  # named errors before any keyword clash
    return LOSSES[name](student_channels, teacher_channels, **options)


__all__ = ["LOSSES", "KDInputs", "KDLoss", "Option", "build_loss", "gradcam_weights"]
