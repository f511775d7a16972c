"""Parameter count and GFLOPs of a detector's `raw` forward at its input size."""

from __future__ import annotations

import torch
from torch.utils.flop_counter import FlopCounterMode

from edgekd.models.detector import Detector


def count_parameters(detector: Detector) -> int:
    return sum(p.numel() for p in detector.parameters())


@torch.no_grad()
def gflops(detector: Detector) -> float:
    """GFLOPs of one image through `raw` (torch's FlopCounterMode: a multiply-add counts as 2 FLOPs)."""
    height, width = detector.config.input_size
    was_training = detector.training
    detector.eval()
    images = torch.zeros(1, 3, height, width, device=next(detector.parameters()).device)
    with FlopCounterMode(display=False) as counter:
        detector.raw(images)
    detector.train(was_training)
    return counter.get_total_flops() / 1e9
