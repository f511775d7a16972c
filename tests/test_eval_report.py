"""Evaluation report: the terminal tables and the atomically written JSON."""

from __future__ import annotations

import io
import json

import pytest
from rich.console import Console

from edgekd.errors import EdgeKDError
from edgekd.evaluate import EvalResult
from edgekd.evaluate.report import results_table, write_results_json

RESULTS = {
    "coco": {"AP": 51.234, "AP50": 80.0, "AP75": 55.5, "APs": None, "APm": 40.0, "APl": 60.0},
    "kitti": {"Car": {"easy": 90.0, "moderate": 80.0, "hard": 70.0}},
    "kitti_r11": {"Car": {"easy": 91.0, "moderate": 81.0, "hard": 71.0}},
    "kitti_notes": ["Pedestrian: no detections of this class, not evaluated; AP reported as 0"],
}


def render(tables) -> str:
    console = Console(file=io.StringIO(), width=200, color_system=None)
    for table in tables:
        console.print(table)
    return console.file.getvalue()


def test_tables_show_every_number():
    tables = results_table(EvalResult.from_dict(RESULTS))
    assert [t.title for t in tables] == ["COCO box AP (%)", "KITTI 2D AP (%)"]
    text = render(tables)
    for cell in ("51.23", "80.00", "55.50", "n/a", "40.00", "60.00", "90.00", "70.00", "91.00", "71.00"):
        assert cell in text
    assert "Pedestrian: no detections" in text
    coco_only = results_table(EvalResult.from_dict({"coco": RESULTS["coco"]}))
    assert len(coco_only) == 1


def test_json_round_trip_and_no_temporary_left(tmp_path):
    path = tmp_path / "out" / "metrics.json"
    write_results_json(path, RESULTS)
    assert json.loads(path.read_text()) == RESULTS
    write_results_json(path, {"coco": {}})  # replaces
    assert json.loads(path.read_text()) == {"coco": {}}
    assert [p.name for p in path.parent.iterdir()] == ["metrics.json"]


def test_unwritable_path_is_reported(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(EdgeKDError, match="metrics.json"):
        write_results_json(blocker / "metrics.json", RESULTS)


def test_failed_serialisation_leaves_no_file(tmp_path):
    path = tmp_path / "metrics.json"
    with pytest.raises(ValueError):
        write_results_json(path, {"coco": {"AP": float("nan")}})
    assert list(tmp_path.iterdir()) == []
