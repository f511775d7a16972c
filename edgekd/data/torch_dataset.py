"""A torch Dataset over `Dataset` records: images resized to the network input, targets in network pixels."""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import DataLoader
from torch.utils.data import Dataset as TorchDataset

from edgekd.data.images import load_resized
from edgekd.data.records import Dataset
from edgekd.data.transforms import AugmentConfig, augment

_CACHE_LIMIT_BYTES = 4 * 1024**3


class DetectionDataset(TorchDataset):
    """Samples (image float (3, H, W) in [0, 255], target dict, scale (sx, sy), image_id).

    Resized images are kept in memory (uint8) when the whole split fits in 4 GiB, so each epoch after the first
    decodes nothing. Augmentation draws from a Generator seeded by (seed, epoch, index).
    """

    def __init__(
        self, dataset: Dataset, input_size: tuple[int, int], augmentation: AugmentConfig | None = None, seed: int = 0
    ) -> None:
        self.dataset = dataset
        self.input_size = input_size
        self.augmentation = augmentation
        self.seed = seed
        self.epoch = 0
        height, width = input_size
        self._cache: dict[int, Tensor] | None = {} if len(dataset) * height * width * 3 < _CACHE_LIMIT_BYTES else None

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.dataset)

    def _resized(self, index: int) -> Tensor:
        if self._cache is not None and index in self._cache:
            return self._cache[index]
        array, _ = load_resized(self.dataset.records[index].image_path, self.input_size)
        image = torch.from_numpy(array.copy()).permute(2, 0, 1).contiguous()
        if self._cache is not None:
            self._cache[index] = image
        return image

    def __getitem__(self, index: int) -> tuple[Tensor, dict[str, Tensor], Tensor, str]:
        record = self.dataset.records[index]
        height, width = self.input_size
        scale = torch.tensor([width / record.width, height / record.height], dtype=torch.float32)
        boxes, labels = record.targets(self.dataset.classes)
        boxes_t = torch.from_numpy(boxes) * scale.repeat(2)
        labels_t = torch.from_numpy(labels)
        image = self._resized(index).float()
        if self.augmentation is not None:
            rng = np.random.default_rng([self.seed, self.epoch, index])
            image, boxes_t, labels_t = augment(image, boxes_t, labels_t, self.augmentation, rng)
        return image, {"boxes": boxes_t, "labels": labels_t}, scale, record.image_id


def collate(samples: list) -> tuple[Tensor, list[dict[str, Tensor]], Tensor, list[str]]:
    images, targets, scales, ids = zip(*samples)
    return torch.stack(images), list(targets), torch.stack(scales), list(ids)


def make_loader(dataset: DetectionDataset, batch_size: int, shuffle: bool, seed: int, epoch: int) -> DataLoader:
    """A loader whose order depends only on (seed, epoch): exact resume needs nothing else.

    Runs in the main process: images are cached after the first epoch, and on small machines worker processes
    would compete with the training step for the same cores.
    """
    dataset.set_epoch(epoch)
    generator = torch.Generator().manual_seed(seed * 100003 + epoch)
    return DataLoader(
        dataset, batch_size=batch_size, shuffle=shuffle, generator=generator, collate_fn=collate, num_workers=0
    )
