"""`feature_norm: teacher_rms` (edgekd's decision): each level's adapted student and teacher maps are divided by
the teacher map's RMS before the loss; the default `none` is the papers' raw form."""

from __future__ import annotations

import pytest
import torch

from edgekd.distill.losses import KDInputs, build_loss
from tests.test_losses_fgfi import A2_GT, A2_PRIORS


def fitnet_inputs(student: torch.Tensor, teacher: torch.Tensor) -> KDInputs:
    return KDInputs(
        [student], [teacher], [8], (16, 16), [torch.zeros(0, 4)], [torch.zeros(0, dtype=torch.long)], [], []
    )


def test_fitnet_hand_value() -> None:
    student = torch.tensor([[[[1.0, 2], [3, 4]]]], requires_grad=True)
    teacher = torch.tensor([[[[0.0, 2], [1, 4]]]])
    raw = build_loss("fitnet", {"adapter": "none"}, [1], [1])
    scaled = build_loss("fitnet", {"adapter": "none", "feature_norm": "teacher_rms"}, [1], [1])
    # MSE (1 + 4) / 4 = 1.25; teacher mean square (0 + 4 + 1 + 16) / 4 = 5.25
    assert float(raw(fitnet_inputs(student, teacher))[0].detach()) == pytest.approx(1.25)
    assert float(scaled(fitnet_inputs(student, teacher))[0].detach()) == pytest.approx(1.25 / 5.25)


def test_fgfi_a2_vector_divided_by_teacher_mean_square() -> None:
    teacher = torch.arange(32, dtype=torch.float64).reshape(1, 2, 4, 4) / 10
    student = (0.5 * teacher).requires_grad_(True)
    loss = build_loss("fgfi", {"weight": 1.0, "adapter": "none", "feature_norm": "teacher_rms"}, [2], [2])
    labels = [torch.zeros(2, dtype=torch.long)]
    inputs = KDInputs([student], [teacher], [16], (64, 64), [A2_GT], labels, [A2_PRIORS], [2])
    value, _ = loss(inputs)
    mean_square = sum(k * k for k in range(32)) / 100 / 32  # 3.255
    assert float(value.detach()) == pytest.approx(0.875 / mean_square)  # 0.875: docs/kd/fgfi.md vector A2
    value.backward()
    assert student.grad is not None and float(student.grad.abs().sum()) > 0


@pytest.mark.parametrize("name", ["fitnet", "fgfi", "bmfi"])
def test_scaling_both_maps_leaves_the_loss_unchanged(name: str) -> None:
    torch.manual_seed(0)
    student, teacher = torch.randn(2, 4, 4, 4, dtype=torch.float64), torch.randn(2, 4, 4, 4, dtype=torch.float64)
    gt = [A2_GT, A2_GT[:1]]
    labels = [torch.zeros(len(g), dtype=torch.long) for g in gt]
    options = {"adapter": "none", "feature_norm": "teacher_rms"}
    loss = build_loss(name, options, [4], [4]).double()
    values = []
    for scale in (1.0, 300.0):
        inputs = KDInputs([scale * student], [scale * teacher], [16], (64, 64), gt, labels, [A2_PRIORS], [2])
        values.append(float(loss(inputs)[0]))
    assert values[0] > 0
    assert values[1] == pytest.approx(values[0], rel=1e-6)  # the losses compute in fp32
