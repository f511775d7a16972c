"""Host-side post-processing in numpy, reproducing `Detector.postprocess` so exported models score the same AP.

Why not torchvision: deployment targets (a Jetson with TensorRT and numpy) often have no matching torch. The NMS
below mirrors torchvision's CPU kernel (torchvision/csrc/ops/cpu/nms_kernel.cpp) and `batched_nms` dispatch
(torchvision/ops/boxes.py) in float32, so the kept set is bit-identical to PyTorch's.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edgekd.data.records import Detections
from edgekd.errors import EdgeKDError
from edgekd.runtime.metadata import metadata_path

EFFICIENT_NMS_TOPK = 4096
"""EfficientNMS_TRT keeps only the 4096 best scores above its threshold before NMS (plugin README, "Algorithm")."""

_VANILLA_NMS_NUMEL = 4000  # torchvision's batched_nms runs one NMS per class above this many box coordinates (CPU)


@dataclass(frozen=True)
class PostprocessConfig:
    """The thresholds of `DetectorConfig` that post-processing needs."""

    score_thresh: float
    nms_thresh: float
    max_detections: int
    topk_candidates: int

    @classmethod
    def from_metadata(cls, meta: object) -> PostprocessConfig:
        return cls(meta.score_thresh, meta.nms_thresh, meta.max_detections, meta.topk_candidates)


def nms(boxes: np.ndarray, scores: np.ndarray, iou_threshold: float, limit: int | None = None) -> np.ndarray:
    """Greedy NMS as `torchvision.ops.nms`: indices kept, by decreasing score; a box is dropped when its IoU
    with a kept box is > `iou_threshold` (compared in float64 like the C++ kernel's double threshold).

    `limit` stops after that many kept boxes: the same first `limit` indices, without the rest of the work.
    """
    boxes = np.asarray(boxes, dtype=np.float32)
    scores = np.asarray(scores, dtype=np.float32)
    if len(boxes) == 0:
        return np.zeros(0, np.int64)
    x1, y1, x2, y2 = boxes.T
    areas = (x2 - x1) * (y2 - y1)
    order = np.argsort(-scores, kind="stable")
    suppressed = np.zeros(len(boxes), dtype=bool)
    keep = []
    for position, index in enumerate(order):
        if suppressed[index]:
            continue
        keep.append(index)
        if limit is not None and len(keep) >= limit:
            break
        rest = order[position + 1 :]
        rest = rest[~suppressed[rest]]
        if len(rest) == 0:
            continue
        width = np.maximum(np.float32(0), np.minimum(x2[index], x2[rest]) - np.maximum(x1[index], x1[rest]))
        height = np.maximum(np.float32(0), np.minimum(y2[index], y2[rest]) - np.maximum(y1[index], y1[rest]))
        inter = width * height
        with np.errstate(divide="ignore", invalid="ignore"):
            overlap = inter / (areas[index] + areas[rest] - inter)
        suppressed[rest[overlap.astype(np.float64) > iou_threshold]] = True
    return np.asarray(keep, dtype=np.int64)


def batched_nms(
    boxes: np.ndarray, scores: np.ndarray, labels: np.ndarray, iou_threshold: float, limit: int | None = None
) -> np.ndarray:
    """Class-wise NMS as `torchvision.ops.batched_nms` on CPU: the coordinate-offset trick for small inputs,
    one NMS per class above 4000 coordinates; indices kept, by decreasing score (the first `limit` of them)."""
    boxes = np.asarray(boxes, dtype=np.float32)
    scores = np.asarray(scores, dtype=np.float32)
    if boxes.size == 0:
        return np.zeros(0, np.int64)
    if boxes.size > _VANILLA_NMS_NUMEL:
        keep_mask = np.zeros(len(boxes), dtype=bool)
        for label in np.unique(labels):
            members = np.nonzero(labels == label)[0]
            keep_mask[members[nms(boxes[members], scores[members], iou_threshold, limit)]] = True
        kept = np.nonzero(keep_mask)[0]
        return kept[np.argsort(-scores[kept], kind="stable")][:limit]
    offsets = labels.astype(np.float32) * (boxes.max() + np.float32(1))
    return nms(boxes + offsets[:, None], scores, iou_threshold, limit)


def select_candidates(scores: np.ndarray, score_thresh: float, topk: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(box index, label, score) of the flattened (N*K) scores > threshold, at most the `topk` best."""
    num_classes = scores.shape[1]
    flat = scores.reshape(-1)
    candidates = np.nonzero(flat > score_thresh)[0]
    if len(candidates) > topk:
        candidates = candidates[np.argsort(-flat[candidates], kind="stable")[:topk]]
    return candidates // num_classes, candidates % num_classes, flat[candidates]


def postprocess_image(
    boxes: np.ndarray, scores: np.ndarray, scale: np.ndarray | None, config: PostprocessConfig
) -> Detections:
    """One image's raw outputs (N, 4) + (N, K) -> detections in original pixels (`Detector.postprocess`)."""
    box_index, labels, kept_scores = select_candidates(scores, config.score_thresh, config.topk_candidates)
    candidate_boxes = boxes[box_index].astype(np.float32)
    keep = batched_nms(candidate_boxes, kept_scores, labels, config.nms_thresh, config.max_detections)
    final = candidate_boxes[keep]
    if scale is not None:
        final = final / np.tile(np.asarray(scale, np.float32), 2)
    return Detections(final.astype(np.float32), kept_scores[keep].astype(np.float32), labels[keep].astype(np.int64))


def postprocess_raw(
    boxes: np.ndarray, scores: np.ndarray, scales: np.ndarray | None, config: PostprocessConfig
) -> list[Detections]:
    """A batch of raw outputs (B, N, 4) + (B, N, K) -> detections per image; `scales` (B, 2) = (sx, sy)."""
    return [
        postprocess_image(boxes[i], scores[i], None if scales is None else scales[i], config)
        for i in range(boxes.shape[0])
    ]


def postprocess_padded(outputs: Mapping[str, np.ndarray], scales: np.ndarray | None) -> list[Detections]:
    """Padded NMS outputs (ONNX NonMaxSuppression tail or EfficientNMS_TRT): keep the first `num_detections`
    rows of each image and map boxes back to original pixels."""
    counts = np.asarray(outputs["num_detections"]).reshape(-1)
    results = []
    for i, count in enumerate(counts):
        count = int(count)
        boxes = np.asarray(outputs["detection_boxes"][i, :count], dtype=np.float32)
        if scales is not None:
            boxes = boxes / np.tile(np.asarray(scales[i], np.float32), 2)
        results.append(
            Detections(
                boxes.astype(np.float32),
                np.asarray(outputs["detection_scores"][i, :count], dtype=np.float32),
                np.asarray(outputs["detection_classes"][i, :count], dtype=np.int64),
            )
        )
    return results


def decode_outputs(
    outputs: Mapping[str, np.ndarray], scales: np.ndarray | None, nms_mode: str, config: PostprocessConfig
) -> list[Detections]:
    """Detections from a model's named outputs, whatever its NMS mode."""
    if nms_mode == "none":
        return postprocess_raw(outputs["boxes"], outputs["scores"], scales, config)
    return postprocess_padded(outputs, scales)


def check_labels(detections: Sequence[Detections], classes: Sequence[str], model_path: str | Path) -> None:
    """A class index beyond the metadata's class list (edited metadata, or a model exported for more classes) is
    an error naming both counts."""
    labels = [int(d.labels.max()) for d in detections if len(d.labels)]
    if labels and max(labels) >= len(classes):
        raise EdgeKDError(
            f"{metadata_path(model_path)}: field 'classes' lists {len(classes)} classes, but {Path(model_path).name} "
            f"outputs class index {max(labels)} (at least {max(labels) + 1} classes)"
        )
