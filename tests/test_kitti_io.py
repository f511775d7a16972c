"""KITTI label/results/calib files and the KITTI directory loader."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from edgekd.data.kitti import (
    BadBoxWarning,
    format_label_line,
    read_calib,
    read_label_file,
    read_results_dir,
    write_calib,
    write_label_file,
)
from edgekd.data.loader import load_dataset
from edgekd.data.records import KITTI_CLASSES, LabeledObject
from edgekd.errors import EdgeKDError

# First line of the official training label 000000.txt.
KITTI_LINE = "Pedestrian 0.00 0 -0.20 712.40 143.00 810.73 307.92 1.89 0.48 1.20 1.84 1.47 8.41 0.01"


def _objects() -> list[LabeledObject]:
    return [
        LabeledObject(
            "Car", (587.01, 173.33, 614.12, 200.12), 0.0, 0, -1.58, (1.65, 1.67, 3.64), (-0.65, 1.71, 46.7), -1.59
        ),
        LabeledObject("Cyclist", (0.0, 150.5, 40.25, 300.0), 0.42, 2, 2.9, (1.7, 0.6, 1.8), (-9.1, 1.6, 8.03), -3.1),
        LabeledObject("DontCare", (800.0, 160.0, 830.5, 180.0), -1.0, -1),
    ]


def _write_image(path: Path, size: tuple[int, int] = (1242, 375)) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", size, (90, 90, 90)).save(path)


def _kitti_dir(root: Path, labels: dict[str, str], sizes: dict[str, tuple[int, int]] | None = None) -> Path:
    for image_id, text in labels.items():
        (root / "label_2").mkdir(parents=True, exist_ok=True)
        (root / "label_2" / f"{image_id}.txt").write_text(text)
        _write_image(root / "image_2" / f"{image_id}.png", (sizes or {}).get(image_id, (1242, 375)))
    return root


def test_parse_official_line() -> None:
    obj = LabeledObject(
        "Pedestrian", (712.40, 143.00, 810.73, 307.92), 0.0, 0, -0.20, (1.89, 0.48, 1.20), (1.84, 1.47, 8.41), 0.01
    )
    from edgekd.data.kitti import parse_label_line

    assert parse_label_line(KITTI_LINE, "x:1") == obj
    assert format_label_line(obj) == KITTI_LINE


def test_round_trip_ground_truth_and_results(tmp_path: Path) -> None:
    objects = _objects()
    write_label_file(tmp_path / "gt.txt", objects)
    assert read_label_file(tmp_path / "gt.txt") == objects
    assert read_label_file(tmp_path / "gt.txt", with_score=False) == objects
    lines = (tmp_path / "gt.txt").read_text().splitlines()
    assert (
        lines[2]
        == "DontCare -1.00 -1 -10.00 800.00 160.00 830.50 180.00 -1.00 -1.00 -1.00 -1000.00 -1000.00 -1000.00 -10.00"
    )

    results = [
        LabeledObject("Car", (1.5, 2.0, 30.25, 40.0), score=0.876543),
        LabeledObject("Car", (5, 5, 9, 9), score=3.0),
    ]
    write_label_file(tmp_path / "det.txt", results)
    assert read_label_file(tmp_path / "det.txt", with_score=True) == results
    assert (tmp_path / "det.txt").read_text().split("\n")[0].endswith(" 0.876543")
    # Writing what was read gives the same bytes.
    write_label_file(tmp_path / "det2.txt", read_label_file(tmp_path / "det.txt"))
    assert (tmp_path / "det2.txt").read_bytes() == (tmp_path / "det.txt").read_bytes()


def test_round_trip_to_printed_precision(tmp_path: Path) -> None:
    obj = LabeledObject("Van", (10.126, 20.004, 30.999, 40.5), 0.333, 1, 1.005, (2.2, 1.9, 5.0), (1.0, 1.65, 20.0), 0.7)
    write_label_file(tmp_path / "a.txt", [obj])
    (back,) = read_label_file(tmp_path / "a.txt")
    assert back.bbox == pytest.approx(obj.bbox, abs=0.005)
    assert back.truncated == 0.33 and back.alpha == pytest.approx(1.0, abs=0.0051)


@pytest.mark.parametrize(
    ("line", "field"),
    [
        ("Car 0.00 0 -1.58 587.01 173.33 614.12 200.12 1.65 1.67 3.64 -0.65 1.71 46.70", "field count"),
        ("Car 0.00 0 -1.58 587.01 abc 614.12 200.12 1.65 1.67 3.64 -0.65 1.71 46.70 -1.59", "field bbox_top"),
        ("Car 0.00 5 -1.58 587.01 173.33 614.12 200.12 1.65 1.67 3.64 -0.65 1.71 46.70 -1.59", "field occluded"),
        ("Car 0.00 1.5 -1.58 587.01 173.33 614.12 200.12 1.65 1.67 3.64 -0.65 1.71 46.70 -1.59", "field occluded"),
        ("Car 2.00 0 -1.58 587.01 173.33 614.12 200.12 1.65 1.67 3.64 -0.65 1.71 46.70 -1.59", "field truncated"),
        ("Car 0.00 0 -1.58 587.01 173.33 614.12 200.12 1.65 1.67 3.64 -0.65 1.71 nan -1.59", "field loc_z"),
        ("Car 0.00 0 -1.58 587.01 173.33 614.12 200.12 1.65 1.67 3.64 -0.65 1.71 46.70 -1.59 x", "field score"),
    ],
)
def test_malformed_line_names_file_line_and_field(tmp_path: Path, line: str, field: str) -> None:
    path = tmp_path / "000007.txt"
    path.write_text(KITTI_LINE + "\n" + line + "\n")
    with pytest.raises(EdgeKDError) as error:
        read_label_file(path)
    assert f"{path}:2: {field}" in str(error.value)


def test_results_need_a_score_and_gt_refuses_one(tmp_path: Path) -> None:
    path = tmp_path / "r.txt"
    path.write_text(KITTI_LINE + "\n")
    with pytest.raises(EdgeKDError, match=r"r.txt:1: field count: expected 16"):
        read_label_file(path, with_score=True)
    path.write_text(KITTI_LINE + " 0.9\n")
    with pytest.raises(EdgeKDError, match=r"r.txt:1: field count: expected 15"):
        read_label_file(path, with_score=False)


def test_zero_size_box_is_an_error_naming_the_line(tmp_path: Path) -> None:
    path = tmp_path / "000001.txt"
    path.write_text(KITTI_LINE + "\nCar 0.00 0 0.00 100.00 50.00 100.00 80.00 1.5 1.6 3.9 0.00 1.65 20.00 0.00\n")
    with pytest.raises(EdgeKDError, match=r"000001.txt:2: field bbox: zero or negative size"):
        read_label_file(path)
    assert len(read_label_file(path, on_bad_box="keep")) == 2


def test_loader_reports_every_bad_box_with_warn(tmp_path: Path) -> None:
    bad_w = "Car 0.00 0 0.00 10.00 5.00 10.00 20.00 1.5 1.6 3.9 0.00 1.65 20.00 0.00\n"
    bad_h = "Car 0.00 0 0.00 10.00 25.00 30.00 20.00 1.5 1.6 3.9 0.00 1.65 20.00 0.00\n"
    root = _kitti_dir(tmp_path, {"000000": KITTI_LINE + "\n" + bad_w, "000001": bad_h + bad_h})
    with pytest.raises(EdgeKDError, match=r"000000.txt:2: field bbox.*3 such boxes"):
        load_dataset(root, "all")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        dataset = load_dataset(root, "all", on_bad_box="warn")
    messages = [str(w.message) for w in caught if issubclass(w.category, BadBoxWarning)]
    assert len(messages) == 1
    assert messages[0].startswith("3 zero/negative-size box(es)")
    for where in ("000000.txt:2", "000001.txt:1", "000001.txt:2"):
        assert where in messages[0]
    assert [len(r.objects) for r in dataset.records] == [2, 2]  # kept, not dropped


def test_load_kitti_splits_sizes_and_classes(tmp_path: Path) -> None:
    root = _kitti_dir(
        tmp_path / "kitti" / "training",
        {"000000": KITTI_LINE + "\n", "000001": "", "000002": format_label_line(_objects()[0]) + "\n"},
        sizes={"000000": (1240, 370), "000001": (64, 32), "000002": (1000, 300)},
    )
    sets = tmp_path / "kitti" / "ImageSets"
    sets.mkdir()
    (sets / "val.txt").write_text("000002\n000000\n")
    dataset = load_dataset(tmp_path / "kitti", "val")  # official layout: training/label_2
    assert [r.image_id for r in dataset.records] == ["000002", "000000"]
    assert [(r.width, r.height) for r in dataset.records] == [(1000, 300), (1240, 370)]
    assert dataset.classes == KITTI_CLASSES and dataset.format == "kitti"
    assert dataset.records[0].image_path == root / "image_2" / "000002.png"
    boxes, labels = dataset.records[1].targets(dataset.classes)
    np.testing.assert_allclose(boxes, [[712.40, 143.00, 810.73, 307.92]], rtol=1e-6)
    assert labels.tolist() == [1]
    assert len(load_dataset(tmp_path / "kitti", "all")) == 3
    custom = load_dataset(tmp_path / "kitti", "all", classes=("Pedestrian",))
    assert custom.classes == ("Pedestrian",)
    with pytest.raises(EdgeKDError, match=r"split 'train' not found.*available splits: val, all"):
        load_dataset(tmp_path / "kitti", "train")


def test_missing_image_and_label_are_named(tmp_path: Path) -> None:
    root = _kitti_dir(tmp_path, {"000000": KITTI_LINE + "\n", "000001": ""})
    (root / "image_2" / "000001.png").unlink()
    with pytest.raises(EdgeKDError, match=r"image not found: .*image_2/000001.png"):
        load_dataset(root, "all")
    (root / "ImageSets").mkdir()
    (root / "ImageSets" / "train.txt").write_text("000000\n000005\n")
    with pytest.raises(EdgeKDError, match=r"label file not found: .*label_2/000005.txt"):
        load_dataset(root, "train")
    (root / "ImageSets" / "train.txt").write_text("000000\n000000\n")
    with pytest.raises(EdgeKDError, match=r"train.txt:2: field image id: '000000' already listed on line 1"):
        load_dataset(root, "train")
    with pytest.raises(EdgeKDError, match="not a dataset"):
        load_dataset(tmp_path / "image_2", "train")


def test_read_results_dir(tmp_path: Path) -> None:
    (tmp_path / "000003.txt").write_text(KITTI_LINE + " 0.75\n")
    results = read_results_dir(tmp_path, ["000001", "000003"])
    assert results["000001"] == []
    assert results["000003"][0].score == 0.75 and results["000003"][0].type == "Pedestrian"
    (tmp_path / "000009.txt").write_text("")
    with pytest.raises(EdgeKDError, match=r"not in the split: 000009.txt"):
        read_results_dir(tmp_path, ["000001", "000003"])
    with pytest.raises(EdgeKDError, match="results directory not found"):
        read_results_dir(tmp_path / "missing", ["000001"])


def test_calib_round_trip_and_official_text(tmp_path: Path) -> None:
    P2 = np.array(
        [[721.5377, 0.0, 609.5593, 44.85728], [0.0, 721.5377, 172.854, 0.2163791], [0.0, 0.0, 1.0, 0.002745884]]
    )
    write_calib(tmp_path / "c.txt", P2)
    np.testing.assert_allclose(read_calib(tmp_path / "c.txt"), P2, rtol=1e-12)
    text = (tmp_path / "c.txt").read_text().splitlines()
    assert [line.split(":")[0] for line in text] == [
        "P0",
        "P1",
        "P2",
        "P3",
        "R0_rect",
        "Tr_velo_to_cam",
        "Tr_imu_to_velo",
    ]
    official = (
        "P0: 7.215377e+02 0.000000e+00 6.095593e+02 0.000000e+00 0.000000e+00 7.215377e+02 1.728540e+02 "
        "0.000000e+00 0.000000e+00 0.000000e+00 1.000000e+00 0.000000e+00\n"
        "P2: 7.215377e+02 0.000000e+00 6.095593e+02 4.485728e+01 0.000000e+00 7.215377e+02 1.728540e+02 "
        "2.163791e-01 0.000000e+00 0.000000e+00 1.000000e+00 2.745884e-03\n"
    )
    (tmp_path / "o.txt").write_text(official)
    np.testing.assert_allclose(read_calib(tmp_path / "o.txt"), P2, rtol=1e-7)
    (tmp_path / "bad.txt").write_text("P2: 1 2 3\n")
    with pytest.raises(EdgeKDError, match=r"bad.txt:1: field P2: expected 12 numbers, got 3"):
        read_calib(tmp_path / "bad.txt")
