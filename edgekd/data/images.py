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
            resized = image.convert("RGB").resize((size[1], size[0]), Image.Resampling.BILINEAR)
    except FileNotFoundError as error:
        raise EdgeKDError(f"image not found: {path}") from error
    except OSError as error:
        raise EdgeKDError(f"cannot read image {path}: {error}") from error
    return np.asarray(resized), original
