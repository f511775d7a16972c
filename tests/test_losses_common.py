"""Every registered loss on one realistic small batch: gradient reaches the student (and the loss's own
adapters), never the teacher; a batch without GT is finite, and exactly 0 where the loss needs GT."""

from __future__ import annotations

import math

import pytest
import torch

from edgekd.distill.losses import LOSSES, KDInputs, build_loss

STRIDES = [8, 16]
IMAGE = (32, 48)
NEEDS_GT = {"fgfi", "logits"}  # the whole loss needs GT; bmfi's box grain and global's fg/soft terms do too
OPTIONS = {"bmfi": {"lambda_": 1e-3}}


def square_priors(stride: int, height: int, width: int) -> torch.Tensor:
    ys, xs = torch.meshgrid(torch.arange(height), torch.arange(width), indexing="ij")
    cx, cy = (xs.flatten() + 0.5) * stride, (ys.flatten() + 0.5) * stride
    per_side = [torch.stack([cx - s / 2, cy - s / 2, cx + s / 2, cy + s / 2], -1) for s in (4 * stride, 6 * stride)]
    return torch.stack(per_side, 1).reshape(-1, 4)


def batch(with_gt: bool, teacher_leaf: bool = False) -> tuple[KDInputs, list[torch.Tensor], list[torch.Tensor]]:
    generator = torch.Generator().manual_seed(11)
    sizes = [(IMAGE[0] // s, IMAGE[1] // s) for s in STRIDES]
    student = [torch.randn(2, 3, h, w, generator=generator, requires_grad=True) for h, w in sizes]
    teacher = [torch.randn(2, 4, h, w, generator=generator, requires_grad=teacher_leaf) for h, w in sizes]
    priors = [square_priors(s, h, w) for s, (h, w) in zip(STRIDES, sizes, strict=True)]
    boxes = [torch.tensor([[2.0, 3, 20, 25], [20, 4, 46, 30]]), torch.tensor([[8.0, 8, 24, 28]])]
    labels = [torch.tensor([0, 2]), torch.tensor([1])]
    if not with_gt:
        boxes, labels = [torch.zeros(0, 4)] * 2, [torch.zeros(0, dtype=torch.long)] * 2
    all_priors = torch.cat(priors)
    student_logits = [torch.randn(len(all_priors), 3, generator=generator, requires_grad=True) for _ in range(2)]
    teacher_logits = [
        torch.randn(len(all_priors), 3, generator=generator, requires_grad=teacher_leaf) for _ in range(2)
    ]
    grads = [torch.randn(t.shape, generator=generator, requires_grad=teacher_leaf) for t in teacher]
    inputs = KDInputs(
        student,
        teacher,
        STRIDES,
        IMAGE,
        boxes,
        labels,
        priors,
        [2, 2],
        teacher_feature_grads=grads,
        student_logits=student_logits,
        teacher_logits=teacher_logits,
        logit_boxes=[all_priors] * 2,
        step=1000,
    )
    return inputs, student + student_logits, teacher + teacher_logits + grads


@pytest.mark.parametrize("name", sorted(LOSSES))
def test_gradient_reaches_student_never_teacher(name: str) -> None:
    inputs, student, teacher = batch(with_gt=True, teacher_leaf=True)
    loss = build_loss(name, OPTIONS.get(name, {}), [3, 3], [4, 4])
    value, parts = loss(inputs)
    assert value.dim() == 0 and math.isfinite(float(value.detach())) and float(value.detach()) > 0
    assert all(isinstance(v, float) for v in parts.values())
    value.backward()
    assert all(t.grad is None for t in teacher)
    assert any(s.grad is not None and float(s.grad.abs().sum()) > 0 for s in student)
    for parameter in loss.parameters():
        assert parameter.grad is not None and float(parameter.grad.abs().sum()) > 0


@pytest.mark.parametrize("name", sorted(LOSSES))
def test_teacher_without_requires_grad(name: str) -> None:
    inputs, _, teacher = batch(with_gt=True, teacher_leaf=False)
    value, _ = build_loss(name, OPTIONS.get(name, {}), [3, 3], [4, 4])(inputs)
    value.backward()
    assert all(not t.requires_grad and t.grad is None for t in teacher)


@pytest.mark.parametrize("name", sorted(LOSSES))
def test_batch_without_gt(name: str) -> None:
    inputs, _, _ = batch(with_gt=False)
    loss = build_loss(name, OPTIONS.get(name, {}), [3, 3], [4, 4])
    value, parts = loss(inputs)
    assert math.isfinite(float(value.detach())) and all(math.isfinite(v) for v in parts.values())
    if name in NEEDS_GT:
        assert float(value.detach()) == 0.0
    if name == "bmfi":
        assert parts["box"] == 0.0
    if name == "global":
        assert parts["fg"] == 0.0 and parts["soft"] == 0.0
    value.backward()  # still a valid graph


def test_autocast_bf16_gives_finite_fp32_losses() -> None:
    inputs, _, _ = batch(with_gt=True)
    for name in sorted(LOSSES):
        loss = build_loss(name, OPTIONS.get(name, {}), [3, 3], [4, 4])
        with torch.autocast(device_type="cpu", dtype=torch.bfloat16):
            value, _ = loss(inputs)
        assert value.dtype == torch.float32 and math.isfinite(float(value.detach())), name
