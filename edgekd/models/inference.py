"""Batched inference of a PyTorch detector over a dataset split, for the training loop's validation: it reuses the
`DetectionDataset` whose decoded images stay cached across epochs. Everything else (`edgekd eval`, export parity,
`edgekd bench`) runs checkpoints through `edgekd.runtime.torch_runner.TorchRunner`; both feed the detector the same
tensors and give the same detections (tests/test_bench_torch.py)."""

from __future__ import annotations

import torch

from edgekd.data.records import Dataset, Detections
from edgekd.data.torch_dataset import DetectionDataset, make_loader
from edgekd.models.detector import Detector


@torch.no_grad()
def predict_dataset(
    detector: Detector, dataset: Dataset | DetectionDataset, device: str | torch.device = "cpu", batch_size: int = 8
) -> dict[str, Detections]:
    """Detections per image id, in original image pixels."""
    if not isinstance(dataset, DetectionDataset):
        dataset = DetectionDataset(dataset, detector.config.input_size)
    was_training = detector.training
    detector.eval()
    results: dict[str, Detections] = {}
    for images, _, scales, ids in make_loader(dataset, batch_size, shuffle=False, seed=0, epoch=0):
        for image_id, detections in zip(ids, detector.predict(images.to(device), scales.to(device))):
            results[image_id] = detections
    detector.train(was_training)
    return results
