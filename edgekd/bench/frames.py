"""Decoded camera frames and the pre-processing of the end-to-end benchmark (numpy + PIL, no torch).

End-to-end starts from a decoded frame in memory (what a camera driver hands over), so file decoding is not
counted; pre-processing then resizes it exactly as `edgekd.data.images.load_resized` does after decoding
(RGB, PIL bilinear), so every backend sees the inputs it is evaluated on.
"""

from __future__ import annotations

import numpy as np
from PIL import Image

from edgekd.data.images import resize_rgb, to_rgb
from edgekd.data.records import Dataset
from edgekd.errors import EdgeKDError

RANDOM_FRAME_SIZE = (375, 1242)
"""(height, width) of the noise frames used without --data: the KITTI camera's resolution."""


def dataset_frames(dataset: Dataset, count: int) -> list[np.ndarray]:
    """The first `count` images of a dataset, decoded to (H, W, 3) uint8 RGB (cycled when it has fewer)."""
    if not dataset.records:
        raise EdgeKDError(f"{dataset.root} ({dataset.split}): no images to benchmark with")
    frames = []
    for index in range(count):
        path = dataset.records[index % len(dataset.records)].image_path
        try:
            with Image.open(path) as image:
                frames.append(np.asarray(to_rgb(image, path)))
        except OSError as error:
            raise EdgeKDError(f"cannot read image {path}: {error}") from None
    return frames


def random_frames(count: int, size: tuple[int, int] = RANDOM_FRAME_SIZE, seed: int = 0) -> list[np.ndarray]:
    """`count` uniform-noise (H, W, 3) uint8 frames of `size` = (height, width)."""
    generator = np.random.default_rng(seed)
    return [generator.integers(0, 256, size=(*size, 3), dtype=np.uint8) for _ in range(count)]


def preprocess_frames(frames: list[np.ndarray], input_size: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """Frames -> network input (B, 3, H, W) float32 in [0, 255] and scales (B, 2) = (sx, sy) per frame, as
    `edgekd.runtime.preprocess.load_images` computes them from files."""
    height, width = input_size
    images = np.empty((len(frames), 3, height, width), dtype=np.float32)
    scales = np.empty((len(frames), 2), dtype=np.float32)
    for i, frame in enumerate(frames):
        images[i] = resize_rgb(frame, input_size).transpose(2, 0, 1)
        scales[i] = (width / frame.shape[1], height / frame.shape[0])
    return images, scales
