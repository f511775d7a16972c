"""Dataset statistics: class counts, KITTI difficulty counts, box heights, occlusion and truncation."""

from __future__ import annotations

from collections import Counter
from dataclasses import asdict, dataclass, field

import numpy as np

from edgekd.data.records import Dataset, LabeledObject

# KITTI difficulty limits (devkit cpp/evaluate_object.cpp; kitti-protocol.md section 3.2).
DIFFICULTIES: dict[str, tuple[float, int, float]] = {
    "Easy": (40.0, 0, 0.15),  # min box height (px, exclusive), max occluded level, max truncation
    "Moderate": (25.0, 1, 0.30),
    "Hard": (25.0, 2, 0.50),
}
EVALUATED_CLASSES: tuple[str, ...] = ("Car", "Pedestrian", "Cyclist")
HEIGHT_BINS: tuple[float, ...] = tuple(float(v) for v in range(0, 201, 10)) + (float("inf"),)
IGNORE_TYPE = "DontCare"


def within_difficulty(obj: LabeledObject, level: str) -> bool:
    """True when a ground-truth box is within a difficulty level: height > min, occluded <= max, trunc <= max."""
    min_height, max_occluded, max_truncated = DIFFICULTIES[level]
    return obj.height > min_height and obj.occluded <= max_occluded and obj.truncated <= max_truncated


@dataclass
class DatasetStats:
    """Summary of a dataset's labels; fractions are over labelled (non-DontCare) objects."""

    n_images: int
    class_counts: dict[str, int]
    images_with: dict[str, int]  # images holding at least one object of the class
    difficulty: dict[str, dict[str, int]]  # class -> level -> count
    height_bins: list[str]
    height_hist: list[int]
    small_fraction: float  # box height < 40 px
    occluded_fractions: dict[int, float]  # occluded level -> fraction
    truncated_fraction: float  # truncated > 0
    per_class_heights: dict[str, list[float]] = field(default_factory=dict)

    def to_dict(self) -> dict:
        out = asdict(self)
        out.pop("per_class_heights")
        out["occluded_fractions"] = {str(k): v for k, v in self.occluded_fractions.items()}
        return out


def _bin_label(lo: float, hi: float) -> str:
    return f">={lo:g}" if np.isinf(hi) else f"{lo:g}-{hi:g}"


def compute_stats(dataset: Dataset) -> DatasetStats:
    """Statistics of every record's labels; difficulty counts for Car/Pedestrian/Cyclist and dataset classes."""
    class_counts: Counter[str] = Counter()
    images_with: Counter[str] = Counter()
    classes = tuple(dict.fromkeys(EVALUATED_CLASSES + tuple(dataset.classes)))
    difficulty = {c: dict.fromkeys(DIFFICULTIES, 0) for c in classes}
    heights: list[float] = []
    per_class: dict[str, list[float]] = {}
    occluded: Counter[int] = Counter()
    truncated = 0
    for record in dataset.records:
        images_with.update({obj.type for obj in record.objects})
        for obj in record.objects:
            class_counts[obj.type] += 1
            if obj.type == IGNORE_TYPE:
                continue
            heights.append(obj.height)
            per_class.setdefault(obj.type, []).append(obj.height)
            occluded[obj.occluded] += 1
            truncated += obj.truncated > 0
            if obj.type in difficulty:
                for level in DIFFICULTIES:
                    difficulty[obj.type][level] += within_difficulty(obj, level)
    # Bin i holds heights in [edge i, edge i+1); negative heights (kept bad boxes) count in the first bin.
    index = np.searchsorted(np.array(HEIGHT_BINS), np.array(heights, dtype=np.float64), side="right") - 1
    hist = np.bincount(np.clip(index, 0, len(HEIGHT_BINS) - 2), minlength=len(HEIGHT_BINS) - 1)
    n = max(1, len(heights))
    return DatasetStats(
        n_images=len(dataset.records),
        class_counts=dict(class_counts.most_common()),
        images_with=dict(images_with),
        difficulty=difficulty,
        height_bins=[_bin_label(lo, hi) for lo, hi in zip(HEIGHT_BINS[:-1], HEIGHT_BINS[1:], strict=True)],
        height_hist=[int(v) for v in hist],
        small_fraction=sum(h < 40 for h in heights) / n,
        occluded_fractions={level: occluded[level] / n for level in sorted(occluded)},
        truncated_fraction=truncated / n,
        per_class_heights=per_class,
    )
