"""FGFI (Wang et al., CVPR 2019): docs/kd/fgfi.md vectors A1-A3, an own numpy vector, gradients, empty GT."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from edgekd.distill.losses import KDInputs, build_loss
from edgekd.distill.losses.fgfi import imitation_masks, masked_imitation


def square_priors(stride: int, height: int, width: int, sides: list[float]) -> torch.Tensor:
    """Priors centred on the cells, row-major over (h, w, a)."""
    rows = []
    for i in range(height):
        for j in range(width):
            cx, cy = (j + 0.5) * stride, (i + 0.5) * stride
            rows += [[cx - s / 2, cy - s / 2, cx + s / 2, cy + s / 2] for s in sides]
    return torch.tensor(rows, dtype=torch.float64)


def np_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU matrix (len(a), len(b)), continuous coordinates (independent of torchvision)."""
    x1 = np.maximum(a[:, None, 0], b[None, :, 0])
    y1 = np.maximum(a[:, None, 1], b[None, :, 1])
    x2 = np.minimum(a[:, None, 2], b[None, :, 2])
    y2 = np.minimum(a[:, None, 3], b[None, :, 3])
    inter = np.clip(x2 - x1, 0, None) * np.clip(y2 - y1, 0, None)
    area = lambda r: (r[:, 2] - r[:, 0]) * (r[:, 3] - r[:, 1])  # noqa: E731
    return inter / (area(a)[:, None] + area(b)[None, :] - inter)


def inputs_for(student, teacher, strides, image, gt, priors, anchors, step=0) -> KDInputs:
    labels = [torch.zeros(len(g), dtype=torch.long) for g in gt]
    return KDInputs(student, teacher, strides, image, gt, labels, priors, anchors, step=step)


A2_GT = torch.tensor([[4.0, 4, 44, 36], [36, 30, 60, 62]], dtype=torch.float64)
A2_PRIORS = square_priors(16, 4, 4, [32, 16])


def test_a1_masked_imitation() -> None:
    teacher = torch.tensor([[1.0, 2], [3, 4]]).view(1, 1, 2, 2)
    student = torch.tensor([[0.0, 2], [3, 2]]).view(1, 1, 2, 2)
    mask = torch.tensor([[1, 0], [0, 1]], dtype=torch.bool).view(1, 2, 2)
    loss, positives = masked_imitation([student], [teacher], [mask])
    assert float(positives) == 2
    assert float(loss) == pytest.approx(1.25)
    assert float(loss) * 0.01 == pytest.approx(0.0125)


def test_a2_mask_construction() -> None:
    ious = np_iou(A2_PRIORS.numpy(), A2_GT.numpy())
    np.testing.assert_allclose(ious.max(axis=0), [0.636364, 0.408805], atol=1e-6)
    (mask,) = imitation_masks([A2_PRIORS], [2], [(4, 4)], [A2_GT], psi=0.5)
    union = [[0, 1, 0, 0], [1, 1, 1, 0], [0, 0, 1, 1], [0, 0, 1, 1]]
    assert mask[0].int().tolist() == union
    (only_g1,) = imitation_masks([A2_PRIORS], [2], [(4, 4)], [A2_GT[:1]], psi=0.5)
    assert only_g1[0].int().tolist() == [[0, 1, 0, 0], [1, 1, 1, 0], [0, 0, 0, 0], [0, 0, 0, 0]]
    (only_g2,) = imitation_masks([A2_PRIORS], [2], [(4, 4)], [A2_GT[1:]], psi=0.5)
    assert only_g2[0].int().tolist() == [[0, 0, 0, 0], [0, 0, 0, 0], [0, 0, 1, 1], [0, 0, 1, 1]]


def test_a2_loss_through_module() -> None:
    teacher = torch.arange(32, dtype=torch.float64).reshape(1, 2, 4, 4) / 10
    student = (0.5 * teacher).requires_grad_(True)
    loss = build_loss("fgfi", {"weight": 1.0, "adapter": "none"}, [2], [2])
    value, parts = loss(inputs_for([student], [teacher], [16], (64, 64), [A2_GT], [A2_PRIORS], [2]))
    assert parts["positives"] == 8
    assert float(value.detach()) == pytest.approx(0.875)
    assert parts["imitation"] == pytest.approx(0.875)


def test_a3_no_gt_gives_exact_zero() -> None:
    teacher = torch.randn(2, 2, 4, 4)
    student = torch.randn(2, 2, 4, 4, requires_grad=True)
    loss = build_loss("fgfi", {}, [2], [2])
    value, parts = loss(inputs_for([student], [teacher], [16], (64, 64), [torch.zeros(0, 4)] * 2, [A2_PRIORS], [2]))
    assert torch.isfinite(value.detach()) and float(value.detach()) == 0.0
    assert parts["positives"] == 0
    value.backward()
    assert student.grad is not None and float(student.grad.abs().sum()) == 0.0


@pytest.mark.parametrize("max_over", ["level", "all"])
def test_own_vector_two_levels_numpy(max_over: str) -> None:
    """Two levels (stride 8: 4x4, stride 16: 2x2), one square prior each, one GT; mask and loss in numpy."""
    rng = np.random.default_rng(0)
    priors = [square_priors(8, 4, 4, [16]), square_priors(16, 2, 2, [32])]
    gt = np.array([[2.0, 3, 20, 17]])
    ious = [np_iou(p.numpy(), gt)[:, 0] for p in priors]
    best = [i.max() for i in ious] if max_over == "level" else [max(i.max() for i in ious)] * 2
    masks = [(iou > 0.5 * b).reshape(h, h) for iou, b, h in zip(ious, best, (4, 2), strict=True)]
    teacher = [rng.normal(size=(1, 3, h, h)) for h in (4, 2)]
    student = [rng.normal(size=(1, 3, h, h)) for h in (4, 2)]
    se = sum(((s - t) ** 2).sum(axis=1)[0][m].sum() for s, t, m in zip(student, teacher, masks, strict=True))
    expected = se / (2 * max(1, sum(m.sum() for m in masks)))

    got_masks = imitation_masks(priors, [1, 1], [(4, 4), (2, 2)], [torch.tensor(gt)], 0.5, max_over)
    for got, want in zip(got_masks, masks, strict=True):
        assert got[0].numpy().tolist() == want.tolist()
    loss = build_loss("fgfi", {"weight": 1.0, "adapter": "none", "max_over": max_over}, [3, 3], [3, 3])
    feats_s = [torch.tensor(s, requires_grad=True) for s in student]
    value, _ = loss(
        inputs_for(feats_s, [torch.tensor(t) for t in teacher], [8, 16], (32, 32), [torch.tensor(gt)], priors, [1, 1])
    )
    assert float(value.detach()) == pytest.approx(expected)


def test_max_over_all_differs_from_level() -> None:
    """A GT equal to a coarse prior (IoU 1) leaves no low-IoU region on the fine level (best IoU 0.25) under
    'all'; per level, the fine level's own best (0.25) halves to a 0.125 threshold that most cells pass."""
    priors = [square_priors(8, 4, 4, [16]), square_priors(16, 2, 2, [32])]
    gt = [torch.tensor([[8.0, 8, 40, 40]], dtype=torch.float64)]
    per_level = imitation_masks(priors, [1, 1], [(4, 4), (2, 2)], gt, 0.5, "level")
    overall = imitation_masks(priors, [1, 1], [(4, 4), (2, 2)], gt, 0.5, "all")
    assert int(per_level[0].sum()) > 0 and int(overall[0].sum()) == 0
    assert overall[1][0].int().tolist() == per_level[1][0].int().tolist() == [[0, 0], [0, 1]]


def test_warmup_and_adapter_init() -> None:
    loss = build_loss("fgfi", {"warmup_steps": 5}, [2], [3])
    conv = loss.adapters[0]
    assert (
        conv.kernel_size == (3, 3)
        and float(conv.weight.detach().abs().max()) <= 2e-4
        and float(conv.bias.detach().abs().max()) == 0
    )
    teacher = torch.randn(1, 3, 4, 4)
    student = torch.randn(1, 2, 4, 4, requires_grad=True)
    gt = [A2_GT.float()]
    early, parts = loss(inputs_for([student], [teacher], [16], (64, 64), gt, [A2_PRIORS.float()], [2], step=4))
    late, _ = loss(inputs_for([student], [teacher], [16], (64, 64), gt, [A2_PRIORS.float()], [2], step=5))
    assert float(early.detach()) == 0.0 and parts["imitation"] > 0 and float(late.detach()) > 0


def test_gradient_reaches_student_and_adapter_not_teacher() -> None:
    teacher = torch.randn(1, 3, 4, 4, requires_grad=True)
    student = torch.randn(1, 2, 4, 4, requires_grad=True)
    loss = build_loss("fgfi", {}, [2], [3])
    value, _ = loss(inputs_for([student], [teacher], [16], (64, 64), [A2_GT.float()], [A2_PRIORS.float()], [2]))
    value.backward()
    assert teacher.grad is None
    assert student.grad is not None and float(student.grad.abs().sum()) > 0
    assert loss.adapters[0].weight.grad is not None and float(loss.adapters[0].weight.grad.abs().sum()) > 0
