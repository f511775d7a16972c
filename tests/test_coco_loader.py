"""COCO instances JSON -> Dataset."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from edgekd.data.kitti import BadBoxWarning
from edgekd.data.loader import load_dataset
from edgekd.errors import EdgeKDError


def _coco(root: Path, split: str = "val", **overrides) -> Path:
    """annotations/instances_<split>.json with images in <root>/<split>/ (COCO's own layout)."""
    data = {
        "images": [
            {"id": 7, "file_name": "a.jpg", "width": 40, "height": 30},
            {"id": 9, "file_name": "b.jpg", "width": 50, "height": 20},
        ],
        "categories": [{"id": 3, "name": "bus"}, {"id": 1, "name": "car"}, {"id": 2, "name": "person"}],
        "annotations": [
            {"id": 1, "image_id": 7, "category_id": 1, "bbox": [1, 2, 10, 5], "iscrowd": 0},
            {"id": 2, "image_id": 7, "category_id": 2, "bbox": [20.5, 3, 4, 12.25]},
            {"id": 3, "image_id": 9, "category_id": 3, "bbox": [0, 0, 30, 15], "iscrowd": 0},
            {"id": 4, "image_id": 9, "category_id": 1, "bbox": [5, 5, 20, 10], "iscrowd": 1},
        ],
    }
    data.update(overrides)
    (root / "annotations").mkdir(parents=True, exist_ok=True)
    (root / split).mkdir(exist_ok=True)
    for image in data["images"]:
        Image.new("RGB", (image.get("width", 8), image.get("height", 8))).save(root / split / image["file_name"])
    path = root / "annotations" / f"instances_{split}.json"
    path.write_text(json.dumps(data))
    return path


def test_default_classes_in_category_id_order_and_boxes(tmp_path: Path) -> None:
    json_path = _coco(tmp_path)
    dataset = load_dataset(tmp_path, "val")
    assert dataset.format == "coco" and dataset.split == "val"
    assert dataset.classes == ("car", "person", "bus")  # ids 1, 2, 3
    first, second = dataset.records
    assert (first.image_id, first.width, first.height) == ("7", 40, 30)
    assert first.image_path == tmp_path / "val" / "a.jpg"
    boxes, labels = first.targets(dataset.classes)
    np.testing.assert_allclose(boxes, [[1, 2, 11, 7], [20.5, 3, 24.5, 15.25]])
    assert labels.tolist() == [0, 1]
    assert [o.type for o in second.objects] == ["bus", "DontCare"]  # iscrowd=1 -> ignore region
    assert second.objects[1].bbox == (5.0, 5.0, 25.0, 15.0)
    # The same file given directly.
    assert [r.image_id for r in load_dataset(json_path).records] == ["7", "9"]


def test_custom_class_list(tmp_path: Path) -> None:
    json_path = _coco(tmp_path)
    dataset = load_dataset(json_path, classes=("person", "bus"))
    assert dataset.classes == ("person", "bus")
    boxes, labels = dataset.records[0].targets(dataset.classes)
    np.testing.assert_allclose(boxes, [[20.5, 3, 24.5, 15.25]])
    assert labels.tolist() == [0]
    assert dataset.records[1].targets(dataset.classes)[1].tolist() == [1]
    with pytest.raises(EdgeKDError, match=r"class\(es\) truck not among the file's categories: car, person, bus"):
        load_dataset(json_path, classes=("car", "truck"))


def test_zero_size_box_error_and_warn(tmp_path: Path) -> None:
    annotations = [
        {"id": 1, "image_id": 7, "category_id": 1, "bbox": [1, 2, 0, 5]},
        {"id": 2, "image_id": 9, "category_id": 1, "bbox": [1, 2, 3, -1]},
    ]
    json_path = _coco(tmp_path, annotations=annotations)
    with pytest.raises(EdgeKDError, match=r"annotations\[0\]: field bbox: zero or negative size.*2 such boxes"):
        load_dataset(json_path)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        dataset = load_dataset(json_path, on_bad_box="warn")
    (message,) = [str(w.message) for w in caught if issubclass(w.category, BadBoxWarning)]
    assert message.startswith("2 zero/negative-size box(es)")
    assert "annotations[0]" in message and "annotations[1]" in message
    assert sum(len(r.objects) for r in dataset.records) == 2


def test_bad_entries_are_named(tmp_path: Path) -> None:
    json_path = _coco(tmp_path)
    (tmp_path / "val" / "b.jpg").unlink()
    with pytest.raises(EdgeKDError, match=r"image not found: .*val/b.jpg"):
        load_dataset(json_path)
    bad = [{"id": 1, "image_id": 7, "category_id": 5, "bbox": [1, 2, 3, 4]}]
    with pytest.raises(EdgeKDError, match=r"annotations\[0\]: field category_id: no category with id 5"):
        load_dataset(_coco(tmp_path / "b", annotations=bad))
    bad = [{"id": 1, "image_id": 8, "category_id": 1, "bbox": [1, 2, 3, 4]}]
    with pytest.raises(EdgeKDError, match=r"annotations\[0\]: field image_id: no image with id 8"):
        load_dataset(_coco(tmp_path / "c", annotations=bad))
    bad = [{"id": 1, "image_id": 7, "category_id": 1, "bbox": [1, 2, 3]}]
    with pytest.raises(EdgeKDError, match=r"annotations\[0\]: field bbox: must be 4 numbers"):
        load_dataset(_coco(tmp_path / "d", annotations=bad))
    with pytest.raises(EdgeKDError, match=r"images\[0\]: field width: missing"):
        load_dataset(_coco(tmp_path / "e", images=[{"id": 1, "file_name": "a.jpg", "height": 3}], annotations=[]))
    (tmp_path / "broken.json").write_text('{"images": [')
    with pytest.raises(EdgeKDError, match=r"broken.json:1: not valid JSON"):
        load_dataset(tmp_path / "broken.json")
