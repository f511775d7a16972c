"""COCO instances JSON -> Dataset (any class list).

Read with the json module rather than pycocotools.COCO: we need every image, annotation and category checked with
an error that names the JSON entry at fault, which pycocotools neither does nor reports (it also prints to stdout).
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from edgekd.data.images import image_size
from edgekd.data.kitti import report_bad_boxes
from edgekd.data.records import Dataset, ImageRecord, LabeledObject
from edgekd.data.text import read_text
from edgekd.errors import EdgeKDError

IGNORE_TYPE = "DontCare"
"""Type given to iscrowd=1 annotations: evaluators and trainers treat them as ignore regions, like KITTI's."""


def _field(entry: Any, key: str, where: str, kind: type | tuple[type, ...]) -> Any:
    if not isinstance(entry, dict):
        raise EdgeKDError(f"{where}: must be an object, got {type(entry).__name__}")
    if key not in entry:
        raise EdgeKDError(f"{where}: field {key}: missing")
    value = entry[key]
    if not isinstance(value, kind) or isinstance(value, bool):
        names = kind.__name__ if isinstance(kind, type) else " or ".join(k.__name__ for k in kind)
        raise EdgeKDError(f"{where}: field {key}: must be {names}, got {value!r}")
    return value


def _read_json(path: Path) -> dict[str, Any]:
    text = read_text(path, "COCO file")
    try:
        data = json.loads(text)
    except json.JSONDecodeError as error:
        raise EdgeKDError(f"{path}:{error.lineno}: not valid JSON ({error.msg})") from None
    if not isinstance(data, dict):
        raise EdgeKDError(f"{path}: a COCO file must hold a JSON object")
    for key in ("images", "annotations", "categories"):
        _field(data, key, str(path), list)
    return data


def _categories(data: dict[str, Any], path: Path) -> dict[int, str]:
    names: dict[int, str] = {}
    for i, entry in enumerate(data["categories"]):
        where = f"{path}: categories[{i}]"
        cat_id = _field(entry, "id", where, int)
        name = _field(entry, "name", where, str)
        if cat_id in names:
            raise EdgeKDError(f"{where}: field id: {cat_id} is used twice")
        if name in names.values():
            raise EdgeKDError(f"{where}: field name: {name!r} is used twice")
        names[cat_id] = name
    return dict(sorted(names.items()))


def _image_root(file_names: Sequence[str], roots: Sequence[Path]) -> Path:
    """The first candidate folder that holds the first image (all images must then be there)."""
    for root in roots:
        if file_names and (root / file_names[0]).is_file():
            return root
    return roots[0]


def _split_name(json_path: Path) -> str:
    """instances_val2017.json -> "val2017" (COCO's naming); other files -> their stem."""
    stem = json_path.stem
    return stem[len("instances_") :] if stem.startswith("instances_") else stem


def load_coco(
    json_path: str | Path,
    split: str | None = None,
    classes: tuple[str, ...] | None = None,
    image_roots: Sequence[str | Path] | None = None,
    on_bad_box: str = "error",
) -> Dataset:
    """A COCO instances JSON as a Dataset.

    classes: default = category names in id order (a category named DontCare is an ignore marker, not a class);
    given classes must all be categories of the file. Annotations of other categories are kept with their
    category name as type (ImageRecord.targets filters them). iscrowd=1 -> type DontCare. image_id = str(COCO id).
    Images are looked up under the first of `image_roots` that holds the first image, then the JSON's folder, its
    images/ subfolder, <parent>/<split>/ (COCO's layout) and the parent folder; a missing image is an error naming
    the file, and so is an image whose width/height in the JSON are not those of its file. Boxes of zero or
    negative size or entirely outside their image follow `on_bad_box`; non-finite box coordinates are an error.
    split defaults to the file name (instances_<split>.json).
    """
    json_path = Path(json_path)
    data = _read_json(json_path)
    categories = _categories(data, json_path)
    if classes is None:
        classes = tuple(name for name in categories.values() if name != IGNORE_TYPE)
    else:
        unknown = [c for c in classes if c not in categories.values()]
        if unknown:
            raise EdgeKDError(
                f"{json_path}: class(es) {', '.join(unknown)} not among the file's categories: "
                + ", ".join(categories.values())
            )
    if not classes:
        raise EdgeKDError(f"{json_path}: field categories: no object categories")

    images: dict[int, ImageRecord] = {}
    file_names: list[str] = []
    entries: dict[int, int] = {}
    for i, entry in enumerate(data["images"]):
        where = f"{json_path}: images[{i}]"
        image_id = _field(entry, "id", where, int)
        file_name = _field(entry, "file_name", where, str)
        width = _field(entry, "width", where, int)
        height = _field(entry, "height", where, int)
        if width <= 0 or height <= 0:
            raise EdgeKDError(f"{where}: field width/height: must be positive, got {width}x{height}")
        if image_id in images:
            raise EdgeKDError(f"{where}: field id: image id {image_id} is used twice")
        if file_name in file_names:
            raise EdgeKDError(
                f"{where}: field file_name: {file_name!r} is already images[{file_names.index(file_name)}]"
            )
        images[image_id] = ImageRecord(str(image_id), Path(file_name), width, height)
        file_names.append(file_name)
        entries[image_id] = i

    if not images:
        raise EdgeKDError(f"{json_path}: field images: the file lists no images")
    split = split or _split_name(json_path)
    roots = [Path(r) for r in image_roots] if image_roots else []
    roots += [json_path.parent, json_path.parent / "images", json_path.parent.parent / split, json_path.parent.parent]
    root = _image_root(file_names, roots)
    for image_id, record in images.items():
        record.image_path = root / record.image_path
        if not record.image_path.is_file():
            raise EdgeKDError(f"image not found: {record.image_path} (listed in {json_path})")
        real = image_size(record.image_path)
        if real != (record.width, record.height):
            raise EdgeKDError(
                f"{json_path}: images[{entries[image_id]}]: field width/height: {record.width}x{record.height}, "
                f"but the image file {record.image_path} is {real[0]}x{real[1]}"
            )

    bad: list[str] = []
    outside: list[str] = []
    for i, entry in enumerate(data["annotations"]):
        where = f"{json_path}: annotations[{i}]"
        image_id = _field(entry, "image_id", where, int)
        category_id = _field(entry, "category_id", where, int)
        bbox = _field(entry, "bbox", where, list)
        if image_id not in images:
            raise EdgeKDError(f"{where}: field image_id: no image with id {image_id}")
        if category_id not in categories:
            raise EdgeKDError(f"{where}: field category_id: no category with id {category_id}")
        if len(bbox) != 4 or not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in bbox):
            raise EdgeKDError(f"{where}: field bbox: must be 4 numbers [x, y, width, height], got {bbox!r}")
        x, y, w, h = (float(v) for v in bbox)
        if not all(math.isfinite(v) for v in (x, y, w, h)):
            raise EdgeKDError(f"{where}: field bbox: not a finite number: {bbox!r}")
        record = images[image_id]
        if w <= 0 or h <= 0:
            bad.append(f"{where}: field bbox: zero or negative size (width {w:g}, height {h:g})")
        elif x + w <= 0 or y + h <= 0 or x >= record.width or y >= record.height:
            outside.append(
                f"{where}: field bbox: entirely outside the {record.width}x{record.height} image "
                f"{record.image_path.name} (x {x:g}, y {y:g}, width {w:g}, height {h:g})"
            )
        crowd = entry.get("iscrowd", 0)
        if crowd not in (0, 1):
            raise EdgeKDError(f"{where}: field iscrowd: must be 0 or 1, got {crowd!r}")
        obj_type = IGNORE_TYPE if crowd == 1 else categories[category_id]
        record.objects.append(LabeledObject(type=obj_type, bbox=(x, y, x + w, y + h)))
    report_bad_boxes(bad, json_path, on_bad_box)
    report_bad_boxes(outside, json_path, on_bad_box, kind="out-of-image")
    return Dataset(root=json_path, split=split, classes=classes, records=list(images.values()), format="coco")
