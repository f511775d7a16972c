"""A tiny student with random weights whose scores spread above the threshold, and a copy of a dataset whose val
labels are that student's own best detections: its PyTorch AP is far from 0, so any drift of an exported or
reduced-precision model shows in AP (shared by tests/test_int8_search.py and tests/test_fp16.py)."""

from __future__ import annotations

import shutil
from pathlib import Path

import torch

from edgekd.data.loader import load_dataset
from edgekd.models.detector import DetectorConfig
from edgekd.models.inference import predict_dataset
from edgekd.models.zoo import build_detector

CLASSES = ("Car", "Pedestrian", "Cyclist")
LABELS_PER_IMAGE = 6


def student():
    """retinanet_mobilenet_v3_lite at 160x64, seeded, its class logits' bias raised from the 0.01 prior to -1."""
    torch.manual_seed(0)
    detector = build_detector(DetectorConfig("retinanet_mobilenet_v3_lite", CLASSES, (64, 160))).eval()
    torch.nn.init.normal_(detector.head_module.classification_head.cls_logits.weight, std=0.01)
    torch.nn.init.constant_(detector.head_module.classification_head.cls_logits.bias, -1.0)
    return detector


def pseudo_labelled(source: Path, target: Path, detector) -> Path:
    """A copy of `source` whose val labels are the detector's best detections (train labels unchanged)."""
    shutil.copytree(source, target)
    val = load_dataset(target, "val", classes=CLASSES)
    for image_id, dets in predict_dataset(detector, val).items():
        lines = []
        for box, label in zip(dets.boxes[:LABELS_PER_IMAGE], dets.labels[:LABELS_PER_IMAGE]):
            if box[2] - box[0] >= 1 and box[3] - box[1] >= 1:
                coords = " ".join(f"{v:.2f}" for v in box)
                lines.append(f"{CLASSES[label]} 0.00 0 -10 {coords} -1 -1 -1 -1000 -1000 -1000 -10")
        (target / "label_2" / f"{image_id}.txt").write_text("\n".join(lines) + "\n")
    return target
