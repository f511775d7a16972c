"""The KITTI 2D object detection benchmark, reproduced in numpy.

Follows the official devkit (``cpp/evaluate_object.cpp``: ``cleanData``, ``computeStatistics``, ``getThresholds``,
``eval_class``) quirks included: two matching passes, 41 score thresholds picked from the true-positive scores,
precision stored by threshold index, interpolation ``max(precision[i:])``, strict ``overlap > threshold``, ground
truth ignored when ``height <= MIN_HEIGHT`` but detections when ``height < MIN_HEIGHT``, neighbouring classes
(Van for Car, Person_sitting for Pedestrian) and DontCare regions ignored. AP|R40 follows Simonelli et al.,
"Disentangling Monocular 3D Object Detection" (arXiv 1905.12365), Sec. 3: the mean of precision at recall steps
1/40 ... 40/40; the 11-point AP is the pre-2019 mean over recall steps 0, 0.1, ..., 1 (devkit readme).

Written here because no maintained pip package implements the 2D protocol (the protocol: docs/kitti-evaluation.md).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from edgekd.data.records import KITTI_CLASSES, LabeledObject
from edgekd.errors import EdgeKDError

DIFFICULTIES: tuple[str, ...] = ("easy", "moderate", "hard")
MIN_HEIGHT = np.array([40, 25, 25], dtype=np.float64)  # px, per difficulty
MAX_OCCLUSION = np.array([0, 1, 2], dtype=np.int64)
MAX_TRUNCATION = np.array([0.15, 0.3, 0.5], dtype=np.float64)
MIN_OVERLAP: dict[str, float] = {"Car": 0.7, "Pedestrian": 0.5, "Cyclist": 0.5}
NEIGHBOUR_CLASS: dict[str, str] = {"car": "van", "pedestrian": "person_sitting"}  # lower-case, as strcasecmp
N_SAMPLE_PTS = 41
_NO_DETECTION = -10000.0  # the devkit's sentinel score: detections scoring at or below it never match in pass 1


@dataclass
class _ImageArrays:
    """One image's ground truth and detections as arrays, with the class-independent overlaps."""

    gt_types: np.ndarray  # (G,) lower-case str
    gt_height: np.ndarray  # (G,) y2 - y1
    gt_truncation: np.ndarray  # (G,)
    gt_occlusion: np.ndarray  # (G,)
    det_types: np.ndarray  # (D,) lower-case str
    det_height: np.ndarray  # (D,) int(|y1 - y2|), as the devkit casts to int32
    det_left: np.ndarray  # (D,) x1
    det_scores: np.ndarray  # (D,)
    iou: np.ndarray  # (D, G) intersection over union
    dontcare_overlap: np.ndarray  # (D,) max over DontCare boxes of intersection / detection area


def box_overlap(a: np.ndarray, b: np.ndarray, criterion: str = "union") -> np.ndarray:
    """Pairwise overlap (A, B) of xyxy boxes, continuous coordinates (area = (x2-x1)*(y2-y1), no +1).

    criterion "union": intersection over union; "a": intersection over the area of the box from ``a``
    (the devkit's criterion 0, used for detections against DontCare regions). Pairs whose intersection has no
    positive width and height overlap 0, as ``imageBoxOverlap`` returns early.
    """
    a = np.asarray(a, dtype=np.float64).reshape(-1, 4)
    b = np.asarray(b, dtype=np.float64).reshape(-1, 4)
    w = np.minimum(a[:, None, 2], b[None, :, 2]) - np.maximum(a[:, None, 0], b[None, :, 0])
    h = np.minimum(a[:, None, 3], b[None, :, 3]) - np.maximum(a[:, None, 1], b[None, :, 1])
    positive = (w > 0) & (h > 0)
    inter = np.where(positive, w * h, 0.0)
    area_a = ((a[:, 2] - a[:, 0]) * (a[:, 3] - a[:, 1]))[:, None]
    if criterion == "union":
        area_b = ((b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1]))[None, :]
        denominator = area_a + area_b - inter
    elif criterion == "a":
        denominator = np.broadcast_to(area_a, inter.shape)
    else:
        raise ValueError(f"unknown overlap criterion {criterion!r}")
    out = np.zeros_like(inter)
    np.divide(inter, denominator, out=out, where=positive)
    return out


def get_thresholds(tp_scores: np.ndarray, n_gt: int) -> np.ndarray:
    """The devkit's ``getThresholds``: scores (descending) whose recall is nearest each step k/40."""
    scores = np.sort(np.asarray(tp_scores, dtype=np.float64))[::-1]
    thresholds: list[float] = []
    current_recall = 0.0
    last = len(scores) - 1
    for i, score in enumerate(scores):
        l_recall = (i + 1) / n_gt
        r_recall = (i + 2) / n_gt if i < last else l_recall
        if (r_recall - current_recall) < (current_recall - l_recall) and i < last:
            continue
        thresholds.append(float(score))
        current_recall += 1.0 / (N_SAMPLE_PTS - 1.0)
    return np.array(thresholds, dtype=np.float64)


def _image_arrays(image_id: str, gt: Sequence[LabeledObject], dets: Sequence[LabeledObject]) -> _ImageArrays:
    for index, det in enumerate(dets):
        if det.score is None:
            raise EdgeKDError(f"KITTI evaluation: detection {index} ({det.type}) of image {image_id} has no score")
    gt_boxes = np.array([o.bbox for o in gt], dtype=np.float64).reshape(-1, 4)
    det_boxes = np.array([d.bbox for d in dets], dtype=np.float64).reshape(-1, 4)
    det_scores = np.array([d.score for d in dets], dtype=np.float64)
    for name, values in (("ground-truth bbox", gt_boxes), ("detection bbox", det_boxes), ("score", det_scores)):
        if not np.isfinite(values).all():
            raise EdgeKDError(f"KITTI evaluation: image {image_id} has a non-finite {name}")
    gt_types = np.array([o.type.lower() for o in gt], dtype=object)
    dontcare = gt_boxes[gt_types == "dontcare"] if len(gt) else np.zeros((0, 4))
    dc = box_overlap(det_boxes, dontcare, criterion="a")
    return _ImageArrays(
        gt_types=gt_types,
        gt_height=gt_boxes[:, 3] - gt_boxes[:, 1],
        gt_truncation=np.array([o.truncated for o in gt], dtype=np.float64),
        gt_occlusion=np.array([o.occluded for o in gt], dtype=np.int64),
        det_types=np.array([d.type.lower() for d in dets], dtype=object),
        det_height=np.trunc(np.abs(det_boxes[:, 1] - det_boxes[:, 3])),
        det_left=det_boxes[:, 0],
        det_scores=det_scores,
        iou=box_overlap(det_boxes, gt_boxes),
        dontcare_overlap=dc.max(axis=1) if dc.shape[1] else np.zeros(len(dets)),
    )


def _clean(img: _ImageArrays, cls: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The devkit's ``cleanData`` for all three difficulties at once.

    Returns the indices of the ground truth that takes part (current or neighbouring class; ``ignored_gt != -1``),
    ``ignored_gt`` (3, G') for those, and ``ignored_det`` (3, D): 0 counted, 1 ignored (too small, any class),
    -1 not of the class.
    """
    current = img.gt_types == cls
    neighbour = img.gt_types == NEIGHBOUR_CLASS[cls] if cls in NEIGHBOUR_CLASS else np.zeros_like(current)
    keep = np.flatnonzero(current | neighbour)
    ignore = (
        (img.gt_occlusion[keep][None] > MAX_OCCLUSION[:, None])
        | (img.gt_truncation[keep][None] > MAX_TRUNCATION[:, None])
        | (img.gt_height[keep][None] <= MIN_HEIGHT[:, None])
    )
    ignored_gt = np.where(current[keep][None] & ~ignore, 0, 1)
    too_small = img.det_height[None] < MIN_HEIGHT[:, None]
    ignored_det = np.where(too_small, 1, np.where(img.det_types == cls, 0, -1)[None])
    return keep, ignored_gt, ignored_det


def _match(
    iou: np.ndarray,
    ignored_gt: np.ndarray,
    ignored_det: np.ndarray,
    active: np.ndarray,
    scores: np.ndarray,
    thr: float,
    second_pass: bool,
) -> tuple[np.ndarray, np.ndarray]:
    """The assignment loop of ``computeStatistics`` for R rows (difficulty, score threshold) at once.

    iou (D, G), ignored_gt (R, G), ignored_det (R, D), active (R, D): detection not below the row's threshold.
    Pass 1 gives each ground truth the unassigned overlapping detection with the highest score; pass 2 the one
    with the largest overlap among counted detections, falling back to the first too-small one.
    Returns the detection index of each true positive (R, G; -1 elsewhere) and the assigned detections (R, D).
    """
    n_rows, n_det = ignored_det.shape
    tp_det = np.full(ignored_gt.shape, -1, dtype=np.int64)
    assigned = np.zeros((n_rows, n_det), dtype=bool)
    if n_det == 0:
        return tp_det, assigned
    rows = np.arange(n_rows)
    usable = active & (ignored_det != -1)
    if not second_pass:
        usable &= scores[None] > _NO_DETECTION
    overlapping = iou > thr
    for g in np.flatnonzero(overlapping.any(axis=0)):  # a ground truth nothing overlaps changes nothing
        hit = usable & ~assigned & overlapping[:, g][None]
        if second_pass:
            counted = hit & (ignored_det == 0)
            fallback = hit & (ignored_det == 1)
            has_counted = counted.any(axis=1)
            best = np.argmax(np.where(counted, iou[:, g][None], -np.inf), axis=1)
            j = np.where(has_counted, best, np.argmax(fallback, axis=1))
            found = has_counted | fallback.any(axis=1)
        else:
            j = np.argmax(np.where(hit, scores[None], -np.inf), axis=1)
            found = hit.any(axis=1)
        assigned[rows[found], j[found]] = True
        tp = found & (ignored_gt[:, g] == 0) & (ignored_det[rows, j] == 0)
        tp_det[tp, g] = j[tp]
    return tp_det, assigned


def _evaluate_class(images: list[_ImageArrays], cls: str) -> tuple[np.ndarray, np.ndarray]:
    """Interpolated precision (3, 41) per difficulty, and the number of counted ground truth (3,)."""
    key = cls.lower()
    thr = MIN_OVERLAP[cls]
    cleaned = [_clean(img, key) for img in images]

    n_gt = np.zeros(3, dtype=np.int64)
    tp_scores: list[list[np.ndarray]] = [[], [], []]
    for img, (keep, ignored_gt, ignored_det) in zip(images, cleaned, strict=True):
        n_gt += (ignored_gt == 0).sum(axis=1)
        if not len(keep) or not len(img.det_scores):
            continue
        active = np.ones(ignored_det.shape, dtype=bool)
        tp_det, _ = _match(img.iou[:, keep], ignored_gt, ignored_det, active, img.det_scores, thr, False)
        for d in range(3):
            tp_scores[d].append(img.det_scores[tp_det[d][tp_det[d] >= 0]])

    thresholds = [
        get_thresholds(np.concatenate(s) if s else np.zeros(0), int(n)) for s, n in zip(tp_scores, n_gt, strict=True)
    ]
    row_difficulty = np.concatenate([np.full(len(t), d) for d, t in enumerate(thresholds)]).astype(np.int64)
    row_threshold = np.concatenate(thresholds)
    tp = np.zeros(len(row_threshold), dtype=np.int64)
    fp = np.zeros_like(tp)
    if len(row_threshold):
        for img, (keep, ignored_gt, ignored_det) in zip(images, cleaned, strict=True):
            if not len(img.det_scores):
                continue
            rows_ignored_det = ignored_det[row_difficulty]
            active = img.det_scores[None] >= row_threshold[:, None]
            tp_det, assigned = _match(
                img.iou[:, keep], ignored_gt[row_difficulty], rows_ignored_det, active, img.det_scores, thr, True
            )
            tp += (tp_det >= 0).sum(axis=1)
            # FP: counted, unassigned detections above threshold, minus those on DontCare ("nstuff")
            on_dontcare = img.dontcare_overlap > thr
            fp += (active & ~assigned & (rows_ignored_det == 0) & ~on_dontcare[None]).sum(axis=1)

    precision = np.zeros((3, N_SAMPLE_PTS), dtype=np.float64)
    for d in range(3):
        rows = row_difficulty == d
        denominator = tp[rows] + fp[rows]
        values = np.zeros(int(rows.sum()))
        np.divide(tp[rows], denominator, out=values, where=denominator > 0)
        precision[d, : len(values)] = values
    precision = np.maximum.accumulate(precision[:, ::-1], axis=1)[:, ::-1]
    return precision, n_gt


def ap_r40(precision: np.ndarray) -> np.ndarray:
    """AP|R40 in percent: mean of interpolated precision at recall steps 1..40 (Simonelli et al., Sec. 3)."""
    return precision[..., 1:].sum(axis=-1) / 40.0 * 100.0


def ap_r11(precision: np.ndarray) -> np.ndarray:
    """11-point AP in percent: mean of precision at indices 0, 4, ..., 40 (devkit readme pseudocode)."""
    return precision[..., 0::4].sum(axis=-1) / 11.0 * 100.0


def evaluate_kitti(
    gt: Mapping[str, Sequence[LabeledObject]],
    dets: Mapping[str, Sequence[LabeledObject]],
    classes: Sequence[str] = KITTI_CLASSES,
) -> dict:
    """KITTI 2D AP per class and difficulty, in percent.

    ``gt`` maps every evaluated image id to its label objects (DontCare and neighbouring classes included);
    ``dets`` maps image ids to detections (``type`` = class name, ``score`` set); images absent from ``dets`` have
    none. Returns ``{"kitti": {cls: {"easy", "moderate", "hard"}}`` (AP|R40), ``"kitti_r11"`` (11-point AP) and
    ``"kitti_notes"``: why a value is 0 without being measured (the devkit skips a class nobody detected; a
    difficulty without counted ground truth has no recall).
    """
    unknown = [c for c in classes if c not in MIN_OVERLAP]
    if unknown:
        known = ", ".join(MIN_OVERLAP)
        raise EdgeKDError(f"KITTI evaluation: unknown class(es) {', '.join(unknown)}; the benchmark evaluates {known}")
    missing = sorted(set(dets) - set(gt))
    if missing:
        shown = ", ".join(missing[:5]) + (" ..." if len(missing) > 5 else "")
        raise EdgeKDError(f"KITTI evaluation: detections for {len(missing)} image(s) without ground truth: {shown}")

    images = [_image_arrays(image_id, gt[image_id], dets.get(image_id, ())) for image_id in gt]
    result: dict = {"kitti": {}, "kitti_r11": {}, "kitti_notes": []}
    for cls in classes:
        key = cls.lower()
        # the devkit evaluates a class only if some detection of it has a valid box (left >= 0)
        detected = any(bool(np.any((img.det_types == key) & (img.det_left >= 0))) for img in images)
        if not detected:
            zeros = dict.fromkeys(DIFFICULTIES, 0.0)
            result["kitti"][cls] = dict(zeros)
            result["kitti_r11"][cls] = dict(zeros)
            result["kitti_notes"].append(f"{cls}: no detections of this class, not evaluated; AP reported as 0")
            continue
        precision, n_gt = _evaluate_class(images, cls)
        r40, r11 = ap_r40(precision), ap_r11(precision)
        result["kitti"][cls] = {name: float(r40[d]) for d, name in enumerate(DIFFICULTIES)}
        result["kitti_r11"][cls] = {name: float(r11[d]) for d, name in enumerate(DIFFICULTIES)}
        for d, name in enumerate(DIFFICULTIES):
            if n_gt[d] == 0:
                result["kitti_notes"].append(f"{cls}: no {name} ground truth; AP reported as 0")
    return result


@dataclass(frozen=True)
class Outcome:
    """What the KITTI rules make of one detection or one ground-truth object at one difficulty.

    kind: "tp" (a counted match), "fp" (a counted false positive), "missed" (counted ground truth left unmatched,
    a false negative) or "ignored" (neither counted nor penalised; `reason` says why).
    """

    kind: str
    reason: str = ""


@dataclass
class ImageMatch:
    """Outcomes of one image: one per detection and one per ground-truth object, in the order given."""

    detections: list[Outcome]
    ground_truth: list[Outcome]

    def count(self, kind: str) -> int:
        """True positives ("tp"), false positives ("fp") or misses ("missed") of the image, as the AP counts them."""
        return sum(o.kind == kind for o in (self.ground_truth if kind in ("tp", "missed") else self.detections))


def _ignored_gt_reason(img: _ImageArrays, g: int, d: int) -> str:
    """Why a ground truth of the evaluated class does not count at difficulty `d` (the criteria of ``_clean``)."""
    reasons = []
    if img.gt_height[g] <= MIN_HEIGHT[d]:
        reasons.append(f"height <= {MIN_HEIGHT[d]:g} px")
    if img.gt_occlusion[g] > MAX_OCCLUSION[d]:
        reasons.append(f"occluded {img.gt_occlusion[g]}")
    if img.gt_truncation[g] > MAX_TRUNCATION[d]:
        reasons.append(f"truncated {img.gt_truncation[g]:.2f}")
    return ", ".join(reasons)


def match_image(
    gt: Sequence[LabeledObject],
    dets: Sequence[LabeledObject],
    classes: Sequence[str] = KITTI_CLASSES,
    difficulty: str = "moderate",
    image_id: str = "image",
) -> ImageMatch:
    """Per-detection and per-ground-truth outcomes of one image under the evaluator's own cleaning and second-pass
    matching (``_clean``, ``_match``), with every given detection active: the true positives, false positives and
    misses that the AP counts at a score threshold equal to the lowest given score (pass only the detections at or
    above the threshold). Detections of classes outside `classes` and ground truth of other types are ignored.
    """
    if difficulty not in DIFFICULTIES:
        raise EdgeKDError(f"KITTI difficulty {difficulty!r}: expected one of {', '.join(DIFFICULTIES)}")
    unknown = [c for c in classes if c not in MIN_OVERLAP]
    if unknown:
        known = ", ".join(MIN_OVERLAP)
        raise EdgeKDError(f"KITTI evaluation: unknown class(es) {', '.join(unknown)}; the benchmark evaluates {known}")
    d = DIFFICULTIES.index(difficulty)
    img = _image_arrays(image_id, gt, dets)
    det_out: list[Outcome | None] = [None] * len(dets)
    gt_out: list[Outcome | None] = [None] * len(gt)
    active = np.ones((1, len(dets)), dtype=bool)
    for cls in classes:
        key, thr = cls.lower(), MIN_OVERLAP[cls]
        keep, ignored_gt, ignored_det = _clean(img, key)
        tp_det, assigned = _match(
            img.iou[:, keep], ignored_gt[d : d + 1], ignored_det[d : d + 1], active, img.det_scores, thr, True
        )
        for i, g in enumerate(keep):
            if img.gt_types[g] != key:
                gt_out[g] = gt_out[g] or Outcome("ignored", f"neighbouring class of {cls}")
            elif ignored_gt[d, i] == 0:
                gt_out[g] = Outcome("tp") if tp_det[0, i] >= 0 else Outcome("missed")
            else:
                gt_out[g] = Outcome("ignored", f"{difficulty}: {_ignored_gt_reason(img, g, d)}")
        matched = set(tp_det[0][tp_det[0] >= 0].tolist())
        for j in np.flatnonzero(img.det_types == key):
            if ignored_det[d, j] == 1:
                det_out[j] = Outcome("ignored", f"height < {MIN_HEIGHT[d]:g} px")
            elif j in matched:
                det_out[j] = Outcome("tp")
            elif assigned[0, j]:
                det_out[j] = Outcome("ignored", "matches an ignored object")
            elif img.dontcare_overlap[j] > thr:
                det_out[j] = Outcome("ignored", "on a DontCare region")
            else:
                det_out[j] = Outcome("fp")
    return ImageMatch(
        detections=[o or Outcome("ignored", "class not evaluated") for o in det_out],
        ground_truth=[
            o or Outcome("ignored", "DontCare" if obj.type == "DontCare" else "class not evaluated")
            for o, obj in zip(gt_out, gt, strict=True)
        ],
    )
