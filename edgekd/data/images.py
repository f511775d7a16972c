"""Image decoding and resizing with PIL and numpy only: the PyTorch, ONNX Runtime and TensorRT paths all call
this, so every backend sees bit-identical network inputs (and no torch is needed to deploy)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from edgekd.errors import EdgeKDError


def load_resized(path: str | Path, size: tuple[int, int]) -> tuple[np.ndarray, tuple[int, int]]:
    """Decode an image as RGB and resize it (bilinear) to `size` = (height, width).

    Returns the (H, W, 3) uint8 array and the original (width, height); a missing or unreadable file is named.
    """
    try:
        with Image.open(path) as image:
            original = image.size
            resized = resize_rgb(image.convert("RGB"), size)
    except FileNotFoundError as error:
        raise EdgeKDError(f"image not found: {path}") from error
    except OSError as error:
        raise EdgeKDError(f"cannot read image {path}: {error}") from error
    return resized, original


def resize_rgb(image: Image.Image | np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Bilinear resize of an RGB image (PIL or (H, W, 3) uint8) to `size` = (height, width), as uint8 array."""
    if isinstance(image, np.ndarray):
        image = Image.fromarray(image)
    return np.asarray(image.resize((size[1], size[0]), Image.Resampling.BILINEAR))
