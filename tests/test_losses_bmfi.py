"""BMFI with the corrected box mask (Lan & Tian, WACV 2024; FGD-style terms): docs/kd/bmfi.md vectors C3 and C5
(intended mask), own numpy vectors, gradients, empty GT."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from edgekd.distill.losses import KDInputs, build_loss
from edgekd.distill.losses.bmfi import bmfi_terms, box_mask, fgd_attention

C3_T = torch.tensor([[[1.0, 2], [3, 4]], [[0, 0], [0, 2]]], dtype=torch.float64).unsqueeze(0)
C5_INTENDED = [
    [0.022992, 0.033454, 0.037908, 0.033454],
    [0.033454, 0.0625, 0.0625, 0.048675],
    [0.037908, 0.0625, 0.0625, 0.055156],
    [0.033454, 0.048675, 0.055156, 0.048675],
]


def np_patch_mask(size: tuple[int, int], cells: list[tuple[int, int, int, int]]) -> np.ndarray:
    """Intended mask from explicit cell ranges (c0, r0, c1, r1): Gaussian patch exp(-1/2((x-w)/w)^2) ... on a
    2w x 2h grid, core (offset w//2, h//2) = 1, / 4wh, core placed on the box cells, max over boxes."""
    mask = np.zeros(size)
    for c0, r0, c1, r1 in cells:
        w, h = c1 - c0, r1 - r0
        for y in range(2 * h):
            for x in range(2 * w):
                core = h // 2 <= y < h // 2 + h and w // 2 <= x < w // 2 + w
                value = 1.0 if core else np.exp(-0.5 * ((x - w) / w) ** 2) * np.exp(-0.5 * ((y - h) / h) ** 2)
                row, col = r0 - h // 2 + y, c0 - w // 2 + x
                if 0 <= row < size[0] and 0 <= col < size[1]:
                    mask[row, col] = max(mask[row, col], value / (4 * w * h))
    return mask


def inputs_for(student, teacher, gt, strides) -> KDInputs:
    labels = [torch.zeros(len(g), dtype=torch.long) for g in gt]
    return KDInputs(student, teacher, strides, (64, 64), gt, labels, [], [])


def test_c3_attentions_and_terms() -> None:
    spatial, channel = fgd_attention(C3_T, 0.5)
    torch.testing.assert_close(
        spatial[0], torch.tensor([[0.025075, 0.068161], [0.185282, 3.721482]], dtype=torch.float64), atol=1e-6, rtol=0
    )
    torch.testing.assert_close(channel[0], torch.tensor([1.964028, 0.035972], dtype=torch.float64), atol=1e-6, rtol=0)
    mask = torch.tensor([[0.25, 0.25], [0, 0]], dtype=torch.float64).unsqueeze(0)
    box, attention, global_ = bmfi_terms(0.5 * C3_T, C3_T, mask, 0.5)
    assert float(box) == pytest.approx(0.0365457, abs=1e-7)
    assert float(global_) == pytest.approx(7.583799, abs=1e-6)
    assert float(attention) == pytest.approx(2.294398, abs=1e-6)


def test_c5_intended_mask_placement() -> None:
    mask = box_mask(torch.tensor([[16.0, 16, 32, 32]]), 8, (16, 16))
    np.testing.assert_allclose(mask[1:5, 1:5].numpy(), C5_INTENDED, atol=1e-6)
    outside = mask.clone()
    outside[1:5, 1:5] = 0
    assert float(outside.abs().sum()) == 0.0
    # the reference's misplacement empties this mask and the one of a box at cells 12-13; here it lands on it
    far = box_mask(torch.tensor([[96.0, 96, 112, 112]]), 8, (16, 16))
    np.testing.assert_allclose(far[11:15, 11:15].numpy(), C5_INTENDED, atol=1e-6)
    assert float(far.sum()) == pytest.approx(float(mask.sum()))


def test_own_vector_odd_boxes_border_crop_and_overlap() -> None:
    boxes = torch.tensor([[8.0, 16, 31, 24], [0, 0, 13, 9], [10, 10, 30, 40]])
    cells = [(1, 2, 4, 3), (0, 0, 2, 2), (1, 1, 4, 5)]  # floor(x1/8), floor(y1/8), ceil(x2/8), ceil(y2/8)
    got = box_mask(boxes, 8, (6, 7)).numpy()
    np.testing.assert_allclose(got, np_patch_mask((6, 7), cells), atol=1e-7)


def test_own_vector_module_numpy() -> None:
    rng = np.random.default_rng(4)
    teacher = rng.normal(size=(2, 3, 6, 7))
    student = rng.normal(size=(2, 3, 6, 7))
    gt = [
        torch.tensor([[8.0, 16, 31, 24], [10, 10, 30, 40]], dtype=torch.float64),
        torch.zeros(0, 4, dtype=torch.float64),
    ]
    masks = np.stack([np_patch_mask((6, 7), [(1, 2, 4, 3), (1, 1, 4, 5)]), np.zeros((6, 7))])

    def attention(f: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        a = np.abs(f)
        s = np.exp(a.mean(axis=1) / 0.5)
        c = np.exp(a.mean(axis=(2, 3)) / 0.5)
        return 42 * s / s.sum(axis=(1, 2), keepdims=True), 3 * c / c.sum(axis=1, keepdims=True)

    st, ct = attention(teacher)
    ss, cs = attention(student)
    wse = (student - teacher) ** 2 * st[:, None] * ct[:, :, None, None]
    box = (wse * masks[:, None]).sum() / 2
    glob = wse.sum() / (2 * 42)
    att = (np.abs(cs - ct).sum() + np.abs(ss - st).sum()) / 2
    options = {"weight": 2.0, "alpha": 0.3, "gamma": 0.2, "lambda_": 0.1, "adapter": "none"}
    loss = build_loss("bmfi", options, [3], [3])
    feats = [torch.tensor(student, requires_grad=True)]
    value, parts = loss(inputs_for(feats, [torch.tensor(teacher)], gt, [8]))
    assert parts["box"] == pytest.approx(box, rel=1e-5)
    assert parts["global"] == pytest.approx(glob, rel=1e-5)
    assert parts["attention"] == pytest.approx(att, rel=1e-5)
    assert float(value.detach()) == pytest.approx(2.0 * (0.3 * box + 0.2 * att + 0.1 * glob), rel=1e-5)


def test_gradient_reaches_student_and_adapter_not_teacher() -> None:
    student = torch.randn(1, 2, 4, 4, requires_grad=True)
    teacher = torch.randn(1, 3, 4, 4, requires_grad=True)
    loss = build_loss("bmfi", {"lambda_": 1e-3}, [2], [3])
    value, _ = loss(inputs_for([student], [teacher], [torch.tensor([[0.0, 0, 16, 16]])], [8]))
    value.backward()
    assert teacher.grad is None
    assert float(student.grad.abs().sum()) > 0 and float(loss.adapters[0].weight.grad.abs().sum()) > 0


def test_empty_gt_box_grain_is_zero_others_finite() -> None:
    student = torch.randn(2, 2, 4, 4, requires_grad=True)
    loss = build_loss("bmfi", {"lambda_": 1e-3}, [2], [2])
    value, parts = loss(inputs_for([student], [torch.randn(2, 2, 4, 4)], [torch.zeros(0, 4)] * 2, [8]))
    assert parts["box"] == 0.0
    assert np.isfinite(parts["attention"]) and np.isfinite(parts["global"]) and torch.isfinite(value.detach())
