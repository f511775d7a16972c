"""The loss registry: names, option validation (EdgeKDError naming the key, the loss and the allowed keys)."""

from __future__ import annotations

import pytest
import torch

from edgekd.distill.losses import LOSSES, KDInputs, build_loss
from edgekd.errors import EdgeKDError


def test_registry_names() -> None:
    assert set(LOSSES) == {"fgfi", "ssim", "gkd", "bmfi", "global", "fitnet", "logits"}
    assert all(cls.name == name and "weight" in cls.options for name, cls in LOSSES.items())


def test_unknown_option_names_key_loss_and_allowed() -> None:
    with pytest.raises(EdgeKDError) as caught:
        build_loss("fgfi", {"psii": 0.5}, [2], [2])
    message = str(caught.value)
    assert "'psii'" in message and "'fgfi'" in message and "psi" in message and "max_over" in message


def test_keyword_clash_is_still_a_named_error() -> None:
    with pytest.raises(EdgeKDError, match="unknown option 'student_channels'"):
        build_loss("ssim", {"student_channels": [3]}, [2], [2])


def test_unknown_loss() -> None:
    with pytest.raises(EdgeKDError, match="unknown KD loss 'mimic'.*fgfi"):
        build_loss("mimic", {}, [2], [2])


@pytest.mark.parametrize(
    ("name", "options", "fragment"),
    [
        ("fgfi", {"psi": "half"}, "'psi' must be float"),
        ("fgfi", {"weight": True}, "'weight' must be float"),
        ("fgfi", {"psi": 1.5}, "'psi' must be in"),
        ("fgfi", {"max_over": "image"}, "'max_over' must be one of"),
        ("fgfi", {"warmup_steps": 2.5}, "'warmup_steps' must be int"),
        ("fgfi", {"levels": [0, 3]}, "'levels' must be distinct indices in 0..1"),
        ("ssim", {"window": 10}, "'window' must be an odd integer"),
        ("ssim", {"weight": float("nan")}, "'weight' must be finite"),
        ("bmfi", {"temp": -1.0}, "'temp' must be > 0"),
        ("global", {"num_classes": 0}, "'num_classes' must be > 0"),
        ("gkd", {"adapter": "none"}, "adapter='none' needs equal channels"),
        ("logits", None, None),
    ],
)
def test_option_types_and_values(name: str, options: dict | None, fragment: str | None) -> None:
    student, teacher = [2, 2], ([3, 3] if name == "gkd" else [2, 2])
    if fragment is None:
        assert build_loss(name, options, student, teacher).weight == LOSSES[name].options["weight"].default
        return
    with pytest.raises(EdgeKDError, match=fragment):
        build_loss(name, options, student, teacher)


def test_int_accepted_for_float_and_defaults_resolved() -> None:
    loss = build_loss("fgfi", {"weight": 1, "levels": (1,)}, [2, 2], [2, 2])
    assert loss.weight == 1.0 and isinstance(loss.weight, float) and loss.levels == (1,)
    assert loss.config["psi"] == 0.5 and loss.config["max_over"] == "level"
    assert len(loss.adapters) == 1  # only the distilled level has an adapter


def test_channel_and_shape_checks() -> None:
    with pytest.raises(EdgeKDError, match="must match level for level"):
        build_loss("fitnet", {}, [2, 2], [2])
    loss = build_loss("fitnet", {}, [2], [4])
    batch = KDInputs(
        [torch.zeros(1, 2, 4, 4)],
        [torch.zeros(1, 4, 2, 2)],
        [8],
        (32, 32),
        [torch.zeros(0, 4)],
        [torch.zeros(0, dtype=torch.long)],
        [],
        [],
    )
    with pytest.raises(EdgeKDError, match="must share batch size and spatial size"):
        loss(batch)
