"""COCO box AP (AP, AP50, AP75, APs, APm, APl) through pycocotools' COCOeval, built from in-memory records."""

from __future__ import annotations

import contextlib
import io
from collections import Counter
from collections.abc import Mapping, Sequence

import numpy as np
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from edgekd.data.records import Detections, ImageRecord
from edgekd.errors import EdgeKDError

COCO_METRICS: tuple[str, ...] = ("AP", "AP50", "AP75", "APs", "APm", "APl")
"""Keys of ``evaluate_coco``'s result, in the order of COCOeval.stats[0:6]."""

_DONTCARE = "dontcare"


def coco_image_ids(records: Sequence[ImageRecord]) -> dict[str, int]:
    """COCO integer image id of each record: its own id when every id is a distinct decimal number
    (KITTI "000123" -> 123, a COCO export's original ids), else its 1-based position."""
    ids = [r.image_id for r in records]
    if len(set(ids)) != len(ids):
        duplicated = sorted(i for i, n in Counter(ids).items() if n > 1)
        raise EdgeKDError(f"COCO evaluation: duplicate image id(s) {', '.join(duplicated[:5])}")
    if ids and all(i.isdecimal() for i in ids) and len({int(i) for i in ids}) == len(ids):
        return {i: int(i) for i in ids}
    return {i: n + 1 for n, i in enumerate(ids)}


def _xywh(box: Sequence[float]) -> list[float]:
    x1, y1, x2, y2 = (float(v) for v in box)
    return [x1, y1, x2 - x1, y2 - y1]


def coco_gt_dict(records: Sequence[ImageRecord], classes: Sequence[str]) -> dict:
    """A COCO ground-truth dict: category ``i + 1`` is ``classes[i]``; objects of other types are not ground truth.

    A DontCare object (when "DontCare" is not itself a class) becomes an ``iscrowd=1`` annotation in every
    category, so COCOeval ignores detections on it as the KITTI devkit does.
    """
    image_ids = coco_image_ids(records)
    dontcare_is_class = any(c.lower() == _DONTCARE for c in classes)
    annotations: list[dict] = []

    def add(image_id: int, category_id: int, box: Sequence[float], crowd: int) -> None:
        xywh = _xywh(box)
        annotations.append(
            {
                "id": len(annotations) + 1,
                "image_id": image_id,
                "category_id": category_id,
                "bbox": xywh,
                "area": xywh[2] * xywh[3],
                "iscrowd": crowd,
            }
        )

    for record in records:
        image_id = image_ids[record.image_id]
        for obj in record.objects:
            if obj.type in classes:
                add(image_id, classes.index(obj.type) + 1, obj.bbox, 0)
            elif obj.type.lower() == _DONTCARE and not dontcare_is_class:
                for category in range(len(classes)):
                    add(image_id, category + 1, obj.bbox, 1)
    return {
        "info": {"description": "edgekd ground truth"},
        "licenses": [],
        "images": [
            {"id": image_ids[r.image_id], "file_name": r.image_path.name, "width": r.width, "height": r.height}
            for r in records
        ],
        "categories": [{"id": i + 1, "name": name, "supercategory": "object"} for i, name in enumerate(classes)],
        "annotations": annotations,
    }


def coco_results(dets: Mapping[str, Detections], classes: Sequence[str], image_ids: Mapping[str, int]) -> list[dict]:
    """COCO result entries ``{"image_id", "category_id", "bbox" (xywh), "score"}`` of every detection.

    ``image_ids`` maps edgekd image ids to COCO ones (``coco_image_ids``); labels index ``classes``.
    """
    results: list[dict] = []
    for key, det in dets.items():
        if key not in image_ids:
            raise EdgeKDError(f"COCO evaluation: detections for image {key}, which has no ground truth")
        boxes = np.asarray(det.boxes, dtype=np.float64).reshape(-1, 4)
        scores = np.asarray(det.scores, dtype=np.float64).reshape(-1)
        labels = np.asarray(det.labels).reshape(-1)
        if not len(boxes) == len(scores) == len(labels):
            raise EdgeKDError(
                f"COCO evaluation: image {key} has {len(boxes)} boxes, {len(scores)} scores, {len(labels)} labels"
            )
        if not (np.isfinite(boxes).all() and np.isfinite(scores).all()):
            raise EdgeKDError(f"COCO evaluation: image {key} has a non-finite detection box or score")
        if len(labels) and (labels.min() < 0 or labels.max() >= len(classes)):
            raise EdgeKDError(
                f"COCO evaluation: image {key} has label {int(labels.max())} outside the {len(classes)} classes"
            )
        for box, score, label in zip(boxes, scores, labels, strict=True):
            results.append(
                {
                    "image_id": image_ids[key],
                    "category_id": int(label) + 1,
                    "bbox": _xywh(box),
                    "score": float(score),
                }
            )
    return results


def _coco(dataset: dict) -> COCO:
    coco = COCO()
    coco.dataset = dataset
    coco.createIndex()
    return coco


def evaluate_coco(
    records: Sequence[ImageRecord], dets: Mapping[str, Detections], classes: Sequence[str]
) -> dict[str, float | None]:
    """COCO box AP in percent with pycocotools' default parameters (IoU 0.50:0.95, maxDets 100, COCO area ranges).

    A metric that COCOeval leaves undefined (-1: no ground truth in that area range) is ``None``. Images absent
    from ``dets`` have no detections; no detections at all gives 0 wherever the metric is defined.
    """
    classes = tuple(classes)
    if not records:
        raise EdgeKDError("COCO evaluation: the dataset has no images")
    gt_dict = coco_gt_dict(records, classes)
    results = coco_results(dets, classes, coco_image_ids(records))
    with contextlib.redirect_stdout(io.StringIO()):
        coco_gt = _coco(gt_dict)
        if results:
            coco_dt = coco_gt.loadRes(results)
        else:  # loadRes indexes results[0]; an empty result set is evaluated through an empty COCO instead
            coco_dt = _coco(
                {
                    "info": gt_dict["info"],
                    "images": gt_dict["images"],
                    "categories": gt_dict["categories"],
                    "annotations": [],
                }
            )
        evaluator = COCOeval(coco_gt, coco_dt, iouType="bbox")
        evaluator.evaluate()
        evaluator.accumulate()
        evaluator.summarize()
    stats = evaluator.stats[: len(COCO_METRICS)]
    return {
        name: (None if value < 0 else float(value) * 100.0) for name, value in zip(COCO_METRICS, stats, strict=True)
    }
