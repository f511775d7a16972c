"""Learning-rate schedule: linear warm-up then cosine decay, per iteration."""

from __future__ import annotations

import math

from torch.optim import Optimizer
from torch.optim.lr_scheduler import LambdaLR

MAX_WARMUP_FRACTION = 0.3
"""Warm-up takes at most this share of a run: the default 300 iterations would otherwise cover a short run whole
(4 epochs of 60 iterations never reach the recipe's learning rate)."""


def effective_warmup(total_iters: int, warmup_iters: int) -> int:
    """The warm-up iterations a run of `total_iters` uses: `warmup_iters`, at most MAX_WARMUP_FRACTION of the run."""
    return max(0, min(warmup_iters, int(total_iters * MAX_WARMUP_FRACTION)))


def warmup_cosine(optimizer: Optimizer, total_iters: int, warmup_iters: int, final_ratio: float = 0.05) -> LambdaLR:
    """lr factor rises linearly from 0.001 to 1 over the warm-up (`effective_warmup`), then follows a cosine to
    `final_ratio`."""
    warmup_iters = effective_warmup(total_iters, warmup_iters)

    def factor(step: int) -> float:
        if step < warmup_iters:
            return 0.001 + (1 - 0.001) * step / warmup_iters
        progress = (step - warmup_iters) / max(1, total_iters - warmup_iters)
        return final_ratio + (1 - final_ratio) * 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))

    return LambdaLR(optimizer, factor)
