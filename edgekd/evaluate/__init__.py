"""Detection metrics: COCO AP through pycocotools and the KITTI 2D benchmark (numpy only, no torch)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from edgekd.data.records import KITTI_CLASSES, Dataset, Detections, LabeledObject
from edgekd.errors import EdgeKDError
from edgekd.evaluate.coco import evaluate_coco
from edgekd.evaluate.kitti import evaluate_kitti
from edgekd.evaluate.result import CocoAP, DifficultyAP, EvalResult, KittiClassAP, summarize

__all__ = [
    "CocoAP",
    "DifficultyAP",
    "EvalResult",
    "KittiClassAP",
    "detections_to_objects",
    "evaluate_coco",
    "evaluate_detections",
    "evaluate_kitti",
    "summarize",
]


def detections_to_objects(det: Detections, classes: Sequence[str]) -> list[LabeledObject]:
    """Detections of one image as KITTI result objects: ``type`` = ``classes[label]``, ``score`` set."""
    labels = np.asarray(det.labels).reshape(-1)
    boxes = np.asarray(det.boxes, dtype=np.float64).reshape(-1, 4)
    scores = np.asarray(det.scores, dtype=np.float64).reshape(-1)
    if not len(boxes) == len(scores) == len(labels):
        raise EdgeKDError(f"detections: {len(boxes)} boxes, {len(scores)} scores and {len(labels)} labels differ")
    if len(labels) and (labels.min() < 0 or labels.max() >= len(classes)):
        raise EdgeKDError(f"detections: label {int(labels.max())} outside the {len(classes)} classes {list(classes)}")
    return [
        LabeledObject(type=classes[int(label)], bbox=tuple(float(v) for v in box), score=float(score))
        for box, score, label in zip(boxes, scores, labels, strict=True)
    ]


def evaluate_detections(dataset: Dataset, dets: Mapping[str, Detections]) -> EvalResult:
    """COCO metrics, plus the KITTI benchmark (AP|R40 and 11-point AP of the dataset's KITTI classes) when the
    dataset is in KITTI format and has KITTI classes; all AP values in percent."""
    coco = evaluate_coco(dataset.records, dets, dataset.classes)
    kitti_classes = tuple(c for c in dataset.classes if c in KITTI_CLASSES)
    if dataset.format != "kitti" or not kitti_classes:
        return EvalResult.from_dicts(coco)
    objects = {}
    for image_id, det in dets.items():
        try:
            objects[image_id] = detections_to_objects(det, dataset.classes)
        except EdgeKDError as error:
            raise EdgeKDError(f"image {image_id}: {error}") from None
    gt = {record.image_id: record.objects for record in dataset.records}
    return EvalResult.from_dicts(coco, evaluate_kitti(gt, objects, kitti_classes))
