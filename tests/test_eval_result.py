"""EvalResult: typed COCO + KITTI results, the headline summary and the `edgekd eval --json` layout."""

from __future__ import annotations

import json

import pytest

from edgekd.errors import EdgeKDError
from edgekd.evaluate import CocoAP, DifficultyAP, EvalResult, KittiClassAP, summarize
from edgekd.evaluate.report import write_results_json

COCO = {"AP": 40.0, "AP50": 70.0, "AP75": 35.0, "APs": None, "APm": 30.0, "APl": 50.0}
LAYOUT = {
    "coco": COCO,
    "kitti": {
        "Car": {"easy": 90.0, "moderate": 80.0, "hard": 70.0},
        "Pedestrian": {"easy": 0.0, "moderate": 0.0, "hard": 0.0},
        "Cyclist": {"easy": 50.0, "moderate": 40.0, "hard": 30.0},
    },
    "kitti_r11": {
        "Car": {"easy": 91.0, "moderate": 81.0, "hard": 71.0},
        "Pedestrian": {"easy": 0.0, "moderate": 0.0, "hard": 0.0},
        "Cyclist": {"easy": 51.0, "moderate": 41.0, "hard": 31.0},
    },
    "kitti_notes": ["Pedestrian: no detections of this class, not evaluated; AP reported as 0"],
}


def test_typed_fields_and_headline_summary():
    result = EvalResult.from_dict(LAYOUT)
    assert result.coco == CocoAP(40.0, 70.0, 35.0, None, 30.0, 50.0)
    assert result.kitti["Car"] == KittiClassAP(DifficultyAP(90.0, 80.0, 70.0), DifficultyAP(91.0, 81.0, 71.0))
    assert list(result.kitti) == ["Car", "Pedestrian", "Cyclist"]
    # mean Moderate AP|R40 over the three classes: (80 + 0 + 40) / 3 = 40
    assert result.summary() == {"AP": 40.0, "AP50": 70.0, "kitti_moderate": pytest.approx(40.0)}
    assert summarize(result) == result.summary() == summarize(LAYOUT)


def test_coco_only_summary_has_no_kitti_number():
    result = EvalResult(CocoAP(12.5, 30.0, 10.0, None, None, 20.0))
    assert result.summary() == {"AP": 12.5, "AP50": 30.0}
    assert result.to_dict() == {"coco": {"AP": 12.5, "AP50": 30.0, "AP75": 10.0, "APs": None, "APm": None, "APl": 20.0}}


def test_json_layout_round_trips_key_for_key(tmp_path):
    result = EvalResult.from_dict(LAYOUT)
    assert result.to_dict() == LAYOUT
    assert list(result.to_dict()) == ["coco", "kitti", "kitti_r11", "kitti_notes"]
    path = tmp_path / "metrics.json"
    write_results_json(path, result)
    assert json.loads(path.read_text()) == LAYOUT
    assert EvalResult.from_dict(json.loads(path.read_text())) == result
    labelled = EvalResult.from_dict({**LAYOUT, "artifact": "best.pt"})
    assert labelled.artifact == "best.pt" and labelled.to_dict() == {**LAYOUT, "artifact": "best.pt"}


@pytest.mark.parametrize(
    ("data", "needle"),
    [
        ([], "not an eval result"),
        ({"coco": {**COCO, "AP": "high"}}, "field 'coco.AP' must be a number or null, got 'high'"),
        ({"coco": {k: v for k, v in COCO.items() if k != "APl"}}, "field 'coco.APl' is missing"),
        ({**LAYOUT, "kitti_r11": {}}, "field 'kitti_r11' must map the same classes"),
        (
            {**LAYOUT, "kitti": {**LAYOUT["kitti"], "Car": {"easy": 1.0, "moderate": None, "hard": 1.0}}},
            "kitti.Car.moderate",
        ),
        ({**LAYOUT, "kitti_notes": "none"}, "field 'kitti_notes' must be a list of strings"),
    ],
)
def test_malformed_layout_is_named(data, needle):
    with pytest.raises(EdgeKDError, match="metrics.json") as caught:
        EvalResult.from_dict(data, "metrics.json")
    assert needle in str(caught.value)
