"""A torch Dataset over `Dataset` records: images resized to the network input, targets in network pixels.

Training batches come from `make_train_loader`: a global order that depends only on (seed, epoch), each rank
taking its strided share, decoding and augmentation in the main process or in worker processes. Each sample's
augmentation depends only on (seed, epoch, index), so neither the number of ranks nor of workers changes it.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import DataLoader, Sampler, get_worker_info
from torch.utils.data import Dataset as TorchDataset

from edgekd.data.images import load_resized
from edgekd.data.records import Dataset
from edgekd.data.transforms import AugmentConfig, augment
from edgekd.errors import EdgeKDError

_CACHE_LIMIT_BYTES = 4 * 1024**3
_ORDER_SEED_STRIDE = 100003  # order seed = seed * stride + epoch (as earlier edgekd versions; keeps runs identical)

SampleKey = int | tuple[int, int]
"""A dataset index, or (epoch, index) as `EpochShardSampler` yields it."""


class LoaderWorkerError(EdgeKDError):
    """An EdgeKDError (an unreadable image) raised in a DataLoader worker process. torch re-raises it in the main
    process as `LoaderWorkerError(text)` where the text holds the worker's traceback; the message keeps only the
    original error's text, so the user reads one line."""

    def __init__(self, message: str) -> None:
        marker = f"{LoaderWorkerError.__module__}.{LoaderWorkerError.__qualname__}: "
        super().__init__(message.rpartition(marker)[2].strip() if marker in message else message)


class DetectionDataset(TorchDataset):
    """Samples (image float (3, H, W) in [0, 255], target dict, scale (sx, sy), image_id).

    With `cache` (the default), resized images are kept in memory (uint8) when the whole split fits in 4 GiB, so
    each epoch after the first decodes nothing; loaders with worker processes turn it off (each worker would
    hold its own copy) and decode in the workers instead. Augmentation draws from a Generator seeded by
    (seed, epoch, index); the epoch is the one given with the key, else the last `set_epoch`.
    """

    def __init__(
        self,
        dataset: Dataset,
        input_size: tuple[int, int],
        augmentation: AugmentConfig | None = None,
        seed: int = 0,
        cache: bool = True,
    ) -> None:
        self.dataset = dataset
        self.input_size = input_size
        self.augmentation = augmentation
        self.seed = seed
        self.epoch = 0
        height, width = input_size
        fits = len(dataset) * height * width * 3 < _CACHE_LIMIT_BYTES
        self._cache: dict[int, Tensor] | None = {} if cache and fits else None

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.dataset)

    def _resized(self, index: int) -> Tensor:
        if self._cache is not None and index in self._cache:
            return self._cache[index]
        try:
            array, _ = load_resized(self.dataset.records[index].image_path, self.input_size)
        except EdgeKDError as error:
            if get_worker_info() is None:
                raise
            raise LoaderWorkerError(str(error)) from None
        image = torch.from_numpy(array.copy()).permute(2, 0, 1).contiguous()
        if self._cache is not None:
            self._cache[index] = image
        return image

    def __getitem__(self, key: SampleKey) -> tuple[Tensor, dict[str, Tensor], Tensor, str]:
        epoch, index = key if isinstance(key, tuple) else (self.epoch, key)
        record = self.dataset.records[index]
        height, width = self.input_size
        scale = torch.tensor([width / record.width, height / record.height], dtype=torch.float32)
        boxes, labels = record.targets(self.dataset.classes)
        boxes_t = torch.from_numpy(boxes) * scale.repeat(2)
        labels_t = torch.from_numpy(labels)
        image = self._resized(index).float()
        if self.augmentation is not None:
            rng = np.random.default_rng([self.seed, epoch, index])
            image, boxes_t, labels_t = augment(image, boxes_t, labels_t, self.augmentation, rng)
        return image, {"boxes": boxes_t, "labels": labels_t}, scale, record.image_id


def collate(samples: list) -> tuple[Tensor, list[dict[str, Tensor]], Tensor, list[str]]:
    images, targets, scales, ids = zip(*samples)
    return torch.stack(images), list(targets), torch.stack(scales), list(ids)


def epoch_order(size: int, seed: int, epoch: int) -> list[int]:
    """The global sample order of an epoch, a function of (seed, epoch) only.

    It is the permutation `DataLoader(shuffle=True, generator=manual_seed(seed * 100003 + epoch))` draws (that
    loader takes one int64 from the generator for worker seeds, then calls randperm), which is what earlier
    edgekd versions trained with: single-process runs keep their exact data order.
    """
    generator = torch.Generator().manual_seed(seed * _ORDER_SEED_STRIDE + epoch)
    torch.empty((), dtype=torch.int64).random_(generator=generator)
    return torch.randperm(size, generator=generator).tolist()


class EpochShardSampler(Sampler[tuple[int, int]]):
    """Yields (epoch, index) for this rank's strided share of `epoch_order`.

    Like torch's DistributedSampler (shuffle, drop_last=False), the order is padded with its own first indices
    to a multiple of `world_size`, and rank r takes positions r, r + world, ...; so global batch k of a run with
    per-rank batch b is positions [k*b*world, (k+1)*b*world) of the order whatever the world size, and a resumed
    run may use another number of ranks. (DistributedSampler itself draws a different permutation, and the epoch
    travels with the index so that persistent worker processes, which never see `set_epoch`, augment with it.)
    """

    def __init__(self, size: int, seed: int, rank: int = 0, world_size: int = 1, shuffle: bool = True) -> None:
        self.size, self.seed, self.rank, self.world_size, self.shuffle = size, seed, rank, world_size, shuffle
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return -(-self.size // self.world_size)

    def __iter__(self) -> Iterator[tuple[int, int]]:
        order = epoch_order(self.size, self.seed, self.epoch) if self.shuffle else list(range(self.size))
        padded = order + order[: len(self) * self.world_size - self.size]
        return iter([(self.epoch, index) for index in padded[self.rank :: self.world_size]])


def make_train_loader(
    dataset: DetectionDataset,
    batch_size: int,
    seed: int,
    rank: int = 0,
    world_size: int = 1,
    workers: int = 0,
    pin_memory: bool = False,
) -> DataLoader:
    """The training loader of one rank: `batch_size` is per rank; call `loader.sampler.set_epoch(e)` each epoch.

    With `workers` > 0, decoding and augmentation run in that many persistent worker processes (create the
    loader once and reuse it across epochs) and batches go to pinned memory when `pin_memory`.
    """
    return DataLoader(
        dataset,
        batch_size=batch_size,
        sampler=EpochShardSampler(len(dataset), seed, rank, world_size),
        collate_fn=collate,
        num_workers=workers,
        persistent_workers=workers > 0,
        pin_memory=pin_memory,
        # Worker seeds come from this generator, not the global RNG, which the trainer re-seeds per epoch.
        generator=torch.Generator().manual_seed(seed),
    )


def make_loader(dataset: DetectionDataset, batch_size: int, shuffle: bool, seed: int, epoch: int) -> DataLoader:
    """A single-process loader over the whole dataset whose order depends only on (seed, epoch) (inference).

    Runs in the main process: images are cached after the first pass.
    """
    dataset.set_epoch(epoch)
    sampler = EpochShardSampler(len(dataset), seed, shuffle=shuffle)
    sampler.set_epoch(epoch)
    generator = torch.Generator().manual_seed(seed)  # keeps the loader's seed draw off the global RNG
    return DataLoader(
        dataset, batch_size=batch_size, sampler=sampler, collate_fn=collate, num_workers=0, generator=generator
    )
