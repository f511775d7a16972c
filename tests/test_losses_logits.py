"""Soft-label KD baseline (Hinton et al. 2014) on GT-matched boxes: numpy vectors, matching, gradients, no GT."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from edgekd.distill.losses import KDInputs, build_loss
from edgekd.errors import EdgeKDError

GT = [torch.tensor([[0.0, 0, 10, 10]]), torch.tensor([[20.0, 20, 30, 40]])]
BOXES = [
    torch.tensor([[0.0, 0, 10, 5], [0, 0, 10, 4.9], [30, 30, 40, 40]]),  # IoU 0.5 (kept), 0.49, 0
    torch.tensor([[20.0, 20, 30, 40], [0, 0, 5, 5]]),  # IoU 1, 0
]


def inputs_for(student_logits, teacher_logits, gt=GT, activation="sigmoid") -> KDInputs:
    feats = [torch.zeros(2, 1, 2, 2)]
    labels = [torch.zeros(len(g), dtype=torch.long) for g in gt]
    return KDInputs(
        feats,
        feats,
        [16],
        (32, 32),
        gt,
        labels,
        [],
        [],
        student_logits=student_logits,
        teacher_logits=teacher_logits,
        logit_boxes=BOXES,
        logit_activation=activation,
    )


def np_softmax(x: np.ndarray) -> np.ndarray:
    e = np.exp(x - x.max())
    return e / e.sum()


def test_softmax_kl_numpy_on_matched_boxes() -> None:
    rng = np.random.default_rng(10)
    s = [rng.normal(size=(3, 4)), rng.normal(size=(2, 4))]
    t = [rng.normal(size=(3, 4)), rng.normal(size=(2, 4))]
    kl = []
    for b, i in ((0, 0), (1, 0)):  # the matched boxes
        pt, ps = np_softmax(t[b][i] / 3.0), np_softmax(s[b][i] / 3.0)
        kl.append((pt * np.log(pt / ps)).sum() * 9.0)
    loss = build_loss("logits", {"temperature": 3.0, "weight": 2.0}, [1], [1])
    value, parts = loss(inputs_for([torch.tensor(x) for x in s], [torch.tensor(x) for x in t], activation="softmax"))
    assert parts["matched"] == 2
    assert float(value.detach()) == pytest.approx(2.0 * np.mean(kl), rel=1e-6)


def test_sigmoid_binary_kl_numpy() -> None:
    s = [np.array([[1.0, -2.0], [0, 0], [0, 0]]), np.array([[0.5, 3.0], [0, 0]])]
    t = [np.array([[2.0, -1.0], [5, 5], [5, 5]]), np.array([[-0.5, 1.0], [5, 5]])]

    def binary_kl(si: np.ndarray, ti: np.ndarray) -> float:
        ps, pt = 1 / (1 + np.exp(-si / 2)), 1 / (1 + np.exp(-ti / 2))
        return float((pt * np.log(pt / ps) + (1 - pt) * np.log((1 - pt) / (1 - ps))).sum() * 4)

    expected = (binary_kl(s[0][0], t[0][0]) + binary_kl(s[1][0], t[1][0])) / 2
    value, _ = build_loss("logits", {}, [1], [1])(
        inputs_for([torch.tensor(x) for x in s], [torch.tensor(x) for x in t])
    )
    assert float(value.detach()) == pytest.approx(expected, rel=1e-6)


def test_identical_logits_give_zero() -> None:
    logits = [torch.randn(3, 5), torch.randn(2, 5)]
    for activation in ("sigmoid", "softmax"):
        value, _ = build_loss("logits", {}, [1], [1])(inputs_for(logits, logits, activation=activation))
        assert float(value) == pytest.approx(0.0, abs=1e-6)


def test_gradient_reaches_student_logits_not_teacher() -> None:
    student = [torch.randn(3, 4, requires_grad=True), torch.randn(2, 4, requires_grad=True)]
    teacher = [torch.randn(3, 4, requires_grad=True), torch.randn(2, 4, requires_grad=True)]
    value, _ = build_loss("logits", {}, [1], [1])(inputs_for(student, teacher))
    value.backward()
    assert all(t.grad is None for t in teacher)
    assert float(student[0].grad[0].abs().sum()) > 0 and float(student[0].grad[1:].abs().sum()) == 0


def test_no_gt_gives_exact_zero_connected_to_student() -> None:
    student = [torch.randn(3, 4, requires_grad=True), torch.randn(2, 4, requires_grad=True)]
    empty = [torch.zeros(0, 4), torch.zeros(0, 4)]
    value, parts = build_loss("logits", {}, [1], [1])(
        inputs_for(student, [torch.randn(3, 4), torch.randn(2, 4)], gt=empty)
    )
    assert float(value.detach()) == 0.0 and parts["matched"] == 0
    value.backward()
    assert float(student[0].grad.abs().sum()) == 0.0


def test_missing_logits_and_bad_activation_are_named_errors() -> None:
    loss = build_loss("logits", {}, [1], [1])
    with pytest.raises(EdgeKDError, match="student_logits"):
        loss(inputs_for(None, None))
    with pytest.raises(EdgeKDError, match="logit_activation"):
        loss(
            inputs_for(
                [torch.randn(3, 4), torch.randn(2, 4)], [torch.randn(3, 4), torch.randn(2, 4)], activation="tanh"
            )
        )
