"""KITTI 2D protocol: hand-worked cases, the devkit's quirks, and a scalar transcription of evaluate_object.cpp.

Counting rule used in the hand computations below (the devkit's getThresholds with N_SAMPLE_PTS = 41): with n
counted ground truth, the k-th threshold (k = 0, 1, ...) is taken at the first true-positive index i (scores
descending) with k/40 <= (2i + 3) / (2n), and the last true positive is always taken. With every ground truth
detected and n >= 40 that gives 41 thresholds, so a perfect detector scores 100.
"""

from __future__ import annotations

import numpy as np
import pytest

from edgekd.data.records import LabeledObject
from edgekd.errors import EdgeKDError
from edgekd.evaluate.kitti import box_overlap, evaluate_kitti

CAR = (100.0, 100.0, 200.0, 200.0)  # 100 x 100 px
FREE = (300.0, 100.0, 400.0, 200.0)  # same size, overlaps nothing at CAR


def obj(type_: str, bbox, score: float | None = None, occluded: int = 0, truncated: float = 0.0) -> LabeledObject:
    return LabeledObject(
        type=type_, bbox=tuple(float(v) for v in bbox), occluded=occluded, truncated=truncated, score=score
    )


def perfect_cars(n: int, score: float = 0.9) -> tuple[dict, dict]:
    """n images, one fully visible 100 px Car each, each detected exactly."""
    gt = {f"{i:06d}": [obj("Car", CAR)] for i in range(n)}
    dets = {f"{i:06d}": [obj("Car", CAR, score)] for i in range(n)}
    return gt, dets


def car_ap(result: dict, cls: str = "Car") -> tuple[tuple[float, ...], tuple[float, ...]]:
    keys = ("easy", "moderate", "hard")
    return tuple(result["kitti"][cls][k] for k in keys), tuple(result["kitti_r11"][cls][k] for k in keys)


def assert_all(values: tuple[float, ...], expected: float) -> None:
    assert values == pytest.approx((expected,) * len(values), abs=1e-9)


def test_box_overlap_union_and_detection_area():
    a = np.array([[0, 0, 10, 10]])
    b = np.array([[5, 0, 15, 10], [20, 20, 30, 30], [0, 0, 20, 20]])
    # inter 50, union 150 -> 1/3; disjoint -> 0; a inside b: 100 / 400
    assert box_overlap(a, b)[0] == pytest.approx([1 / 3, 0.0, 0.25])
    # criterion "a": intersection / area of a -> 50/100, 0, 100/100
    assert box_overlap(a, b, "a")[0] == pytest.approx([0.5, 0.0, 1.0])


def test_fifty_perfect_cars_score_100():
    # n = 50 >= 40: 41 thresholds, TP = 50 and FP = 0 at each -> precision 1 everywhere -> 100 / 100.
    r40, r11 = car_ap(evaluate_kitti(*perfect_cars(50)))
    assert_all(r40, 100.0)
    assert_all(r11, 100.0)


def test_two_perfect_cars_quirk():
    # n = 2: thresholds at i = 0 (0 <= 3/4) and i = 1 (last) -> precision [1, 1, 0, ..., 0] by threshold index.
    # AP11 = (p[0] + p[4] + ... + p[40]) / 11 = 1/11 = 9.09; AP40 = (p[1] + ... + p[40]) / 40 = 1/40 = 2.50.
    r40, r11 = car_ap(evaluate_kitti(*perfect_cars(2)))
    assert_all(r40, 2.5)
    assert_all(r11, 100.0 / 11.0)


def test_low_score_false_positive_on_empty_image_does_not_count():
    # 60 perfect Cars at 0.9; every threshold is 0.9, so the 0.5 detection is below all of them -> 100 / 100.
    gt, dets = perfect_cars(60)
    gt["empty"] = []
    dets["empty"] = [obj("Car", CAR, 0.5)]
    r40, r11 = car_ap(evaluate_kitti(gt, dets))
    assert_all(r40, 100.0)
    assert_all(r11, 100.0)


def test_duplicate_detection_with_lower_score():
    # 50 Cars: images 0-24 detected at 0.9, images 25-49 at 0.6; image 0 also has a duplicate (x + 5 px,
    # IoU 95/105 > 0.7) scored 0.8, below its own box. Pass 1 gives image 0's Car to the 0.9 box (highest score),
    # so TP scores are 25 x 0.9 then 25 x 0.6. Threshold k sits at i_k = smallest i >= 1.25k - 1.5:
    # k = 0..20 -> i <= 24 (score 0.9), k = 21..40 -> i >= 25 (score 0.6).
    # At 0.9: TP 25, FP 0 (duplicate below threshold) -> 1. At 0.6: TP 50; in pass 2 image 0's Car takes the
    # largest-IoU box (the exact one), so the duplicate is FP 1 -> 50/51. Interpolated: p[0..20] = 1,
    # p[21..40] = 50/51.
    # AP40 = (20 + 20 * 50/51) / 40 = 99.0196; AP11 = (6 x 1 [k = 0..20 step 4] + 5 x 50/51) / 11 = 99.1087.
    gt = {f"{i:06d}": [obj("Car", CAR)] for i in range(50)}
    dets = {f"{i:06d}": [obj("Car", CAR, 0.9 if i < 25 else 0.6)] for i in range(50)}
    dets["000000"].append(obj("Car", (105.0, 100.0, 205.0, 200.0), 0.8))
    r40, r11 = car_ap(evaluate_kitti(gt, dets))
    assert_all(r40, 100.0 * (20 + 20 * 50 / 51) / 40)
    assert_all(r11, 100.0 * (6 + 5 * 50 / 51) / 11)


def test_duplicate_with_equal_score_is_a_false_positive_everywhere():
    # All 50 at 0.9 plus a 0.9 duplicate: 41 thresholds of 0.9, each with TP 50 and FP 1 -> 50/51 = 98.04.
    gt, dets = perfect_cars(50)
    dets["000000"].append(obj("Car", (105.0, 100.0, 205.0, 200.0), 0.9))
    r40, r11 = car_ap(evaluate_kitti(gt, dets))
    assert_all(r40, 100.0 * 50 / 51)
    assert_all(r11, 100.0 * 50 / 51)


def test_detection_on_dontcare_is_not_a_false_positive():
    # A 50 x 50 Car detection inside a 200 x 200 DontCare region: IoU = 2500/40000 = 0.06, but the devkit's
    # criterion is intersection / detection area = 1 > 0.7 -> removed from the FP count -> 100 / 100.
    gt, dets = perfect_cars(50)
    gt["000000"].append(obj("DontCare", (300.0, 100.0, 500.0, 300.0), occluded=-1, truncated=-1.0))
    dets["000000"].append(obj("Car", (300.0, 100.0, 350.0, 150.0), 0.95))
    r40, r11 = car_ap(evaluate_kitti(gt, dets))
    assert_all(r40, 100.0)
    assert_all(r11, 100.0)


def test_same_detection_without_dontcare_is_a_false_positive():
    # The detection of the previous test without the region: FP 1 at every 0.9 threshold -> 50/51.
    gt, dets = perfect_cars(50)
    dets["000000"].append(obj("Car", (300.0, 100.0, 350.0, 150.0), 0.95))
    r40, r11 = car_ap(evaluate_kitti(gt, dets))
    assert_all(r40, 100.0 * 50 / 51)
    assert_all(r11, 100.0 * 50 / 51)


def test_detection_mostly_outside_dontcare_is_a_false_positive():
    # Detection 200 px wide, half of it on a 100 px DontCare region: intersection / detection area = 0.5 <= 0.7.
    gt, dets = perfect_cars(50)
    gt["000000"].append(obj("DontCare", FREE, occluded=-1, truncated=-1.0))
    dets["000000"].append(obj("Car", (300.0, 100.0, 500.0, 200.0), 0.95))
    r40, _ = car_ap(evaluate_kitti(gt, dets))
    assert_all(r40, 100.0 * 50 / 51)


def test_too_small_ground_truth_and_detection_are_ignored():
    # A 20 px tall Car (<= 25 and <= 40: ignored at every level) detected by a 20 px box (< 25: ignored detection):
    # neither TP nor FP nor FN -> 100 / 100.
    gt, dets = perfect_cars(50)
    small = (300.0, 100.0, 340.0, 120.0)
    gt["000000"].append(obj("Car", small))
    dets["000000"].append(obj("Car", small, 0.95))
    r40, r11 = car_ap(evaluate_kitti(gt, dets))
    assert_all(r40, 100.0)
    assert_all(r11, 100.0)


def test_height_limit_is_inclusive_for_ground_truth_only():
    # A 25 px Car: ignored as ground truth at moderate/hard (height <= 25) but its 25 px detection is counted
    # (not < 25). The detection is assigned to the ignored ground truth -> neither TP nor FP -> 100.
    # At easy both are below 40: ground truth ignored, detection ignored -> 100 as well.
    gt, dets = perfect_cars(50)
    box25 = (300.0, 100.0, 340.0, 125.0)
    gt["000000"].append(obj("Car", box25))
    dets["000000"].append(obj("Car", box25, 0.95))
    r40, _ = car_ap(evaluate_kitti(gt, dets))
    assert_all(r40, 100.0)
    # Without that ground truth the same 25 px detection is an FP at moderate/hard (50/51) but ignored at easy.
    gt, dets = perfect_cars(50)
    dets["000000"].append(obj("Car", box25, 0.95))
    r40, _ = car_ap(evaluate_kitti(gt, dets))
    assert r40 == pytest.approx((100.0, 100.0 * 50 / 51, 100.0 * 50 / 51))


@pytest.mark.parametrize(
    ("shifted", "hit"),
    [
        ((118.0, 100.0, 218.0, 200.0), False),  # IoU 82/118 = 0.695 < 0.7
        ((117.0, 100.0, 217.0, 200.0), True),  # IoU 83/117 = 0.709 > 0.7
        ((100.0, 100.0, 200.0, 170.0), False),  # IoU 7000/10000 = 0.7 exactly: the test is strict ">"
    ],
)
def test_car_iou_threshold(shifted, hit):
    # 100 Cars, image 0 detected by `shifted` (score 0.9 like the rest).
    # Hit: 100 TP -> 100. Miss: 99 TP (n = 100; the last TP is always a threshold, 41 in all), and the shifted box
    # is an FP at each -> precision 99/100 at all 41 indices -> 99.0 / 99.0.
    gt, dets = perfect_cars(100)
    dets["000000"] = [obj("Car", shifted, 0.9)]
    r40, r11 = car_ap(evaluate_kitti(gt, dets))
    expected = 100.0 if hit else 99.0
    assert_all(r40, expected)
    assert_all(r11, expected)


def test_pedestrian_threshold_is_half():
    # 50 pedestrians 40 x 100; each detected 10 px to the right: IoU 30*100 / (2*4000 - 3000) = 0.6 > 0.5 -> 100.
    ped = (100.0, 100.0, 140.0, 200.0)
    gt = {f"{i}": [obj("Pedestrian", ped)] for i in range(50)}
    dets = {f"{i}": [obj("Pedestrian", (110.0, 100.0, 150.0, 200.0), 0.8)] for i in range(50)}
    r40, r11 = car_ap(evaluate_kitti(gt, dets), "Pedestrian")
    assert_all(r40, 100.0)
    assert_all(r11, 100.0)


def test_van_detection_does_not_hurt_car():
    # Van detections (a 100 px one on free space, a 30 px one too) are not Car detections: never FP for Car.
    gt, dets = perfect_cars(50)
    dets["000000"] += [obj("Van", FREE, 0.99), obj("Van", (500.0, 100.0, 540.0, 130.0), 0.99)]
    r40, r11 = car_ap(evaluate_kitti(gt, dets))
    assert_all(r40, 100.0)
    assert_all(r11, 100.0)


def test_car_detection_on_neighbouring_van_is_not_a_false_positive():
    # Van ground truth is "ignored" for Car: a Car detection matched to it is neither TP nor FP -> 100.
    gt, dets = perfect_cars(50)
    gt["000000"].append(obj("Van", FREE))
    dets["000000"].append(obj("Car", FREE, 0.95))
    r40, r11 = car_ap(evaluate_kitti(gt, dets))
    assert_all(r40, 100.0)
    assert_all(r11, 100.0)


def test_car_detection_on_truck_is_a_false_positive():
    # Truck is no neighbour of Car: the same detection is an FP at every 0.9 threshold -> 50/51.
    gt, dets = perfect_cars(50)
    gt["000000"].append(obj("Truck", FREE))
    dets["000000"].append(obj("Car", FREE, 0.95))
    r40, _ = car_ap(evaluate_kitti(gt, dets))
    assert_all(r40, 100.0 * 50 / 51)


def test_too_small_detection_of_another_class_is_an_ignored_detection():
    # Devkit quirk: a detection below MIN_HEIGHT is "ignored" (1) whatever its class, so it can take a Car.
    # 50 Cars detected at 0.9, plus a 41 px Car (counted at easy: 41 > 40) detected at 0.5 and covered by a
    # 39 px Pedestrian box scored 0.95 (IoU 39/41 = 0.95). Easy: pass 1 gives that Car the highest-score
    # candidate, the ignored Pedestrian box, so TP scores are 50 x 0.9 with n = 51 -> thresholds i_k >= 1.275k - 1.5
    # for i <= 48 (k = 0..38) plus the last TP: 40 thresholds of 0.9, precision 1 (the 0.5 Car is below them).
    # AP40 = 39/40 = 97.5; AP11 = 10/11 (indices 0..36) = 90.91. Moderate/hard: 39 >= 25, the Pedestrian box is
    # not a Car detection, the 41 px Car is a TP at 0.5 -> 100.
    gt, dets = perfect_cars(50)
    gt["extra"] = [obj("Car", (300.0, 100.0, 340.0, 141.0))]
    dets["extra"] = [
        obj("Car", (300.0, 100.0, 340.0, 141.0), 0.5),
        obj("Pedestrian", (300.0, 100.0, 340.0, 139.0), 0.95),
    ]
    r40, r11 = car_ap(evaluate_kitti(gt, dets))
    assert r40 == pytest.approx((97.5, 100.0, 100.0))
    assert r11 == pytest.approx((1000.0 / 11.0, 100.0, 100.0))


def test_difficulty_levels():
    # 50 fully visible Cars detected, 50 heavily occluded (occluded = 2) Cars missed.
    # Easy and moderate ignore occlusion 2 -> 100. Hard counts them: n = 100, 50 TP at 0.9.
    # Thresholds: i_k >= 2.5k - 1.5 for i <= 48 gives k = 0..19, plus the last TP -> 21 thresholds, precision 1
    # each -> p[0..20] = 1. AP40 = 20/40 = 50.0; AP11 = 6/11 (indices 0, 4, ..., 20) = 54.55.
    gt, dets = perfect_cars(50)
    for i in range(50, 100):
        gt[f"{i:06d}"] = [obj("Car", CAR, occluded=2)]
    r40, r11 = car_ap(evaluate_kitti(gt, dets))
    assert r40 == pytest.approx((100.0, 100.0, 50.0))
    assert r11 == pytest.approx((100.0, 100.0, 600.0 / 11.0))


def test_truncation_limits():
    # 50 detected Cars plus 50 missed Cars truncated 0.2: ignored at easy (> 0.15), counted at moderate and hard
    # (<= 0.3) -> same numbers as the occlusion case: easy 100, moderate/hard 50.0 (R40).
    gt, dets = perfect_cars(50)
    for i in range(50, 100):
        gt[f"{i:06d}"] = [obj("Car", CAR, truncated=0.2)]
    r40, _ = car_ap(evaluate_kitti(gt, dets))
    assert r40 == pytest.approx((100.0, 50.0, 50.0))


def test_class_without_detections_is_reported_zero_with_a_note():
    gt, dets = perfect_cars(50)
    gt["000000"].append(obj("Cyclist", FREE))
    result = evaluate_kitti(gt, dets)
    assert result["kitti"]["Cyclist"] == {"easy": 0.0, "moderate": 0.0, "hard": 0.0}
    assert result["kitti_r11"]["Pedestrian"] == {"easy": 0.0, "moderate": 0.0, "hard": 0.0}
    notes = " ".join(result["kitti_notes"])
    assert "Cyclist" in notes and "Pedestrian" in notes and "Car" not in notes


def test_bad_input_is_reported():
    gt, dets = perfect_cars(3)
    dets["000001"][0].score = None
    with pytest.raises(EdgeKDError, match="000001"):
        evaluate_kitti(gt, dets)
    gt, dets = perfect_cars(3)
    dets["nope"] = []
    with pytest.raises(EdgeKDError, match="nope"):
        evaluate_kitti(gt, dets)
    with pytest.raises(EdgeKDError, match="Van"):
        evaluate_kitti(*perfect_cars(3), classes=("Car", "Van"))


# ---------------------------------------------------------------------------------------------------------------
# A literal, scalar transcription of evaluate_object.cpp (cleanData, computeStatistics, getThresholds, eval_class)
# for 2D boxes, written independently of edgekd's vectorised implementation, compared on random scenes.

_MIN_H, _MAX_OCC, _MAX_TR = (40, 25, 25), (0, 1, 2), (0.15, 0.3, 0.5)
_THR = {"car": 0.7, "pedestrian": 0.5, "cyclist": 0.5}


def _ref_overlap(a, b, criterion):
    w = min(a[2], b[2]) - max(a[0], b[0])
    h = min(a[3], b[3]) - max(a[1], b[1])
    if w <= 0 or h <= 0:
        return 0.0
    inter = w * h
    area_a = (a[2] - a[0]) * (a[3] - a[1])
    area_b = (b[2] - b[0]) * (b[3] - b[1])
    return inter / (area_a + area_b - inter) if criterion == -1 else inter / area_a


def _ref_clean(cls, gt, det, diff):
    ignored_gt, n_gt = [], 0
    for g in gt:
        t = g.type.lower()
        if t == cls:
            valid = 1
        elif (cls == "pedestrian" and t == "person_sitting") or (cls == "car" and t == "van"):
            valid = 0
        else:
            valid = -1
        height = g.bbox[3] - g.bbox[1]
        ignore = g.occluded > _MAX_OCC[diff] or g.truncated > _MAX_TR[diff] or height <= _MIN_H[diff]
        if valid == 1 and not ignore:
            ignored_gt.append(0)
            n_gt += 1
        elif valid == 0 or (ignore and valid == 1):
            ignored_gt.append(1)
        else:
            ignored_gt.append(-1)
    dc = [g for g in gt if g.type.lower() == "dontcare"]
    ignored_det = []
    for d in det:
        height = int(abs(d.bbox[1] - d.bbox[3]))
        if height < _MIN_H[diff]:
            ignored_det.append(1)
        elif d.type.lower() == cls:
            ignored_det.append(0)
        else:
            ignored_det.append(-1)
    return ignored_gt, dc, ignored_det, n_gt


def _ref_stats(cls, gt, det, dc, ignored_gt, ignored_det, compute_fp, thresh=0.0):
    no_detection = -10000
    thr = _THR[cls]
    assigned = [False] * len(det)
    below = [compute_fp and d.score < thresh for d in det]
    tp, fp, v = 0, 0, []
    for i, g in enumerate(gt):
        if ignored_gt[i] == -1:
            continue
        det_idx, valid_detection, max_overlap, assigned_ignored_det = -1, no_detection, 0.0, False
        for j, d in enumerate(det):
            if ignored_det[j] == -1 or assigned[j] or below[j]:
                continue
            overlap = _ref_overlap(d.bbox, g.bbox, -1)
            if not compute_fp and overlap > thr and d.score > valid_detection:
                det_idx, valid_detection = j, d.score
            elif (
                compute_fp and overlap > thr and (overlap > max_overlap or assigned_ignored_det) and ignored_det[j] == 0
            ):
                max_overlap, det_idx, valid_detection, assigned_ignored_det = overlap, j, 1, False
            elif compute_fp and overlap > thr and valid_detection == no_detection and ignored_det[j] == 1:
                det_idx, valid_detection, assigned_ignored_det = j, 1, True
        if valid_detection == no_detection and ignored_gt[i] == 0:
            pass  # FN (not needed for AP)
        elif valid_detection != no_detection and (ignored_gt[i] == 1 or ignored_det[det_idx] == 1):
            assigned[det_idx] = True
        elif valid_detection != no_detection:
            tp += 1
            v.append(det[det_idx].score)
            assigned[det_idx] = True
    if compute_fp:
        for j in range(len(det)):
            if not (assigned[j] or ignored_det[j] in (-1, 1) or below[j]):
                fp += 1
        nstuff = 0
        for c in dc:
            for j, d in enumerate(det):
                if assigned[j] or ignored_det[j] in (-1, 1) or below[j]:
                    continue
                if _ref_overlap(d.bbox, c.bbox, 0) > thr:
                    assigned[j] = True
                    nstuff += 1
        fp -= nstuff
    return tp, fp, v


def _ref_thresholds(v, n_gt):
    v = sorted(v, reverse=True)
    t, current = [], 0.0
    for i in range(len(v)):
        l_recall = (i + 1) / n_gt
        r_recall = (i + 2) / n_gt if i < len(v) - 1 else l_recall
        if (r_recall - current) < (current - l_recall) and i < len(v) - 1:
            continue
        t.append(v[i])
        current += 1.0 / 40.0
    return t


def _ref_eval_class(cls, gts, dets, diff):
    cleaned, v, n_gt = [], [], 0
    for gt, det in zip(gts, dets, strict=True):
        ig, dc, idt, n = _ref_clean(cls, gt, det, diff)
        n_gt += n
        cleaned.append((ig, dc, idt))
        v += _ref_stats(cls, gt, det, dc, ig, idt, False)[2]
    thresholds = _ref_thresholds(v, n_gt)
    precision = [0.0] * 41
    for t_index, t in enumerate(thresholds):
        tp = fp = 0
        for (ig, dc, idt), gt, det in zip(cleaned, gts, dets, strict=True):
            a, b, _ = _ref_stats(cls, gt, det, dc, ig, idt, True, t)
            tp, fp = tp + a, fp + b
        precision[t_index] = tp / (tp + fp)
    for i in range(len(thresholds)):
        precision[i] = max(precision[i:])
    return sum(precision[1:]) / 40 * 100, sum(precision[0::4]) / 11 * 100


def _random_scene(rng: np.random.Generator, n_images: int) -> tuple[dict, dict]:
    types = ["Car", "Car", "Car", "Van", "Truck", "Pedestrian", "Pedestrian", "Person_sitting", "Cyclist", "DontCare"]
    gt, dets = {}, {}
    for i in range(n_images):
        objects, detections = [], []
        for _ in range(rng.integers(0, 7)):
            x, y = rng.uniform(0, 1000), rng.uniform(0, 250)
            h = float(rng.choice([20.0, 25.0, 30.0, 40.0, 41.0, 60.0, 120.0]))
            w = h * rng.uniform(0.4, 2.0)
            t = str(rng.choice(types))
            dontcare = t == "DontCare"
            objects.append(
                obj(
                    t,
                    (x, y, x + w, y + h),
                    occluded=-1 if dontcare else int(rng.integers(0, 4)),
                    truncated=-1.0 if dontcare else float(rng.choice([0.0, 0.1, 0.2, 0.4, 0.6])),
                )
            )
            for _ in range(rng.integers(0, 3)):  # jittered detections, duplicates included
                jitter = rng.normal(0, 0.05 * h, 4)
                det_type = t if rng.random() < 0.8 or dontcare else str(rng.choice(["Car", "Pedestrian", "Van"]))
                if dontcare:
                    det_type = str(rng.choice(["Car", "Pedestrian", "Cyclist"]))
                box = (x + jitter[0], y + jitter[1], x + w + jitter[2], y + h + jitter[3])
                detections.append(obj(det_type, box, float(np.round(rng.uniform(0.3, 1), 2))))
        for _ in range(rng.integers(0, 3)):  # background false positives
            x, y, h = rng.uniform(0, 1000), rng.uniform(0, 250), rng.uniform(15, 100)
            t = str(rng.choice(["Car", "Pedestrian", "Cyclist"]))
            detections.append(obj(t, (x, y, x + h, y + h), float(np.round(rng.uniform(0, 0.6), 2))))
        gt[f"{i:06d}"] = objects
        dets[f"{i:06d}"] = detections
    return gt, dets


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_matches_scalar_devkit_transcription(seed):
    gt, dets = _random_scene(np.random.default_rng(seed), 100)
    result = evaluate_kitti(gt, dets)
    ids = list(gt)
    for cls in ("Car", "Pedestrian", "Cyclist"):
        for diff, name in enumerate(("easy", "moderate", "hard")):
            r40, r11 = _ref_eval_class(cls.lower(), [gt[i] for i in ids], [dets.get(i, []) for i in ids], diff)
            assert result["kitti"][cls][name] == pytest.approx(r40, abs=1e-9), (cls, name)
            assert result["kitti_r11"][cls][name] == pytest.approx(r11, abs=1e-9), (cls, name)
