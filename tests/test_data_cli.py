"""`edgekd data synth | stats | show` through the CLI, and the statistics they print."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from PIL import Image
from typer.testing import CliRunner

from edgekd.cli import app
from edgekd.data.records import Dataset, ImageRecord, LabeledObject
from edgekd.data.stats import compute_stats
from edgekd.errors import EdgeKDError

runner = CliRunner()


@pytest.fixture(scope="module")
def synth_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("cli") / "synth"
    result = runner.invoke(
        app,
        ["data", "synth", str(out), "--train", "3", "--val", "2", "--size", "320x96", "--workers", "1", "--seed", "4"],
    )
    assert result.exit_code == 0, result.output
    assert "wrote 5 images (3 train, 2 val)" in result.output
    return out


def test_synth_writes_kitti_layout(synth_dir: Path) -> None:
    assert sorted(p.name for p in (synth_dir / "image_2").iterdir()) == [f"{i:06d}.png" for i in range(5)]
    assert len(list((synth_dir / "label_2").glob("*.txt"))) == 5 and len(list((synth_dir / "calib").glob("*.txt"))) == 5
    with Image.open(synth_dir / "image_2" / "000004.png") as image:
        assert image.size == (320, 96)
    result = runner.invoke(app, ["data", "synth", str(synth_dir), "--train", "1", "--val", "0", "--size", "320x96"])
    assert isinstance(result.exception, EdgeKDError) and "--overwrite" in str(result.exception)
    result = runner.invoke(app, ["data", "synth", str(synth_dir), "--size", "320by96"])
    assert isinstance(result.exception, EdgeKDError) and "--size" in str(result.exception)


def test_stats_tables_and_json(synth_dir: Path) -> None:
    result = runner.invoke(app, ["data", "stats", str(synth_dir), "--split", "val"])
    assert result.exit_code == 0, result.output
    for text in ("2 images", "Car", "Easy", "Moderate", "Hard", "box height", "20-30", "height < 40 px"):
        assert text in result.output
    result = runner.invoke(app, ["data", "stats", str(synth_dir), "--split", "trainval", "--json"])
    stats = json.loads(result.output)
    labels = [
        line.split()[0] for p in sorted((synth_dir / "label_2").glob("*.txt")) for line in p.read_text().splitlines()
    ]
    assert stats["n_images"] == 5
    assert stats["class_counts"] == {name: labels.count(name) for name in set(labels)}
    result = runner.invoke(app, ["data", "stats", str(synth_dir), "--split", "test"])
    assert isinstance(result.exception, EdgeKDError)
    assert "available splits: train, trainval, val, all" in str(result.exception)


def test_show_writes_a_grid(synth_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "grid.png"
    result = runner.invoke(app, ["data", "show", str(synth_dir), "--split", "train", "--n", "3", "-o", str(out)])
    assert result.exit_code == 0, result.output
    with Image.open(out) as grid:
        assert grid.size == (2 * 320, 2 * (96 + 16))  # 2 columns, 2 rows of captioned tiles
    result = runner.invoke(
        app, ["data", "show", str(synth_dir), "--n", "2", "--seed", "1", "-o", str(tmp_path / "g.gif")]
    )
    assert isinstance(result.exception, EdgeKDError) and ".png or .jpg" in str(result.exception)


def test_stats_reports_bad_boxes(tmp_path: Path) -> None:
    (tmp_path / "label_2").mkdir()
    (tmp_path / "image_2").mkdir()
    Image.new("RGB", (40, 20)).save(tmp_path / "image_2" / "000000.png")
    (tmp_path / "label_2" / "000000.txt").write_text(
        "Car 0.00 0 0.00 10.00 5.00 10.00 15.00 1.5 1.6 3.9 0.0 1.65 9.0 0.0\n"
    )
    result = runner.invoke(app, ["data", "stats", str(tmp_path), "--split", "all"])
    assert result.exit_code == 0
    assert "1 zero/negative-size box(es)" in result.output and "000000.txt:1" in result.output
    result = runner.invoke(app, ["data", "stats", str(tmp_path), "--split", "all", "--bad-boxes", "error"])
    assert isinstance(result.exception, EdgeKDError) and "000000.txt:1: field bbox" in str(result.exception)


def _obj(kind: str, height: float, occluded: int = 0, truncated: float = 0.0) -> LabeledObject:
    return LabeledObject(kind, (10.0, 100.0, 30.0, 100.0 + height), truncated, occluded)


def test_difficulty_counts_follow_kitti_rules() -> None:
    objects = [
        _obj("Car", 41),  # Easy, Moderate, Hard
        _obj("Car", 40),  # not Easy (height must exceed 40): Moderate, Hard
        _obj("Car", 30, occluded=2),  # Hard only
        _obj("Car", 30, truncated=0.4),  # Hard only
        _obj("Car", 25),  # none: height must exceed 25
        _obj("Car", 100, occluded=3),  # none
        _obj("Pedestrian", 50, truncated=0.2),  # Moderate, Hard
        _obj("DontCare", 50),
    ]
    dataset = Dataset(
        Path("."), "x", ("Car", "Pedestrian", "Cyclist"), [ImageRecord("0", Path("0.png"), 50, 300, objects)], "kitti"
    )
    stats = compute_stats(dataset)
    assert stats.difficulty["Car"] == {"Easy": 1, "Moderate": 2, "Hard": 4}
    assert stats.difficulty["Pedestrian"] == {"Easy": 0, "Moderate": 1, "Hard": 1}
    assert stats.class_counts == {"Car": 6, "Pedestrian": 1, "DontCare": 1}
    # Heights 41, 40, 30, 30, 25, 100, 50 (DontCare excluded): bins 40-50 x2, 30-40 x2, 20-30 x1, 100-110 x1, 50-60 x1.
    hist = dict(zip(stats.height_bins, stats.height_hist, strict=True))
    assert (hist["20-30"], hist["30-40"], hist["40-50"], hist["50-60"], hist["100-110"]) == (1, 2, 2, 1, 1)
    assert sum(stats.height_hist) == 7
    assert stats.small_fraction == pytest.approx(3 / 7)
    assert stats.occluded_fractions == {0: pytest.approx(5 / 7), 2: pytest.approx(1 / 7), 3: pytest.approx(1 / 7)}
    assert stats.truncated_fraction == pytest.approx(2 / 7)
