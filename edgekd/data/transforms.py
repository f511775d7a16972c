"""Resize to the network input and training augmentation (flip, scale jitter, photometric), on torch tensors.

Every random choice comes from a numpy Generator passed in, so a sample's augmentation depends only on
(seed, epoch, index): resuming a run or changing the number of loader workers gives the same batches.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor


@dataclass(frozen=True)
class AugmentConfig:
    """Augmentation strengths; `none()` disables all of it (validation)."""

    flip: float = 0.5
    scale_range: tuple[float, float] = (0.8, 1.25)
    brightness: float = 0.25
    contrast: float = 0.25
    saturation: float = 0.25
    min_visible: float = 0.4  # a jittered box keeping less than this share of its area is no longer a target

    @classmethod
    def none(cls) -> AugmentConfig:
        return cls(flip=0.0, scale_range=(1.0, 1.0), brightness=0.0, contrast=0.0, saturation=0.0)


def flip(image: Tensor, boxes: Tensor) -> tuple[Tensor, Tensor]:
    width = image.shape[-1]
    flipped = boxes.clone()
    flipped[:, 0], flipped[:, 2] = width - boxes[:, 2], width - boxes[:, 0]
    return image.flip(-1), flipped


def scale_jitter(
    image: Tensor, boxes: Tensor, labels: Tensor, scale: float, rng: np.random.Generator, min_visible: float
) -> tuple[Tensor, Tensor, Tensor]:
    """Zoom by `scale` about a random point, keeping the canvas size (crop when > 1, grey pad when < 1)."""
    _, height, width = image.shape
    new_h, new_w = round(height * scale), round(width * scale)
    zoomed = F.interpolate(image[None], size=(new_h, new_w), mode="bilinear", align_corners=False)[0]
    canvas = image.new_full(image.shape, 114.0)
    if scale >= 1:
        top, left = int(rng.integers(0, new_h - height + 1)), int(rng.integers(0, new_w - width + 1))
        canvas = zoomed[:, top : top + height, left : left + width]
        offset = torch.tensor([-left, -top, -left, -top], dtype=boxes.dtype)
    else:
        top, left = int(rng.integers(0, height - new_h + 1)), int(rng.integers(0, width - new_w + 1))
        canvas[:, top : top + new_h, left : left + new_w] = zoomed
        offset = torch.tensor([left, top, left, top], dtype=boxes.dtype)
    moved = boxes * scale + offset
    clipped = moved.clone()
    clipped[:, 0::2] = moved[:, 0::2].clamp(0, width)
    clipped[:, 1::2] = moved[:, 1::2].clamp(0, height)
    area = lambda b: (b[:, 2] - b[:, 0]).clamp(min=0) * (b[:, 3] - b[:, 1]).clamp(min=0)  # noqa: E731
    keep = area(clipped) >= min_visible * area(moved).clamp(min=1e-6)
    return canvas, clipped[keep], labels[keep]


def photometric(image: Tensor, cfg: AugmentConfig, rng: np.random.Generator) -> Tensor:
    """Brightness, contrast and saturation jitter on a float image in [0, 255]."""
    brightness = 1 + rng.uniform(-cfg.brightness, cfg.brightness)
    contrast = 1 + rng.uniform(-cfg.contrast, cfg.contrast)
    saturation = 1 + rng.uniform(-cfg.saturation, cfg.saturation)
    image = image * brightness
    mean = float(image.double().mean())  # float64: the same value whatever torch's thread count
    image = (image - mean) * contrast + mean
    grey = (0.299 * image[0] + 0.587 * image[1] + 0.114 * image[2])[None]
    image = (image - grey) * saturation + grey
    return image.clamp(0, 255)


def augment(
    image: Tensor, boxes: Tensor, labels: Tensor, cfg: AugmentConfig, rng: np.random.Generator
) -> tuple[Tensor, Tensor, Tensor]:
    """All augmentations, in a fixed order, on a network-sized float image and its boxes."""
    if rng.random() < cfg.flip:
        image, boxes = flip(image, boxes)
    low, high = cfg.scale_range
    if high > low:
        image, boxes, labels = scale_jitter(image, boxes, labels, rng.uniform(low, high), rng, cfg.min_visible)
    if cfg.brightness or cfg.contrast or cfg.saturation:
        image = photometric(image, cfg, rng)
    return image, boxes, labels
