"""SSIM-KD (de Rijk et al., NeurIPS 2022): docs/kd/ssim.md vectors B1-B3, B5, an own numpy vector, fp32 under
autocast, gradients, empty GT."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from edgekd.distill.losses import KDInputs, build_loss
from edgekd.distill.losses.ssim import minmax_normalise, ssim_dissimilarity

RAMP = (torch.arange(36, dtype=torch.float64) / 35).view(1, 1, 6, 6)


def inputs_for(student: list[torch.Tensor], teacher: list[torch.Tensor], strides: list[int]) -> KDInputs:
    batch = student[0].shape[0]
    empty = [torch.zeros(0, 4)] * batch
    return KDInputs(student, teacher, strides, (64, 64), empty, [torch.zeros(0, dtype=torch.long)] * batch, [], [])


def np_ssim_loss(x: np.ndarray, y: np.ndarray, k: int, sigma: float = 1.5, c1: float = 1e-4, c2: float = 9e-4):
    """mean clamp((1 - SSIM)/2) with a k x k Gaussian window and reflect padding, per channel, by loops."""
    g = np.exp(-((np.arange(k) - k // 2) ** 2) / (2 * sigma**2))
    window = np.outer(g, g) / np.outer(g, g).sum()
    pad = k // 2
    out = []
    for b in range(x.shape[0]):
        for c in range(x.shape[1]):
            xp = np.pad(x[b, c], pad, mode="reflect")
            yp = np.pad(y[b, c], pad, mode="reflect")
            for i in range(x.shape[2]):
                for j in range(x.shape[3]):
                    px, py = xp[i : i + k, j : j + k], yp[i : i + k, j : j + k]
                    mx, my = (window * px).sum(), (window * py).sum()
                    vx = (window * px * px).sum() - mx**2
                    vy = (window * py * py).sum() - my**2
                    cov = (window * px * py).sum() - mx * my
                    ssim = (2 * mx * my + c1) * (2 * cov + c2) / ((mx**2 + my**2 + c1) * (vx + vy + c2))
                    out.append(np.clip((1 - ssim) / 2, 0, 1))
    return float(np.mean(out))


def test_b1_constant_maps() -> None:
    expected_ssim = (2 * 0.5 * 0.25 + 1e-4) / (0.25 + 0.0625 + 1e-4)
    assert expected_ssim == pytest.approx(0.800064, abs=1e-6)
    loss = build_loss("ssim", {"weight": 1.0, "minmax": False, "adapter": "none"}, [1], [1])
    for dtype, tolerance in ((torch.float64, 1e-12), (torch.float32, 1e-5)):  # fp32: E[x^2] - mu^2 cancels
        student = torch.full((1, 1, 4, 4), 0.5, dtype=dtype, requires_grad=True)
        teacher = torch.full((1, 1, 4, 4), 0.25, dtype=dtype)
        value, _ = loss(inputs_for([student], [teacher], [16]))
        assert float(value.detach()) == pytest.approx(0.099968, abs=1e-6 + tolerance)
        assert float(value.detach()) == pytest.approx((1 - expected_ssim) / 2, abs=tolerance)


def test_b2_ramp_against_transpose() -> None:
    other = RAMP.transpose(-1, -2)
    assert float(ssim_dissimilarity(RAMP, other, window=11)) == pytest.approx(0.3477049311, abs=1e-9)
    assert float(ssim_dissimilarity(RAMP, other, window=3)) == pytest.approx(0.3546929662, abs=1e-9)
    assert float(ssim_dissimilarity(RAMP, RAMP, window=11)) == pytest.approx(0.0, abs=1e-9)


def test_b3_minmax_maps_affine_ramp_to_ramp_and_module_uses_it() -> None:
    raw = 4 * RAMP - 1
    torch.testing.assert_close(minmax_normalise(raw), RAMP, atol=1e-12, rtol=0)
    student = (4 * RAMP - 1).requires_grad_(True)
    teacher = 3 * RAMP.transpose(-1, -2) + 7  # any positive affine map of the transposed ramp
    loss = build_loss("ssim", {"weight": 1.0, "adapter": "none"}, [1], [1])
    value, parts = loss(inputs_for([student], [teacher], [16]))
    assert float(value.detach()) == pytest.approx(0.3477049311, abs=1e-9)
    assert parts["window_l0"] == 11


def test_b5_small_map_falls_back_to_largest_fitting_window() -> None:
    generator = torch.Generator().manual_seed(0)
    student = torch.rand(1, 2, 5, 10, generator=generator, dtype=torch.float64, requires_grad=True)
    teacher = torch.rand(1, 2, 5, 10, generator=generator, dtype=torch.float64)
    loss = build_loss("ssim", {"weight": 1.0, "minmax": False, "adapter": "none"}, [2], [2])
    value, parts = loss(inputs_for([student], [teacher], [16]))
    assert parts["window_l0"] == 9
    expected = np_ssim_loss(student.detach().numpy(), teacher.numpy(), k=9)
    assert float(value.detach()) == pytest.approx(expected, abs=1e-9)


def test_own_vector_numpy_two_levels_with_minmax() -> None:
    """Two levels: 7x7 keeps the 11-window (2*7-1 = 13 >= 11), 3x4 falls back to 5; minmax; summed."""
    rng = np.random.default_rng(1)
    shapes = [(2, 3, 7, 7), (2, 3, 3, 4)]
    student = [rng.normal(size=s) for s in shapes]
    teacher = [rng.normal(size=s) for s in shapes]

    def np_minmax(x: np.ndarray) -> np.ndarray:
        flat = x.reshape(x.shape[0], -1)
        low, high = flat.min(1)[:, None, None, None], flat.max(1)[:, None, None, None]
        return (x - low) / (high - low)

    windows = [11, 5]  # 2*min(3, 4) - 1 = 5 on the small level
    expected = sum(
        np_ssim_loss(np_minmax(s), np_minmax(t), k) for s, t, k in zip(student, teacher, windows, strict=True)
    )
    loss = build_loss("ssim", {"weight": 3.0, "adapter": "none"}, [3, 3], [3, 3])
    feats = [torch.tensor(s, requires_grad=True) for s in student]
    value, parts = loss(inputs_for(feats, [torch.tensor(t) for t in teacher], [8, 16]))
    assert (parts["window_l0"], parts["window_l1"]) == (11, 5)
    assert float(value.detach()) == pytest.approx(3.0 * expected, abs=1e-9)


def test_fp32_under_autocast() -> None:
    generator = torch.Generator().manual_seed(2)
    student = torch.rand(1, 2, 8, 8, generator=generator, requires_grad=True)
    teacher = torch.rand(1, 2, 8, 8, generator=generator)
    loss = build_loss("ssim", {"adapter": "none"}, [2], [2])
    plain, _ = loss(inputs_for([student], [teacher], [8]))
    with torch.autocast(device_type="cpu", dtype=torch.bfloat16):
        mixed, _ = loss(inputs_for([student.bfloat16()], [teacher.bfloat16()], [8]))
    assert mixed.dtype == torch.float32
    expected = 2.0 * np_ssim_loss(
        np_minmax_t(student.detach().bfloat16().float()), np_minmax_t(teacher.bfloat16().float()), k=11
    )
    assert float(mixed.detach()) == pytest.approx(expected, abs=1e-5)
    assert float(plain.detach()) == pytest.approx(float(mixed.detach()), abs=5e-2)


def np_minmax_t(x: torch.Tensor) -> np.ndarray:
    a = x.double().numpy()
    return (a - a.min()) / (a.max() - a.min())


def test_gradient_reaches_student_and_adapter_not_teacher() -> None:
    student = torch.randn(1, 2, 6, 6, requires_grad=True)
    teacher = torch.randn(1, 3, 6, 6, requires_grad=True)
    loss = build_loss("ssim", {}, [2], [3])
    assert loss.adapters[0].kernel_size == (1, 1)
    value, _ = loss(inputs_for([student], [teacher], [16]))
    value.backward()
    assert teacher.grad is None
    assert student.grad is not None and float(student.grad.abs().sum()) > 0
    assert float(loss.adapters[0].weight.grad.abs().sum()) > 0


def test_constant_maps_after_minmax_are_finite() -> None:
    """Constant (e.g. all-zero) maps: min == max is guarded, SSIM of two zero maps is 1, loss 0."""
    student = torch.zeros(2, 2, 4, 4, requires_grad=True)
    value, _ = build_loss("ssim", {"adapter": "none"}, [2], [2])(inputs_for([student], [torch.zeros(2, 2, 4, 4)], [8]))
    assert torch.isfinite(value.detach()) and float(value.detach()) == 0.0
