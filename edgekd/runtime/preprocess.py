"""Network inputs from image files with numpy + PIL only, identical to what the PyTorch path feeds the detector
(`DetectionDataset`: `load_resized`, float32 in [0, 255], scale = network size / original size)."""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import numpy as np

from edgekd.data.images import load_resized
from edgekd.data.records import Dataset, ImageRecord


def load_images(records: Sequence[ImageRecord], input_size: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """Images (B, 3, H, W) float32 RGB in [0, 255] and scales (B, 2) float32 = (sx, sy) per image."""
    height, width = input_size
    images = np.empty((len(records), 3, height, width), dtype=np.float32)
    scales = np.empty((len(records), 2), dtype=np.float32)
    for i, record in enumerate(records):
        array, (original_width, original_height) = load_resized(record.image_path, input_size)
        images[i] = array.transpose(2, 0, 1)
        scales[i] = (width / original_width, height / original_height)
    return images, scales


def pad_batch(array: np.ndarray, size: int, fill: float = 0.0) -> np.ndarray:
    """Rows of `fill` appended up to `size` (static-batch models); their outputs are discarded by the caller."""
    if len(array) >= size:
        return array
    padding = np.full((size - len(array), *array.shape[1:]), fill, dtype=array.dtype)
    return np.concatenate([array, padding])


def iterate_batches(
    dataset: Dataset, input_size: tuple[int, int], batch: int
) -> Iterator[tuple[list[str], np.ndarray, np.ndarray]]:
    """(image ids, images, scales) over the dataset in order, `batch` images at a time (the last may be short)."""
    for start in range(0, len(dataset.records), batch):
        chunk = dataset.records[start : start + batch]
        images, scales = load_images(chunk, input_size)
        yield [record.image_id for record in chunk], images, scales
