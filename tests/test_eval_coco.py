"""COCO box AP: equal to a direct pycocotools run on independently written JSON, plus hand cases."""

from __future__ import annotations

import contextlib
import io
import json
from pathlib import Path

import numpy as np
import pytest
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from edgekd.data.records import Dataset, Detections, ImageRecord, LabeledObject
from edgekd.errors import EdgeKDError
from edgekd.evaluate import detections_to_objects, evaluate_detections
from edgekd.evaluate.coco import coco_gt_dict, coco_image_ids, coco_results, evaluate_coco

CLASSES = ("Car", "Pedestrian", "Cyclist")
KEYS = ("AP", "AP50", "AP75", "APs", "APm", "APl")


def record(image_id: str, objects: list[LabeledObject]) -> ImageRecord:
    return ImageRecord(image_id, Path(f"image_2/{image_id}.png"), 1242, 375, objects)


def obj(type_: str, bbox) -> LabeledObject:
    return LabeledObject(type=type_, bbox=tuple(float(v) for v in bbox))


def detections(boxes, scores, labels) -> Detections:
    return Detections(
        np.asarray(boxes, np.float32).reshape(-1, 4), np.asarray(scores, np.float32), np.asarray(labels, np.int64)
    )


def perfect(records: list[ImageRecord]) -> dict[str, Detections]:
    out = {}
    for r in records:
        kept = [o for o in r.objects if o.type in CLASSES]
        out[r.image_id] = detections([o.bbox for o in kept], [0.9] * len(kept), [CLASSES.index(o.type) for o in kept])
    return out


def sized_records() -> list[ImageRecord]:
    """Small (20 x 20 = 400 < 32^2), medium (50 x 50) and large (120 x 100) objects, a DontCare and a Van."""
    return [
        record("000000", [obj("Car", (10, 10, 130, 110)), obj("Pedestrian", (200, 50, 220, 70))]),
        record("000001", [obj("Cyclist", (300, 100, 350, 150)), obj("Van", (400, 100, 500, 200))]),
        record("000002", [obj("Car", (600, 100, 650, 150)), obj("DontCare", (700, 100, 900, 300))]),
    ]


def reference_stats(records: list[ImageRecord], dets: dict[str, Detections], tmp_path: Path) -> np.ndarray:
    """pycocotools on JSON files written here from the spec: ids by position, DontCare as crowd in every class."""
    images, annotations, results = [], [], []
    for n, r in enumerate(records, start=1):
        images.append({"id": n, "width": r.width, "height": r.height, "file_name": r.image_path.name})
        for o in r.objects:
            x1, y1, x2, y2 = o.bbox
            cats = [CLASSES.index(o.type) + 1] if o.type in CLASSES else [1, 2, 3] if o.type == "DontCare" else []
            for cat in cats:
                annotations.append(
                    {
                        "id": len(annotations) + 1,
                        "image_id": n,
                        "category_id": cat,
                        "bbox": [x1, y1, x2 - x1, y2 - y1],
                        "area": (x2 - x1) * (y2 - y1),
                        "iscrowd": int(o.type == "DontCare"),
                    }
                )
        d = dets[r.image_id]
        for box, score, label in zip(d.boxes.tolist(), d.scores.tolist(), d.labels.tolist(), strict=True):
            results.append(
                {
                    "image_id": n,
                    "category_id": label + 1,
                    "bbox": [box[0], box[1], box[2] - box[0], box[3] - box[1]],
                    "score": score,
                }
            )
    categories = [{"id": i + 1, "name": c} for i, c in enumerate(CLASSES)]
    gt_file, res_file = tmp_path / "gt.json", tmp_path / "res.json"
    gt_file.write_text(json.dumps({"info": {}, "images": images, "annotations": annotations, "categories": categories}))
    res_file.write_text(json.dumps(results))
    with contextlib.redirect_stdout(io.StringIO()):
        gt = COCO(str(gt_file))
        evaluator = COCOeval(gt, gt.loadRes(str(res_file)), "bbox")
        evaluator.evaluate()
        evaluator.accumulate()
        evaluator.summarize()
    return evaluator.stats[:6] * 100.0


def random_case(seed: int) -> tuple[list[ImageRecord], dict[str, Detections]]:
    rng = np.random.default_rng(seed)
    types = ["Car", "Car", "Pedestrian", "Cyclist", "Van", "DontCare"]
    records, dets = [], {}
    for i in range(30):
        objects, boxes, scores, labels = [], [], [], []
        for _ in range(rng.integers(0, 6)):
            x, y, w, h = rng.uniform(0, 1000), rng.uniform(0, 250), rng.uniform(10, 200), rng.uniform(10, 120)
            t = str(rng.choice(types))
            objects.append(obj(t, (x, y, x + w, y + h)))
            if rng.random() < 0.8:  # a jittered detection, sometimes of the wrong class
                jitter = rng.normal(0, 0.1 * min(w, h), 4)
                boxes.append([x + jitter[0], y + jitter[1], x + w + jitter[2], y + h + jitter[3]])
                scores.append(rng.uniform(0.2, 1.0))
                labels.append(CLASSES.index(t) if t in CLASSES and rng.random() < 0.9 else int(rng.integers(0, 3)))
        for _ in range(rng.integers(0, 3)):  # false positives
            x, y, s = rng.uniform(0, 1000), rng.uniform(0, 250), rng.uniform(10, 150)
            boxes.append([x, y, x + s, y + s])
            scores.append(rng.uniform(0.0, 0.7))
            labels.append(int(rng.integers(0, 3)))
        records.append(record(f"{i:06d}", objects))
        dets[f"{i:06d}"] = detections(boxes, scores, labels)
    return records, dets


@pytest.mark.parametrize("seed", [0, 1])
def test_equals_direct_pycocotools_run(seed, tmp_path):
    records, dets = random_case(seed)
    result = evaluate_coco(records, dets, CLASSES)
    expected = reference_stats(records, dets, tmp_path)
    assert 5.0 < expected[0] < 95.0  # a non-trivial case
    assert [result[k] for k in KEYS] == pytest.approx(expected.tolist(), abs=1e-9)


def test_perfect_detections_score_100():
    records = sized_records()
    result = evaluate_coco(records, perfect(records), CLASSES)
    assert [result[k] for k in KEYS] == pytest.approx([100.0] * 6)


def test_detection_on_dontcare_is_ignored():
    # A Car detection inside the DontCare region (crowd: matched detections are ignored) keeps AP at 100;
    # the same detection on free space is a false positive and lowers the Car AP.
    records = sized_records()
    dets = perfect(records)
    extra = detections(np.vstack([dets["000002"].boxes, [[720, 120, 800, 200]]]), [0.9, 0.95], [0, 0])
    assert evaluate_coco(records, {**dets, "000002": extra}, CLASSES)["AP"] == pytest.approx(100.0)
    records[2].objects.pop()  # remove the DontCare
    assert evaluate_coco(records, {**dets, "000002": extra}, CLASSES)["AP"] < 100.0


def test_van_is_not_ground_truth():
    # A Car detection on the Van: the Van is no ground truth, so the detection is a Car false positive.
    records = sized_records()
    dets = perfect(records)
    van = detections(np.vstack([dets["000001"].boxes, [[400, 100, 500, 200]]]), [0.9, 0.95], [2, 0])
    assert evaluate_coco(records, {**dets, "000001": van}, CLASSES)["AP"] < 100.0


def test_no_detections_gives_zero_and_undefined_ranges_are_none():
    records = [record("a", [obj("Car", (0, 0, 50, 50))]), record("b", [])]  # one medium Car only
    result = evaluate_coco(records, {}, CLASSES)
    assert result == {"AP": 0.0, "AP50": 0.0, "AP75": 0.0, "APs": None, "APm": 0.0, "APl": None}
    result = evaluate_coco(records, {"a": Detections.empty()}, CLASSES)
    assert result["AP"] == 0.0


def test_gt_dict_and_results():
    records = sized_records()
    gt = coco_gt_dict(records, CLASSES)
    assert "info" in gt
    assert [img["id"] for img in gt["images"]] == [0, 1, 2]  # decimal ids kept
    crowd = [a for a in gt["annotations"] if a["iscrowd"]]
    assert sorted(a["category_id"] for a in crowd) == [1, 2, 3]  # DontCare in every category
    assert crowd[0]["bbox"] == [700.0, 100.0, 200.0, 200.0]
    assert len(gt["annotations"]) == 4 + 3  # Van is not ground truth
    results = coco_results({"000001": detections([[1, 2, 11, 22]], [0.5], [2])}, CLASSES, coco_image_ids(records))
    assert results == [{"image_id": 1, "category_id": 3, "bbox": [1.0, 2.0, 10.0, 20.0], "score": 0.5}]


def test_image_ids():
    assert coco_image_ids([record("000123", []), record("7", [])]) == {"000123": 123, "7": 7}
    assert coco_image_ids([record("a", []), record("b", [])]) == {"a": 1, "b": 2}
    assert coco_image_ids([record("01", []), record("1", [])]) == {"01": 1, "1": 2}  # ints collide: positions
    with pytest.raises(EdgeKDError, match="duplicate"):
        coco_image_ids([record("a", []), record("a", [])])


def test_bad_detections_are_reported():
    records = sized_records()
    with pytest.raises(EdgeKDError, match="000000"):
        evaluate_coco(records, {"000000": detections([[0, 0, 1, 1]], [0.5], [3])}, CLASSES)
    with pytest.raises(EdgeKDError, match="zzz"):
        evaluate_coco(records, {"zzz": Detections.empty()}, CLASSES)


def test_detections_to_objects():
    objs = detections_to_objects(detections([[1, 2, 3, 4]], [0.25], [1]), CLASSES)
    assert objs == [LabeledObject(type="Pedestrian", bbox=(1.0, 2.0, 3.0, 4.0), score=0.25)]
    with pytest.raises(EdgeKDError, match="label 5"):
        detections_to_objects(detections([[1, 2, 3, 4]], [0.25], [5]), CLASSES)


def test_evaluate_detections_combines_coco_and_kitti():
    # 50 images, one 100 px Car each, detected exactly: COCO AP 100 and KITTI 100 for Car; Pedestrian and Cyclist
    # have no detections -> 0 with a note. A COCO-format dataset gets no KITTI keys.
    records = [record(f"{i:06d}", [obj("Car", (100, 100, 200, 200))]) for i in range(50)]
    dets = perfect(records)
    dataset = Dataset(Path("data"), "val", CLASSES, records, "kitti")
    result = evaluate_detections(dataset, dets)
    assert pytest.approx(100.0) == result.coco.AP
    assert result.kitti["Car"].r40.to_dict() == pytest.approx({"easy": 100.0, "moderate": 100.0, "hard": 100.0})
    assert result.kitti["Pedestrian"].r11.moderate == 0.0
    assert len(result.kitti_notes) == 2
    assert result.summary() == pytest.approx({"AP": 100.0, "AP50": 100.0, "kitti_moderate": 100.0 / 3})
    coco_only = evaluate_detections(Dataset(Path("data"), "val", CLASSES, records, "coco"), dets)
    assert coco_only.kitti is None and set(coco_only.to_dict()) == {"coco"}
    assert set(coco_only.summary()) == {"AP", "AP50"}
