"""The synthetic KITTI-like scene generator: determinism, valid and geometrically consistent labels."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from edgekd.data.kitti import read_calib, read_label_file
from edgekd.data.loader import load_dataset
from edgekd.data.synth import render_dataset, render_scene
from edgekd.errors import EdgeKDError

TYPES = {"Car", "Van", "Pedestrian", "Cyclist", "DontCare"}


def _files(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_same_seed_same_bytes_for_any_worker_count(tmp_path: Path) -> None:
    render_dataset(tmp_path / "a", 2, 1, size=(160, 48), seed=5, workers=1, progress=False)
    render_dataset(tmp_path / "b", 2, 1, size=(160, 48), seed=5, workers=2, progress=False)
    render_dataset(tmp_path / "c", 2, 1, size=(160, 48), seed=6, workers=1, progress=False)
    a, b, c = _files(tmp_path / "a"), _files(tmp_path / "b"), _files(tmp_path / "c")
    assert len(a) == 3 * 3 + 3 + 1  # image/label/calib per image, train/val/trainval, synth_config.json
    assert a == b
    assert all(a[f"image_2/{i:06d}.png"] != c[f"image_2/{i:06d}.png"] for i in range(3))
    assert (tmp_path / "a" / "ImageSets" / "train.txt").read_text() == "000000\n000001\n"
    assert (tmp_path / "a" / "ImageSets" / "val.txt").read_text() == "000002\n"


def test_a_test_split_is_held_out_and_leaves_train_and_val_unchanged(tmp_path: Path) -> None:
    render_dataset(tmp_path / "a", 2, 1, size=(160, 48), seed=5, progress=False)
    render_dataset(tmp_path / "b", 2, 1, size=(160, 48), seed=5, progress=False, n_test=2)
    a, b = _files(tmp_path / "a"), _files(tmp_path / "b")
    assert {name: b[name] for name in a if name != "synth_config.json"} == {
        name: data for name, data in a.items() if name != "synth_config.json"
    }
    assert (tmp_path / "b" / "ImageSets" / "test.txt").read_text() == "000003\n000004\n"
    assert (tmp_path / "b" / "ImageSets" / "trainval.txt").read_text() == "000000\n000001\n000002\n"
    assert b["image_2/000003.png"] != b["image_2/000000.png"]
    assert [r.image_id for r in load_dataset(tmp_path / "b", "test").records] == ["000003", "000004"]


def test_written_files_match_render_scene(tmp_path: Path) -> None:
    size = (320, 96)
    render_dataset(tmp_path, 1, 1, size=size, seed=11, progress=False)
    for index in range(2):
        image, labels, P2 = render_scene(index, 11, size)
        name = f"{index:06d}"
        assert np.array_equal(np.asarray(Image.open(tmp_path / "image_2" / f"{name}.png")), image)
        assert read_label_file(tmp_path / "label_2" / f"{name}.txt") == labels
        np.testing.assert_allclose(read_calib(tmp_path / "calib" / f"{name}.txt"), P2, rtol=1e-12)
    dataset = load_dataset(tmp_path, "val")
    assert [(r.image_id, r.width, r.height) for r in dataset.records] == [("000001", 320, 96)]
    with pytest.raises(EdgeKDError, match="already holds"):
        render_dataset(tmp_path, 1, 1, size=size, seed=11, progress=False)


def test_camera_is_kitti_p2_scaled() -> None:
    image, _, P2 = render_scene(0, 1, (621, 188))
    assert image.shape == (188, 621, 3) and image.dtype == np.uint8
    expected = [[721.5377 / 2, 0, 609.5593 / 2, 0], [0, 721.5377 * 188 / 375, 172.854 * 188 / 375, 0], [0, 0, 1, 0]]
    np.testing.assert_allclose(P2, expected, rtol=1e-9)


def _box_iou(a: tuple[float, ...], b: np.ndarray) -> float:
    iw = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    ih = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = iw * ih
    return inter / ((a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter)


def _projected_3d_box(obj, P2: np.ndarray) -> np.ndarray:
    """Independent check: the 2D extent of the label's 3D box (KITTI convention) projected with P2."""
    h, w, length = obj.dimensions
    x = np.array([1, 1, -1, -1, 1, 1, -1, -1]) * length / 2
    y = np.array([0, 0, 0, 0, -1, -1, -1, -1]) * h
    z = np.array([1, -1, -1, 1, 1, -1, -1, 1]) * w / 2
    c, s = math.cos(obj.rotation_y), math.sin(obj.rotation_y)
    rot = np.array([[c, 0, s], [0, 1, 0], [-s, 0, c]])
    pts = rot @ np.stack([x, y, z]) + np.array(obj.location)[:, None]
    uvw = P2 @ np.vstack([pts, np.ones(8)])
    uv = uvw[:2] / uvw[2]
    return np.array([uv[0].min(), uv[1].min(), uv[0].max(), uv[1].max()])


def test_labels_are_valid_and_consistent_with_3d_boxes() -> None:
    width, height = 414, 125
    counts: dict[str, int] = {}
    ious = []
    for index in range(30):
        _, labels, P2 = render_scene(index, 0, (width, height))
        for obj in labels:
            counts[obj.type] = counts.get(obj.type, 0) + 1
            assert obj.type in TYPES
            x0, y0, x1, y1 = obj.bbox
            assert 0 <= x0 < x1 <= width - 1 and 0 <= y0 < y1 <= height - 1
            if obj.type == "DontCare":
                assert (obj.truncated, obj.occluded, obj.alpha) == (-1.0, -1, -10.0)
                continue
            assert 0.0 <= obj.truncated <= 1.0 and obj.occluded in (0, 1, 2, 3)
            x, y, z = obj.location
            assert abs(y - 1.65) <= 0.05 + 0.0101 * z  # camera height 1.65 +- 0.04, ground pitch within 1 %
            assert z > 3.0 and min(obj.dimensions) > 0.3
            expected_alpha = (obj.rotation_y - math.atan2(x, z) + math.pi) % (2 * math.pi) - math.pi
            assert abs((obj.alpha - expected_alpha + math.pi) % (2 * math.pi) - math.pi) < 0.02
            touches_border = x0 <= 0.0 or y0 <= 0.0 or x1 >= width - 1 or y1 >= height - 1
            if not touches_border:
                assert obj.truncated == 0.0
            if obj.type in ("Car", "Van") and not touches_border:
                ious.append(_box_iou(obj.bbox, _projected_3d_box(obj, P2)))
    assert counts["Car"] > 50 and counts["DontCare"] > 10 and counts.get("Pedestrian", 0) > 3
    assert counts["Car"] > counts.get("Pedestrian", 0) > counts.get("Cyclist", 0)
    # The rendered car fills its labelled 3D box: the 2D box and the projected 3D box nearly coincide.
    assert len(ious) > 40 and float(np.median(ious)) > 0.95 and min(ious) > 0.85


def test_bad_arguments() -> None:
    with pytest.raises(EdgeKDError, match="--size"):
        render_scene(0, 0, (10, 10))
    with pytest.raises(EdgeKDError, match="--workers"):
        render_dataset("/nonexistent-never-created", 1, 0, workers=0, progress=False)
    with pytest.raises(EdgeKDError, match="--train/--val"):
        render_dataset("/nonexistent-never-created", 0, 0, progress=False)
