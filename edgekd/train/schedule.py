"""Learning-rate schedule: linear warm-up then cosine decay, per iteration."""

from __future__ import annotations

import math

from torch.optim import Optimizer
from torch.optim.lr_scheduler import LambdaLR


def warmup_cosine(optimizer: Optimizer, total_iters: int, warmup_iters: int, final_ratio: float = 0.05) -> LambdaLR:
    """lr factor rises linearly from 0.001 to 1 over `warmup_iters`, then follows a cosine to `final_ratio`."""
    warmup_iters = max(0, min(warmup_iters, total_iters - 1))

    def factor(step: int) -> float:
        if step < warmup_iters:
            return 0.001 + (1 - 0.001) * step / warmup_iters
        progress = (step - warmup_iters) / max(1, total_iters - warmup_iters)
        return final_ratio + (1 - final_ratio) * 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))

    return LambdaLR(optimizer, factor)
