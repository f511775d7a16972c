"""FitNets-style hint baseline (Romero et al., ICLR 2015): numpy vector, gradients, no-GT batch."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from edgekd.distill.losses import KDInputs, build_loss


def inputs_for(student, teacher, gt) -> KDInputs:
    labels = [torch.zeros(len(g), dtype=torch.long) for g in gt]
    return KDInputs(student, teacher, [8, 16], (32, 32), gt, labels, [], [])


def test_own_vector_numpy_1x1_adapter_two_levels() -> None:
    rng = np.random.default_rng(9)
    student = [rng.normal(size=(2, 2, 4, 4)), rng.normal(size=(2, 2, 2, 2))]
    teacher = [rng.normal(size=(2, 3, 4, 4)), rng.normal(size=(2, 3, 2, 2))]
    loss = build_loss("fitnet", {"weight": 0.5}, [2, 2], [3, 3]).double()
    expected = 0.0
    for adapter, s, t in zip(loss.adapters, student, teacher, strict=True):
        w = adapter.weight.detach().numpy()[:, :, 0, 0]  # (3, 2)
        b = adapter.bias.detach().numpy()
        adapted = np.einsum("oc,bchw->bohw", w, s) + b[None, :, None, None]
        expected += ((adapted - t) ** 2).mean()
    feats = [torch.tensor(s, requires_grad=True) for s in student]
    value, parts = loss(inputs_for(feats, [torch.tensor(t) for t in teacher], [torch.zeros(0, 4)] * 2))
    assert float(value.detach()) == pytest.approx(0.5 * expected, rel=1e-6)
    assert parts["l0"] + parts["l1"] == pytest.approx(expected, rel=1e-6)


def test_identity_adapter_plain_mse() -> None:
    student = torch.tensor([[[[1.0, 2], [3, 4]]]], requires_grad=True)
    teacher = torch.tensor([[[[0.0, 2], [1, 4]]]])
    loss = build_loss("fitnet", {"adapter": "none", "levels": [0]}, [1, 1], [1, 1])
    value, _ = loss(
        inputs_for([student, torch.zeros(1, 1, 1, 1)], [teacher, torch.ones(1, 1, 1, 1)], [torch.zeros(0, 4)])
    )
    assert float(value.detach()) == pytest.approx((1 + 4) / 4)


def test_gradient_reaches_student_and_adapter_not_teacher() -> None:
    student = [torch.randn(1, 2, 4, 4, requires_grad=True), torch.randn(1, 2, 2, 2, requires_grad=True)]
    teacher = [torch.randn(1, 2, 4, 4, requires_grad=True), torch.randn(1, 2, 2, 2, requires_grad=True)]
    loss = build_loss("fitnet", {}, [2, 2], [2, 2])
    assert all(isinstance(a, torch.nn.Conv2d) for a in loss.adapters)  # kept with equal channels
    value, _ = loss(inputs_for(student, teacher, [torch.tensor([[0.0, 0, 8, 8]])]))
    value.backward()
    assert all(t.grad is None for t in teacher)
    assert all(float(s.grad.abs().sum()) > 0 for s in student)
    assert all(float(a.weight.grad.abs().sum()) > 0 for a in loss.adapters)


def test_no_gt_needed_value_is_finite_and_unchanged() -> None:
    student = [torch.randn(2, 2, 4, 4), torch.randn(2, 2, 2, 2)]
    teacher = [torch.randn(2, 2, 4, 4), torch.randn(2, 2, 2, 2)]
    loss = build_loss("fitnet", {}, [2, 2], [2, 2])
    with_gt, _ = loss(inputs_for(student, teacher, [torch.tensor([[0.0, 0, 8, 8]]), torch.zeros(0, 4)]))
    without, _ = loss(inputs_for(student, teacher, [torch.zeros(0, 4)] * 2))
    assert torch.isfinite(without.detach()) and float(without.detach()) == float(with_gt.detach())
