"""The learning-rate schedule: linear warm-up (at most 30% of the run), then cosine decay."""

from __future__ import annotations

import math

import pytest
import torch

from edgekd.train.schedule import warmup_cosine


def _factors(total: int, warmup: int) -> list[float]:
    optimizer = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=1.0)
    scheduler = warmup_cosine(optimizer, total, warmup)
    factors = []
    for _ in range(total):
        factors.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    return factors


def test_warmup_longer_than_30_percent_of_the_run_is_capped():
    factors = _factors(240, 300)  # 4 epochs of 60 iterations with the recipes' default warm-up
    assert factors[36] == pytest.approx(0.001 + 0.999 * 36 / 72)  # capped at 0.3 x 240 = 72 iterations
    assert factors[72] == pytest.approx(1.0)  # the recipe's learning rate is reached
    assert factors[156] == pytest.approx(0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * 84 / 168)))


def test_short_warmup_is_kept():
    factors = _factors(120, 20)
    assert factors[10] == pytest.approx(0.001 + 0.999 * 10 / 20)
    assert factors[20] == pytest.approx(1.0)
    assert factors[119] == pytest.approx(0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * 99 / 100)))
