"""Image decoding and resizing with PIL and numpy only: the PyTorch, ONNX Runtime and TensorRT paths all call
this, so every backend sees bit-identical network inputs (and no torch is needed to deploy)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from edgekd.errors import EdgeKDError

SIXTEEN_BIT_MODES: tuple[str, ...] = ("I;16", "I;16L", "I;16B", "I;16N", "I")
"""PIL modes of single-channel images wider than 8 bits (16-bit PNG/TIFF greyscale opens as one of these)."""


def image_size(path: str | Path) -> tuple[int, int]:
    """(width, height) of an image file, from its header only (PIL opens lazily and decodes nothing here)."""
    try:
        with Image.open(path) as image:
            return image.size
    except FileNotFoundError:
        raise EdgeKDError(f"image not found: {path}") from None
    except (UnidentifiedImageError, Image.DecompressionBombError, OSError) as error:
        raise EdgeKDError(f"{path}: not a readable image ({error})") from None


def to_rgb(image: Image.Image, path: str | Path) -> Image.Image:
    """`image` as 8-bit RGB. 16-bit greyscale keeps its range (value v -> v >> 8, as Pillow already reads 16-bit
    RGB) in three equal channels, where PIL's convert("RGB") would saturate every value above 255; floating-point
    images, which have no agreed range, are refused naming `path`."""
    if image.mode in SIXTEEN_BIT_MODES:
        values = np.asarray(image).astype(np.int64)
        if values.size and (values.min() < 0 or values.max() > 0xFFFF):
            raise EdgeKDError(f"{path}: not an 8- or 16-bit image (mode {image.mode}, values outside 0..65535)")
        grey = (values >> 8).astype(np.uint8)
        return Image.fromarray(np.repeat(grey[:, :, None], 3, axis=2), "RGB")
    if image.mode == "F":
        raise EdgeKDError(f"{path}: floating-point images are not supported (mode F); save it as 8- or 16-bit")
    return image.convert("RGB")


def load_rgb(path: str | Path) -> Image.Image:
    """Decode an image file as 8-bit RGB (`to_rgb`); a missing, truncated or unreadable file is named."""
    try:
        with Image.open(path) as image:
            return to_rgb(image, path)
    except FileNotFoundError:
        raise EdgeKDError(f"image not found: {path}") from None
    except (UnidentifiedImageError, Image.DecompressionBombError, OSError) as error:
        raise EdgeKDError(f"{path}: not a readable image ({error})") from None


def load_resized(path: str | Path, size: tuple[int, int]) -> tuple[np.ndarray, tuple[int, int]]:
    """Decode an image as RGB (`load_rgb`) and resize it (bilinear) to `size` = (height, width).

    Returns the (H, W, 3) uint8 array and the original (width, height); a missing or unreadable file is named.
    """
    image = load_rgb(path)
    return resize_rgb(image, size), image.size


def resize_rgb(image: Image.Image | np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Bilinear resize of an RGB image (PIL or (H, W, 3) uint8) to `size` = (height, width), as uint8 array."""
    if isinstance(image, np.ndarray):
        image = Image.fromarray(image)
    return np.asarray(image.resize((size[1], size[0]), Image.Resampling.BILINEAR))
