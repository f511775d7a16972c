"""`feature_norm: teacher_rms` (edgekd's decision): each level's adapted student and teacher maps are divided by
the teacher map's RMS before the loss; the default `none` is the papers' raw form."""

from __future__ import annotations

import math

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


def bmfi_c6_inputs(scale: float) -> KDInputs:
    """docs/kd/bmfi.md vector C6: U = channel 0 all 1.4, channel 1 all 0.2 (mean square 1) on a 2x2 map, teacher
    scale * U, student scale/2 * U, one GT box covering the map (stride 8, image 16x16: M = 1/16 on every cell)."""
    u = torch.tensor([1.4, 0.2], dtype=torch.float64)[None, :, None, None].expand(1, 2, 2, 2)
    gt = [torch.tensor([[0.0, 0.0, 16.0, 16.0]])]
    labels = [torch.zeros(1, dtype=torch.long)]
    return KDInputs([scale / 2 * u], [scale * u], [8], (16, 16), gt, labels, [], [])


def test_bmfi_c6_with_teacher_rms_is_the_raw_loss_of_the_divided_maps() -> None:
    options = {"alpha": 1.0, "gamma": 1.0, "lambda_": 1.0, "adapter": "none"}
    scaled = build_loss("bmfi", {**options, "feature_norm": "teacher_rms"}, [2], [2])
    raw = build_loss("bmfi", options, [2], [2])
    # Divided by the teacher RMS 10 the maps are U and U/2: uniform spatial attentions; channel attentions
    # 2 softmax(2.8, 0.4) (teacher) and 2 softmax(1.4, 0.2) (student); per cell sum_c (S - T)^2 A^C_T.
    teacher_channel = 2 / (1 + math.exp(-2.4))
    student_channel = 2 / (1 + math.exp(-1.2))
    per_cell = 0.49 * teacher_channel + 0.01 * (2 - teacher_channel)
    expected = {"box": 4 * per_cell / 16, "attention": 2 * abs(student_channel - teacher_channel), "global": per_cell}
    assert expected == pytest.approx({"box": 0.225039, "attention": 0.593210, "global": 0.900154}, abs=1e-6)
    value, parts = scaled(bmfi_c6_inputs(10.0))
    assert parts == pytest.approx(expected, rel=1e-5)
    assert float(value) == pytest.approx(sum(expected.values()), rel=1e-5)
    assert raw(bmfi_c6_inputs(1.0))[1] == pytest.approx(expected, rel=1e-5)  # the raw loss on U and U/2
    # without the option the raw maps 10 U, 5 U saturate the channel softmaxes: 4 |sigmoid(24) - sigmoid(12)|
    saturated = 4 * abs(1 / (1 + math.exp(-24)) - 1 / (1 + math.exp(-12)))
    assert raw(bmfi_c6_inputs(10.0))[1]["attention"] == pytest.approx(saturated, abs=1e-6)  # fp32 attentions near 2
