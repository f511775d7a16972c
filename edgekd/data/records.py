"""The in-memory form every loader produces and every consumer (training, evaluation) reads."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

KITTI_CLASSES: tuple[str, ...] = ("Car", "Pedestrian", "Cyclist")
"""The classes the KITTI 2D benchmark evaluates, in edgekd's label order (label 0 = Car)."""
KITTI_TYPES: tuple[str, ...] = (
    "Car",
    "Van",
    "Truck",
    "Pedestrian",
    "Person_sitting",
    "Cyclist",
    "Tram",
    "Misc",
    "DontCare",
)
"""Every object type a KITTI label_2 file may name (devkit readme.txt)."""


@dataclass
class LabeledObject:
    """One object of a KITTI label_2 line (15 fields; 16 with a detection score).

    COCO annotations map onto it with truncated=0, occluded=0 and the 3D fields at KITTI's invalid defaults.
    """

    type: str
    bbox: tuple[float, float, float, float]  # left, top, right, bottom; 0-based pixels
    truncated: float = 0.0
    occluded: int = 0
    alpha: float = -10.0
    dimensions: tuple[float, float, float] = (-1.0, -1.0, -1.0)  # height, width, length (m)
    location: tuple[float, float, float] = (-1000.0, -1000.0, -1000.0)  # x, y, z camera coords (m)
    rotation_y: float = -10.0
    score: float | None = None  # results files only

    @property
    def height(self) -> float:
        return self.bbox[3] - self.bbox[1]


@dataclass
class ImageRecord:
    """One image and its labels."""

    image_id: str
    image_path: Path
    width: int
    height: int
    objects: list[LabeledObject] = field(default_factory=list)

    def targets(self, classes: tuple[str, ...]) -> tuple[np.ndarray, np.ndarray]:
        """Boxes (N, 4) float32 xyxy and labels (N,) int64 of the objects whose type is in `classes`."""
        kept = [o for o in self.objects if o.type in classes]
        boxes = np.array([o.bbox for o in kept], dtype=np.float32).reshape(-1, 4)
        labels = np.array([classes.index(o.type) for o in kept], dtype=np.int64)
        return boxes, labels


@dataclass
class Dataset:
    """A split of a dataset: its records and the class list detectors are trained on."""

    root: Path
    split: str
    classes: tuple[str, ...]
    records: list[ImageRecord]
    format: str  # "kitti" or "coco"

    def __len__(self) -> int:
        return len(self.records)

    def class_counts(self) -> dict[str, int]:
        """Labelled objects per class of `classes` (other types, e.g. DontCare or Van, are not counted)."""
        counts = dict.fromkeys(self.classes, 0)
        for record in self.records:
            for obj in record.objects:
                if obj.type in counts:
                    counts[obj.type] += 1
        return counts


@dataclass
class Detections:
    """Detections of one image in original image pixels; labels index the detector's class list."""

    boxes: np.ndarray  # (N, 4) float32 xyxy
    scores: np.ndarray  # (N,) float32
    labels: np.ndarray  # (N,) int64

    @classmethod
    def empty(cls) -> Detections:
        return cls(np.zeros((0, 4), np.float32), np.zeros(0, np.float32), np.zeros(0, np.int64))
