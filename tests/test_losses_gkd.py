"""GKD, edgekd's differentiable definition (Lan & Tian, WACV 2024): docs/kd/gkd.md vectors C1 and C4, an own
numpy vector, gradients, empty GT."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from edgekd.distill.losses import KDInputs, build_loss, gradcam_weights
from edgekd.errors import EdgeKDError

C1_A = torch.tensor([[[1.0, 2], [3, 4]], [[4, 3], [2, 1]]]).unsqueeze(0)
C1_G_TEACHER = torch.tensor([[[0.1, 0.1], [0.1, 0.1]], [[-0.2, 0], [0, 0]]]).unsqueeze(0)
C1_G_STUDENT = torch.tensor([[[0.0, 0], [0, 0]], [[0.1, 0.1], [0.1, 0.1]]]).unsqueeze(0)
C3_T = torch.tensor([[[1.0, 2], [3, 4]], [[0, 0], [0, 2]]]).unsqueeze(0)


def inputs_for(student, teacher, grads, gt=None) -> KDInputs:
    batch = student[0].shape[0]
    gt = gt if gt is not None else [torch.zeros(0, 4)] * batch
    labels = [torch.zeros(len(g), dtype=torch.long) for g in gt]
    return KDInputs(student, teacher, [8] * len(student), (16, 16), gt, labels, [], [], teacher_feature_grads=grads)


def minmax(x: torch.Tensor) -> torch.Tensor:
    return (x - x.min()) / (x.max() - x.min())


def test_c1_gradcam_maps() -> None:
    (teacher_map,) = gradcam_weights([C1_A], [C1_G_TEACHER])
    # ReLU(sum alpha A) = [[0, .05], [.2, .35]] -> normalised to sum 1
    torch.testing.assert_close(teacher_map[0], torch.tensor([[0.0, 0.05], [0.2, 0.35]]) / 0.6)
    torch.testing.assert_close(minmax(teacher_map[0]), torch.tensor([[0.0, 1 / 7], [4 / 7, 1]]))
    (student_map,) = gradcam_weights([C1_A], [C1_G_STUDENT])
    torch.testing.assert_close(minmax(student_map[0]), torch.tensor([[1.0, 2 / 3], [1 / 3, 0]]))
    assert float(student_map.sum()) == pytest.approx(1.0)


def test_all_zero_cam_falls_back_to_uniform() -> None:
    (uniform,) = gradcam_weights([C1_A], [torch.zeros_like(C1_A)])
    torch.testing.assert_close(uniform, torch.full((1, 2, 2), 0.25))
    (negative,) = gradcam_weights([C1_A], [-C1_G_STUDENT])  # every weighted sum < 0 -> ReLU -> 0
    torch.testing.assert_close(negative, torch.full((1, 2, 2), 0.25))


def test_c4_weights_times_c3_error() -> None:
    """docs/kd/gkd.md vector C4: w = C1's teacher map / its sum, (F_S - F_T)^2 of C3 (F_S = 0.5 F_T) -> 3.75."""
    (weights,) = gradcam_weights([C1_A], [C1_G_TEACHER])
    squared_error = ((0.5 * C3_T - C3_T) ** 2).sum(1)
    assert float((weights * squared_error).sum()) == pytest.approx(3.75)


def test_c4_through_module_with_c1_map() -> None:
    """Teacher features = C1's A (so the map is C1's); student = A + (C3 error) gives C4's 3.75."""
    student = (C1_A - 0.5 * C3_T).requires_grad_(True)  # (S - T)^2 = 0.25 * C3_T^2
    loss = build_loss("gkd", {"weight": 1.0}, [2], [2])
    value, parts = loss(inputs_for([student], [C1_A], [C1_G_TEACHER]))
    assert float(value.detach()) == pytest.approx(3.75)
    assert parts["l0"] == pytest.approx(3.75)


def test_own_vector_numpy_batch_two_levels() -> None:
    rng = np.random.default_rng(3)
    shapes = [(2, 3, 4, 4), (2, 3, 2, 2)]
    teacher = [rng.normal(size=s) for s in shapes]
    grads = [rng.normal(size=s) for s in shapes]
    student = [rng.normal(size=s) for s in shapes]
    expected = 0.0
    for t, g, s in zip(teacher, grads, student, strict=True):
        alpha = g.mean(axis=(2, 3))[:, :, None, None]
        cam = np.maximum((alpha * t).sum(axis=1), 0)
        sums = cam.sum(axis=(1, 2), keepdims=True)
        w = np.where(sums > 0, cam / np.where(sums > 0, sums, 1), 1 / (t.shape[2] * t.shape[3]))
        expected += ((w * ((s - t) ** 2).sum(axis=1)).sum(axis=(1, 2))).mean()
    loss = build_loss("gkd", {"weight": 0.5}, [3, 3], [3, 3])
    feats = [torch.tensor(s, requires_grad=True) for s in student]
    value, _ = loss(inputs_for(feats, [torch.tensor(t) for t in teacher], [torch.tensor(g) for g in grads]))
    assert float(value.detach()) == pytest.approx(0.5 * expected, rel=1e-6)


def test_missing_grads_is_a_named_error() -> None:
    loss = build_loss("gkd", {}, [2], [2])
    with pytest.raises(EdgeKDError, match="teacher_feature_grads"):
        loss(inputs_for([C1_A.clone()], [C1_A], None))


def test_gradient_reaches_student_and_adapter_not_teacher_or_grads() -> None:
    student = torch.randn(1, 2, 2, 2, requires_grad=True)
    teacher = C1_A.repeat(1, 2, 1, 1).requires_grad_(True)  # 4 channels -> 1x1 adapter
    grads = C1_G_TEACHER.repeat(1, 2, 1, 1).requires_grad_(True)
    loss = build_loss("gkd", {}, [2], [4])
    value, _ = loss(inputs_for([student], [teacher], [grads]))
    value.backward()
    assert teacher.grad is None and grads.grad is None
    assert float(student.grad.abs().sum()) > 0
    assert float(loss.adapters[0].weight.grad.abs().sum()) > 0


def test_empty_gt_is_finite() -> None:
    """No GT: the teacher's background-only loss still has gradients; zero gradients -> uniform weights."""
    student = torch.randn(2, 2, 2, 2, requires_grad=True)
    teacher = torch.randn(2, 2, 2, 2)
    loss = build_loss("gkd", {"weight": 1.0}, [2], [2])
    value, _ = loss(inputs_for([student], [teacher], [torch.zeros_like(teacher)]))
    expected = ((student.detach() - teacher) ** 2).sum(1).mean(dim=(1, 2)).mean()
    assert torch.isfinite(value.detach()) and float(value.detach()) == pytest.approx(float(expected))
