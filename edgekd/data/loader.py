"""`load_dataset`: one entry point for KITTI directories and COCO JSON files, producing records.py types."""

from __future__ import annotations

from pathlib import Path

from edgekd.data.coco import load_coco
from edgekd.data.images import image_size
from edgekd.data.kitti import (
    bad_box_message,
    is_bad_box,
    is_outside_image,
    outside_image_message,
    read_label_lines,
    report_bad_boxes,
)
from edgekd.data.records import KITTI_CLASSES, KITTI_TYPES, Dataset, ImageRecord
from edgekd.data.text import read_text
from edgekd.errors import EdgeKDError

IMAGE_EXTENSIONS: tuple[str, ...] = (".png", ".jpg", ".jpeg")
BAD_BOX_POLICIES: tuple[str, ...] = ("error", "warn")


def kitti_base(root: Path) -> Path | None:
    """The folder holding label_2/ (root itself, or root/training as in the official download), else None."""
    for base in (root, root / "training"):
        if (base / "label_2").is_dir():
            return base
    return None


def _split_candidates(root: Path, base: Path) -> list[Path]:
    return [root / "ImageSets"] + ([base / "ImageSets"] if base != root else [])


def available_splits(root: Path) -> list[str]:
    """Names of the ImageSets/<name>.txt files of a KITTI directory, plus "all"."""
    base = kitti_base(root) or root
    names = {p.stem for folder in _split_candidates(root, base) if folder.is_dir() for p in folder.glob("*.txt")}
    return sorted(names) + ["all"]


def _read_split_file(path: Path) -> list[str]:
    ids: list[str] = []
    seen: dict[str, int] = {}
    for number, line in enumerate(read_text(path, "split file").splitlines(), start=1):
        image_id = line.strip()
        if not image_id:
            continue
        if len(image_id.split()) != 1:
            raise EdgeKDError(f"{path}:{number}: field image id: one id per line, got {image_id!r}")
        if "/" in image_id or "\\" in image_id or image_id in (".", ".."):
            raise EdgeKDError(
                f"{path}:{number}: field image id: a file name without folder or extension (as 000042), "
                f"got {image_id!r}"
            )
        if image_id in seen:
            raise EdgeKDError(f"{path}:{number}: field image id: {image_id!r} already listed on line {seen[image_id]}")
        seen[image_id] = number
        ids.append(image_id)
    if not ids:
        raise EdgeKDError(f"{path}: split file lists no images")
    return ids


def split_ids(root: Path, split: str) -> list[str]:
    """Image ids of a KITTI split: ImageSets/<split>.txt, a path to such a file, or "all" (every label file)."""
    base = kitti_base(root)
    if base is None:
        raise EdgeKDError(f"{root}: not a KITTI directory (no label_2/ or training/label_2/)")
    if split == "all":
        ids = sorted(p.stem for p in (base / "label_2").glob("*.txt"))
        if not ids:
            raise EdgeKDError(f"{base / 'label_2'}: no label files (*.txt)")
        return ids
    for folder in _split_candidates(root, base):
        if (folder / f"{split}.txt").is_file():
            return _read_split_file(folder / f"{split}.txt")
    if split.endswith(".txt") and Path(split).is_file():
        return _read_split_file(Path(split))
    raise EdgeKDError(
        f"{root}: split {split!r} not found (no ImageSets/{split}.txt); available splits: "
        + ", ".join(available_splits(root))
    )


def _find_image(image_dir: Path, image_id: str) -> Path:
    for ext in IMAGE_EXTENSIONS + tuple(ext.upper() for ext in IMAGE_EXTENSIONS):
        if (image_dir / f"{image_id}{ext}").is_file():
            return image_dir / f"{image_id}{ext}"
    raise EdgeKDError(f"image not found: {image_dir / (image_id + '.png')} (for image id {image_id!r})")


def _did_you_mean(name: str, known: tuple[str, ...]) -> str:
    same = [k for k in known if k.lower() == name.lower()]
    return f" (did you mean {same[0]!r}?)" if same else ""


def _check_types(
    types: dict[str, tuple[Path, int]], classes: tuple[str, ...] | None, label_dir: Path, split: str
) -> None:
    """Every label type must be a KITTI type or one of `classes`; every one of `classes` must be a KITTI type or
    occur in the labels (a class that is neither is a misspelt or foreign class list). `types` maps each type
    seen to its first file and line."""
    allowed = KITTI_TYPES + tuple(c for c in classes or () if c not in KITTI_TYPES)
    for name, (path, line) in types.items():
        if name not in allowed:
            extra = " or of the class list" if len(allowed) > len(KITTI_TYPES) else ""
            raise EdgeKDError(
                f"{path}:{line}: field type: {name!r} is not a KITTI type{extra}{_did_you_mean(name, allowed)}; "
                f"KITTI types are {', '.join(KITTI_TYPES)}"
            )
    for name in classes or ():
        if name not in KITTI_TYPES and name not in types:
            raise EdgeKDError(
                f"class {name!r} of the class list is not a KITTI type and no label of {label_dir} (split "
                f"{split!r}) names it{_did_you_mean(name, KITTI_TYPES)}; KITTI types are {', '.join(KITTI_TYPES)}"
            )


def load_kitti(
    root: str | Path, split: str = "train", classes: tuple[str, ...] | None = None, on_bad_box: str = "error"
) -> Dataset:
    """A KITTI-layout dataset (image_2/, label_2/, optional ImageSets/) as a Dataset of ground-truth records.

    Label types must be KITTI types (or in `classes`); boxes of zero or negative size and boxes entirely outside
    their image follow `on_bad_box` (see `load_dataset`).
    """
    root = Path(root)
    base = kitti_base(root)
    if base is None:
        raise EdgeKDError(f"{root}: not a KITTI directory (no label_2/ or training/label_2/)")
    records = []
    bad: list[str] = []
    outside: list[str] = []
    types: dict[str, tuple[Path, int]] = {}
    for image_id in split_ids(root, split):
        label_path = base / "label_2" / f"{image_id}.txt"
        if not label_path.is_file():
            raise EdgeKDError(f"label file not found: {label_path} (image id {image_id!r} of split {split!r})")
        lines = read_label_lines(label_path, with_score=False)
        image_path = _find_image(base / "image_2", image_id)
        width, height = image_size(image_path)
        for number, obj in lines:
            types.setdefault(obj.type, (label_path, number))
            if is_bad_box(obj):
                bad.append(bad_box_message(label_path, number, obj))
            elif is_outside_image(obj, width, height):
                outside.append(outside_image_message(label_path, number, obj, width, height))
        records.append(ImageRecord(image_id, image_path, width, height, [obj for _, obj in lines]))
    _check_types(types, classes, base / "label_2", split)
    report_bad_boxes(bad, base / "label_2", on_bad_box)
    report_bad_boxes(outside, base / "label_2", on_bad_box, kind="out-of-image")
    return Dataset(root=root, split=split, classes=classes or KITTI_CLASSES, records=records, format="kitti")


def _coco_json_for(root: Path, split: str) -> Path | None:
    candidate = root / "annotations" / f"instances_{split}.json"
    return candidate if candidate.is_file() else None


def load_dataset(
    path: str | Path,
    split: str = "train",
    classes: tuple[str, ...] | None = None,
    on_bad_box: str = "error",
) -> Dataset:
    """Load a KITTI directory or a COCO JSON into a Dataset.

    - KITTI: a directory with label_2/ (or training/label_2/); split = ImageSets/<split>.txt or "all";
      classes default to KITTI_CLASSES.
    - COCO: a .json file (split ignored), or a directory holding annotations/instances_<split>.json (images in
      <dir>/<split>/, <dir>/images/ or <dir>/); classes default to the JSON's category names in id order.
    Zero/negative-size ground-truth boxes, and boxes entirely outside their image, raise EdgeKDError naming
    file:line (on_bad_box="error", default) or are kept and reported with a BadBoxWarning (on_bad_box="warn").
    """
    if on_bad_box not in BAD_BOX_POLICIES:
        raise EdgeKDError(f"on_bad_box must be one of {', '.join(BAD_BOX_POLICIES)}, got {on_bad_box!r}")
    path = Path(path)
    if not path.exists():
        raise EdgeKDError(f"dataset not found: {path}")
    if path.is_file():
        if path.suffix.lower() != ".json":
            raise EdgeKDError(f"{path}: a dataset file must be a COCO .json (or pass a KITTI directory)")
        return load_coco(path, classes=classes, on_bad_box=on_bad_box)
    if kitti_base(path) is not None:
        return load_kitti(path, split=split, classes=classes, on_bad_box=on_bad_box)
    coco_json = _coco_json_for(path, split)
    if coco_json is not None:
        image_roots = [path / split, path / "images", path]
        return load_coco(coco_json, split=split, classes=classes, image_roots=image_roots, on_bad_box=on_bad_box)
    raise EdgeKDError(
        f"{path}: not a dataset: expected a KITTI directory (label_2/ or training/label_2/), a COCO .json file, "
        f"or a directory with annotations/instances_{split}.json"
    )


def check_trainable(dataset: Dataset) -> list[str]:
    """Refuse a training split that labels no object of its classes (training would run to AP 0 on nothing);
    return the classes it has no object of, for the caller to warn about."""
    counts = dataset.class_counts()
    if not any(counts.values()):
        raise EdgeKDError(
            f"{dataset.root} (split {dataset.split!r}): no labelled object of the classes {list(dataset.classes)} in "
            f"{len(dataset)} images; nothing to train on (check the label types and the split)"
        )
    return [name for name, count in counts.items() if count == 0]
