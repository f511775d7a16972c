"""Global-knowledge KD (Tang et al., ECCV 2022): PGM functions and RDM loss. docs/kd/global.md vectors D1-D5, own
numpy vectors, gradients, empty GT."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from edgekd.distill.losses import KDInputs, build_loss
from edgekd.distill.losses.global_kd import decoupled_point_losses, robust_weight
from edgekd.distill.losses.global_prototypes import (
    assign_levels,
    batch_instance_features,
    density_keep,
    generate_prototypes,
    instance_features,
    matching_pursuit,
    pgm_candidates,
)
from edgekd.distill.losses.logits import distill_kl
from edgekd.errors import EdgeKDError

D4_S = torch.tensor([(1.0, 0), (0.9, 0.1), (0, 1), (0.1, 0.9)], dtype=torch.float64)
D4_T = torch.tensor([(1.0, 0.1), (1, 0), (0.1, 1), (0, 1)], dtype=torch.float64)


def np_density(f: np.ndarray) -> np.ndarray:
    f = f / np.linalg.norm(f, axis=1, keepdims=True)
    return np.exp(-(((1 - f @ f.T) / 0.1) ** 2)).sum(axis=1)


def np_matching_pursuit(fs: np.ndarray, ft: np.ndarray, k: int, alpha: float, keep: np.ndarray) -> list[int]:
    """The reference's form: full (atoms, dims, instances) error tensors."""
    rs = (fs / np.linalg.norm(fs, axis=1, keepdims=True)).T
    rt = (ft / np.linalg.norm(ft, axis=1, keepdims=True)).T
    allowed = np.flatnonzero(keep)
    ps, pt = rs[:, allowed].copy(), rt[:, allowed].copy()
    picked = []
    for _ in range(k):
        a, b = ps.T @ rs, pt.T @ rt
        ws = (alpha * (a + b) + a) / (1 + 2 * alpha)
        wt = (alpha * (a + b) + b) / (1 + 2 * alpha)
        ea = ps.T[:, :, None] * ws[:, None, :] - rs[None]
        eb = pt.T[:, :, None] * wt[:, None, :] - rt[None]
        err = (ea**2).sum((1, 2)) + (eb**2).sum((1, 2)) + alpha * ((ws - wt) ** 2).sum(1)
        best = int(np.argmin(err))
        picked.append(int(allowed[best]))
        rs = rs - np.outer(ps[:, best], ws[best])
        rt = rt - np.outer(pt[:, best], wt[best])
    return list(dict.fromkeys(picked))


def test_d1_robust_weight() -> None:
    protos = torch.tensor([[[1.0, 0], [0, 1]]])
    r = robust_weight(torch.tensor([[1.0, 0]]), torch.tensor([[1.0, 1]]), protos, protos)
    assert float(r[0]) == pytest.approx(0.707107, abs=1e-6)


def test_robust_weight_is_clamped_at_zero() -> None:
    """cos 1 for the student, -1 for the teacher: the reference's r would be -1 (a reward for diverging)."""
    protos = torch.tensor([[[1.0, 0]]])
    r = robust_weight(torch.tensor([[1.0, 0]]), torch.tensor([[-1.0, 0]]), protos, protos)
    assert float(r[0]) == 0.0


def test_d2_decoupled_point_losses() -> None:
    student = torch.tensor([[1.0, 2], [3, 4]]).view(1, 1, 2, 2)
    teacher = torch.tensor([[0.0, 2], [1, 4]]).view(1, 1, 2, 2)
    weights = torch.tensor([[0.5, 0], [0, 0]]).view(1, 2, 2)
    cover = weights > 0
    fg, bg = decoupled_point_losses(student, teacher, weights, cover)
    assert float(fg) == pytest.approx(0.5)
    assert float(bg) * 4 == pytest.approx(2.666667, abs=1e-6)


def test_d3_weighted_soft_label_kl() -> None:
    student, teacher = (
        torch.tensor([[1.0, 0, 0]], dtype=torch.float64),
        torch.tensor([[2.0, 0, 0]], dtype=torch.float64),
    )
    kl = distill_kl(student, teacher, 2.0, "softmax", "mean")
    assert 0.5 * float(kl[0]) == pytest.approx(0.0206603, abs=1e-7)


def test_d4_matching_pursuit() -> None:
    """D4 is mirror-symmetric (swap the two axes: instance 1 <-> 3, 0 <-> 2), so atoms 1 and 3 tie exactly
    and rounding picks one: float32 inputs give the documented [1, 2], float64 inputs its mirror [3, 0]."""
    assert matching_pursuit(D4_S.float(), D4_T.float(), k=2, alpha=10.0).tolist() == [1, 2]
    assert matching_pursuit(D4_S, D4_T, k=2, alpha=10.0).tolist() in ([1, 2], [3, 0])


def test_matching_pursuit_matches_reference_form_numpy() -> None:
    rng = np.random.default_rng(5)
    fs, ft = rng.normal(size=(12, 5)), rng.normal(size=(12, 7))
    keep = rng.random(12) > 0.3
    expected = np_matching_pursuit(fs, ft, k=4, alpha=10.0, keep=keep)
    got = matching_pursuit(torch.tensor(fs), torch.tensor(ft), k=4, alpha=10.0, candidates=torch.tensor(keep))
    assert got.tolist() == expected


def test_d5_density_filter_and_tie_guard() -> None:
    np.testing.assert_allclose(np_density(D4_T.numpy()), [1.99754] * 4, atol=1e-5)
    assert density_keep(D4_T, D4_T).tolist() == [True] * 4  # reference: all False, then crash
    f = torch.tensor([(1.0, 0), (0.95, 0.05), (0.9, 0.1), (0, 1)], dtype=torch.float64)
    np.testing.assert_allclose(np_density(f.numpy()), [2.996075, 2.999525, 2.995982, 1.0], atol=1e-6)
    assert density_keep(f, f).tolist() == [True, True, False, False]


def test_generate_prototypes_returns_raw_features_of_chosen() -> None:
    fs, ft = 3 * D4_S, 5 * D4_T
    proto_s, proto_t = generate_prototypes(fs, ft, k=2, alpha=10.0)
    keep = density_keep(fs, ft).numpy()
    chosen = np_matching_pursuit(fs.numpy(), ft.numpy(), 2, 10.0, keep)
    torch.testing.assert_close(proto_s, fs[chosen])
    torch.testing.assert_close(proto_t, ft[chosen])


def test_instance_features_inclusive_cells_numpy() -> None:
    rng = np.random.default_rng(6)
    fmap = rng.normal(size=(3, 5, 6))
    boxes = np.array([[0.0, 0, 16, 8], [17, 9, 47, 39], [40, 30, 41, 31], [-5, -5, 100, 100]])
    expected = []
    for x1, y1, x2, y2 in boxes:
        c0, r0 = min(max(int(x1 // 8), 0), 5), min(max(int(y1 // 8), 0), 4)
        c1, r1 = max(min(int(x2 // 8), 5), c0), max(min(int(y2 // 8), 4), r0)
        expected.append(fmap[:, r0 : r1 + 1, c0 : c1 + 1].mean(axis=(1, 2)))
    got = instance_features(torch.tensor(fmap), torch.tensor(boxes), 8)
    np.testing.assert_allclose(got.numpy(), np.stack(expected), atol=1e-12)
    per_level = batch_instance_features([torch.tensor(fmap)[None]], [torch.tensor(boxes)], [8])
    np.testing.assert_allclose(per_level[0].numpy(), np.stack(expected), atol=1e-12)
    assert instance_features(torch.tensor(fmap), torch.zeros(0, 4), 8).shape == (0, 3)


def test_assign_levels_and_candidates() -> None:
    boxes = torch.tensor([[0.0, 0, 100, 100], [0, 0, 150, 150], [0, 0, 1000, 1000], [5, 5, 5, 5]])
    assert assign_levels(boxes, 5).tolist() == [0, 1, 4, 0]  # floor(log2(s/56)): -0.2, 1.4, 4.2 (clamped)
    assert assign_levels(boxes, 5, canonical=32.0).tolist() == [1, 2, 4, 0]
    assert pgm_candidates(torch.tensor([[0.0, 0, 31, 40], [0, 0, 30, 40]])).tolist() == [True, False]


# ---- the RDM loss module -------------------------------------------------------------------------------------

GT = [torch.tensor([[0.0, 0, 16, 16], [0, 0, 32, 32]], dtype=torch.float64), torch.zeros(0, 4, dtype=torch.float64)]
LABELS = [torch.tensor([0, 1]), torch.zeros(0, dtype=torch.long)]
LOGIT_BOXES = [
    torch.tensor([[0.0, 0, 16, 14], [0, 0, 30, 32], [40, 40, 60, 60]], dtype=torch.float64),
    torch.tensor([[0.0, 0, 16, 16], [8, 8, 24, 24]], dtype=torch.float64),
]


def make_inputs(student, teacher, student_logits=None, teacher_logits=None, gt=GT, labels=LABELS, epoch=1):
    return KDInputs(
        student,
        teacher,
        [8, 16],
        (32, 32),
        gt,
        labels,
        [],
        [],
        student_logits=student_logits,
        teacher_logits=teacher_logits,
        logit_boxes=LOGIT_BOXES if student_logits is not None else None,
        epoch=epoch,
        max_epochs=4,
    )


def np_cos_max(f: np.ndarray, protos: np.ndarray) -> float:
    return float(max(f @ p / (np.linalg.norm(f) * np.linalg.norm(p)) for p in protos))


def test_own_vector_module_numpy() -> None:
    rng = np.random.default_rng(7)
    student = [rng.normal(size=(2, 2, 4, 4)), rng.normal(size=(2, 2, 2, 2))]
    teacher = [rng.normal(size=(2, 3, 4, 4)), rng.normal(size=(2, 3, 2, 2))]
    s_logits = [rng.normal(size=(3, 4)), rng.normal(size=(2, 4))]
    t_logits = [rng.normal(size=(3, 4)), rng.normal(size=(2, 4))]
    ps0, pt0 = rng.normal(size=(2, 2)), rng.normal(size=(2, 3))  # class 0, level 0
    ps1, pt1 = rng.normal(size=(3, 2)), rng.normal(size=(3, 3))  # class 1, level 1

    # box A (class 0, sqrt(wh)=16 -> level 0 with canonical 16): GAP over cells 0..2 inclusive, mask cells 0..1
    r_a = max(
        0.0,
        1
        - abs(
            np_cos_max(student[0][0][:, :3, :3].mean((1, 2)), ps0)
            - np_cos_max(teacher[0][0][:, :3, :3].mean((1, 2)), pt0)
        ),
    )
    # box B (class 1, sqrt(wh)=32 -> level 1): GAP over the whole 2x2 map, mask cells 0..1
    r_b = max(0.0, 1 - abs(np_cos_max(student[1][0].mean((1, 2)), ps1) - np_cos_max(teacher[1][0].mean((1, 2)), pt1)))
    weight = [np.zeros((2, 4, 4)), np.zeros((2, 2, 2))]
    weight[0][0, :2, :2] = r_a
    weight[1][0, :, :] = r_b
    conv = [torch.nn.Conv2d(2, 3, 3, padding=1).double() for _ in range(2)]
    fg, bg = [], []
    for level in range(2):
        with torch.no_grad():
            adapted = conv[level](torch.tensor(student[level])).numpy()
        se = ((adapted - teacher[level]) ** 2).sum(axis=1)
        fg.append((weight[level] * se).sum() / max(1.0, 2 * 3 * weight[level].sum()))
        background = weight[level] == 0
        bg.append((background * se).sum() / max(1.0, 2 * 3 * background.sum()))

    def binary_kl(s: np.ndarray, t: np.ndarray) -> float:
        ps, pt = 1 / (1 + np.exp(-s / 2)), 1 / (1 + np.exp(-t / 2))
        return float(np.mean(pt * np.log(pt / ps) + (1 - pt) * np.log((1 - pt) / (1 - ps))) * 4)

    # logit box 0 matches A (IoU 0.875), box 1 matches B (0.9375), box 2 nothing; image 1 has no GT
    soft = (r_a * binary_kl(s_logits[0][0], t_logits[0][0]) + r_b * binary_kl(s_logits[0][1], t_logits[0][1])) / 2
    kappa = 1 - 1 / 4
    expected = kappa * (np.mean(fg) + 4 * np.mean(bg)) + soft

    loss = build_loss("global", {"canonical": 16.0, "num_classes": 2}, [2, 2], [3, 3])
    for level in range(2):
        loss.adapters[level].load_state_dict(conv[level].float().state_dict())
    loss.double()
    loss.set_prototypes(0, 0, torch.tensor(ps0), torch.tensor(pt0))
    loss.set_prototypes(1, 1, torch.tensor(ps1), torch.tensor(pt1))
    feats = [torch.tensor(s, requires_grad=True) for s in student]
    logits = [torch.tensor(s, requires_grad=True) for s in s_logits]
    value, parts = loss(
        make_inputs(feats, [torch.tensor(t) for t in teacher], logits, [torch.tensor(t) for t in t_logits])
    )
    assert parts["robust_mean"] == pytest.approx((r_a + r_b) / 2, rel=1e-5)
    assert parts["fg"] == pytest.approx(np.mean(fg), rel=1e-5)
    assert parts["bg"] == pytest.approx(np.mean(bg), rel=1e-5)
    assert parts["soft"] == pytest.approx(soft, rel=1e-5)
    assert float(value.detach()) == pytest.approx(expected, rel=1e-5)


def test_without_prototypes_robust_weight_is_one() -> None:
    student = [torch.randn(2, 2, 4, 4, requires_grad=True), torch.randn(2, 2, 2, 2, requires_grad=True)]
    teacher = [torch.randn(2, 2, 4, 4), torch.randn(2, 2, 2, 2)]
    loss = build_loss("global", {"canonical": 16.0, "num_classes": 2}, [2, 2], [2, 2])
    _, parts = loss(make_inputs(student, teacher))
    assert parts["robust_mean"] == 1.0 and parts["soft"] == 0.0 and parts["kappa"] == 0.75


def test_proposal_instances_equal_gt_instances_when_proposals_are_the_gt() -> None:
    student = [torch.randn(2, 2, 4, 4), torch.randn(2, 2, 2, 2)]
    teacher = [torch.randn(2, 2, 4, 4), torch.randn(2, 2, 2, 2)]
    logits = [torch.randn(2, 3), torch.randn(0, 3)]
    inputs = KDInputs(
        student,
        teacher,
        [8, 16],
        (32, 32),
        GT,
        LABELS,
        [],
        [],
        student_logits=logits,
        teacher_logits=[torch.randn(2, 3), torch.randn(0, 3)],
        logit_boxes=GT,
    )
    torch.manual_seed(0)
    by_gt = build_loss("global", {"canonical": 16.0, "num_classes": 2}, [2, 2], [2, 2])
    by_proposals = build_loss("global", {"canonical": 16.0, "num_classes": 2, "instances": "proposals"}, [2, 2], [2, 2])
    by_proposals.load_state_dict(by_gt.state_dict())
    prototypes = torch.randn(2, 2), torch.randn(2, 2)
    for loss in (by_gt, by_proposals):
        loss.set_prototypes(1, 1, *prototypes)
    assert by_gt(inputs)[1] == pytest.approx(by_proposals(inputs)[1])


def test_fit_prototypes_per_class_and_level() -> None:
    rng = np.random.default_rng(8)
    labels = torch.tensor([0, 0, 0, 1, 1, 0])
    feats_s = [torch.tensor(rng.normal(size=(6, 2))), torch.tensor(rng.normal(size=(6, 2)))]
    feats_t = [torch.tensor(rng.normal(size=(6, 3))), torch.tensor(rng.normal(size=(6, 3)))]
    loss = build_loss("global", {"num_classes": 3, "num_prototypes": 2}, [2, 2], [3, 3]).double()
    counts = loss.fit_prototypes(labels, feats_s, feats_t)
    assert counts[2].tolist() == [0, 0]  # no instance of class 2
    for level in range(2):
        rows = labels == 0
        expected_s, _ = generate_prototypes(feats_s[level][rows], feats_t[level][rows], k=2)
        k = int(counts[0, level])
        torch.testing.assert_close(getattr(loss, f"proto_s_{level}")[0, :k], expected_s)


def test_set_prototypes_and_labels_are_checked() -> None:
    loss = build_loss("global", {"num_classes": 2, "num_prototypes": 2}, [2, 2], [3, 3])
    with pytest.raises(EdgeKDError, match="prototypes must be"):
        loss.set_prototypes(0, 0, torch.zeros(1, 3), torch.zeros(1, 3))
    with pytest.raises(EdgeKDError, match="num_prototypes"):
        loss.set_prototypes(0, 0, torch.zeros(3, 2), torch.zeros(3, 3))
    with pytest.raises(EdgeKDError, match="no prototype slot"):
        loss.set_prototypes(2, 0, torch.zeros(1, 2), torch.zeros(1, 3))
    student = [torch.randn(2, 2, 4, 4), torch.randn(2, 2, 2, 2)]
    teacher = [torch.randn(2, 3, 4, 4), torch.randn(2, 3, 2, 2)]
    bad = [torch.tensor([0, 5]), torch.zeros(0, dtype=torch.long)]
    with pytest.raises(EdgeKDError, match="num_classes"):
        loss(make_inputs(student, teacher, labels=bad))


def test_gradient_reaches_student_adapter_and_logits_not_teacher() -> None:
    student = [torch.randn(2, 2, 4, 4, requires_grad=True), torch.randn(2, 2, 2, 2, requires_grad=True)]
    teacher = [torch.randn(2, 3, 4, 4, requires_grad=True), torch.randn(2, 3, 2, 2, requires_grad=True)]
    s_logits = [torch.randn(3, 4, requires_grad=True), torch.randn(2, 4, requires_grad=True)]
    t_logits = [torch.randn(3, 4, requires_grad=True), torch.randn(2, 4, requires_grad=True)]
    loss = build_loss("global", {"canonical": 16.0, "num_classes": 2}, [2, 2], [3, 3])
    loss.set_prototypes(0, 0, torch.randn(2, 2), torch.randn(2, 3))
    value, _ = loss(make_inputs(student, teacher, s_logits, t_logits))
    value.backward()
    assert all(t.grad is None for t in teacher + t_logits)
    assert all(float(s.grad.abs().sum()) > 0 for s in student)
    assert float(s_logits[0].grad.abs().sum()) > 0
    assert all(float(a.weight.grad.abs().sum()) > 0 for a in loss.adapters)
    assert all(b.grad is None for b in loss.buffers())


def test_empty_gt_fg_and_soft_zero_bg_finite() -> None:
    student = [torch.randn(2, 2, 4, 4, requires_grad=True), torch.randn(2, 2, 2, 2, requires_grad=True)]
    teacher = [torch.randn(2, 2, 4, 4), torch.randn(2, 2, 2, 2)]
    empty_gt = [torch.zeros(0, 4, dtype=torch.float64)] * 2
    empty_labels = [torch.zeros(0, dtype=torch.long)] * 2
    logits = [torch.randn(3, 4), torch.randn(2, 4)]
    loss = build_loss("global", {"num_classes": 2}, [2, 2], [2, 2])
    value, parts = loss(make_inputs(student, teacher, logits, logits, gt=empty_gt, labels=empty_labels))
    assert parts["fg"] == 0.0 and parts["soft"] == 0.0
    assert parts["bg"] > 0 and torch.isfinite(value.detach())
