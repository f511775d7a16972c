"""Knowledge-distillation losses of edgekd, one module per method, and the registry that builds them.

    loss = build_loss("fgfi", {"weight": 0.01, "psi": 0.5}, student_channels, teacher_channels)
    value, parts = loss(KDInputs(...))        # weighted scalar, {part: float}

Names: fgfi, ssim, gkd, bmfi, global, fitnet, logits (definitions in each module's docstring and in
docs/kd/). Options are validated: an unknown, mistyped or out-of-range key raises EdgeKDError naming the
recipe file (when given), the loss and the option. Each loss class declares what it needs from the
teacher/student pair (`KDLoss.pair_needs`); `edgekd.distill.pairing.check_losses` checks it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from edgekd.distill.losses.base import KDInputs, KDLoss, Option, PairNeed, loss_label, resolve_options
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
    name: str,
    options: Mapping[str, Any] | None,
    student_channels: Sequence[int],
    teacher_channels: Sequence[int],
    source: str | None = None,
) -> KDLoss:
    """The loss registered as `name`, built for these per-level neck channels with validated `options`; errors
    name `source` (the recipe file) when given."""
    prefix = f"{source}: " if source else ""
    if name not in LOSSES:
        raise EdgeKDError(f"{prefix}unknown KD loss '{name}' (available: {', '.join(LOSSES)})")
    if options is None:
        options = {}
    if not isinstance(options, Mapping) or not all(isinstance(key, str) for key in options):
        raise EdgeKDError(
            f"{loss_label(name, source)}: options must be a mapping of option names to values, got {options!r}"
        )
    resolve_options(name, LOSSES[name].options, options, source)  # named errors before any keyword clash
    try:
        return LOSSES[name](student_channels, teacher_channels, **options)
    except EdgeKDError as error:
        if not source:
            raise
        raise EdgeKDError(f"{prefix}{error}") from error


__all__ = ["LOSSES", "KDInputs", "KDLoss", "Option", "PairNeed", "build_loss", "gradcam_weights"]
