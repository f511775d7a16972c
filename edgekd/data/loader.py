"""`load_dataset`: one entry point for KITTI directories and COCO JSON files, producing records.py types."""

from __future__ import annotations

from pathlib import Path

from PIL import Image, UnidentifiedImageError

from edgekd.data.coco import load_coco
from edgekd.data.kitti import bad_box_message, is_bad_box, read_label_lines, report_bad_boxes
from edgekd.data.records import KITTI_CLASSES, Dataset, ImageRecord
from edgekd.errors import EdgeKDError

IMAGE_EXTENSIONS: tuple[str, ...] = (".png", ".jpg", ".jpeg")
BAD_BOX_POLICIES: tuple[str, ...] = ("error", "warn")


def image_size(path: Path) -> tuple[int, int]:
    """(width, height) of an image file, from its header only (PIL opens lazily and decodes nothing here)."""
    try:
        with Image.open(path) as image:
            return image.size
    except FileNotFoundError:
        raise EdgeKDError(f"image not found: {path}") from None
    except (UnidentifiedImageError, OSError) as error:
        raise EdgeKDError(f"{path}: not a readable image ({error})") from None


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
    for number, line in enumerate(path.read_text().splitlines(), start=1):
        image_id = line.strip()
        if not image_id:
            continue
        if len(image_id.split()) != 1:
            raise EdgeKDError(f"{path}:{number}: field image id: one id per line, got {image_id!r}")
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
    for ext in IMAGE_EXTENSIONS:
        if (image_dir / f"{image_id}{ext}").is_file():
            return image_dir / f"{image_id}{ext}"
    raise EdgeKDError(f"image not found: {image_dir / (image_id + '.png')} (for image id {image_id!r})")


def load_kitti(
    root: str | Path, split: str = "train", classes: tuple[str, ...] | None = None, on_bad_box: str = "error"
) -> Dataset:
    """A KITTI-layout dataset (image_2/, label_2/, optional ImageSets/) as a Dataset of ground-truth records."""
    root = Path(root)
    base = kitti_base(root)
    if base is None:
        raise EdgeKDError(f"{root}: not a KITTI directory (no label_2/ or training/label_2/)")
    records = []
    bad: list[str] = []
    for image_id in split_ids(root, split):
        label_path = base / "label_2" / f"{image_id}.txt"
        if not label_path.is_file():
            raise EdgeKDError(f"label file not found: {label_path} (image id {image_id!r} of split {split!r})")
        lines = read_label_lines(label_path, with_score=False)
        bad += [bad_box_message(label_path, number, obj) for number, obj in lines if is_bad_box(obj)]
        image_path = _find_image(base / "image_2", image_id)
        width, height = image_size(image_path)
        records.append(ImageRecord(image_id, image_path, width, height, [obj for _, obj in lines]))
    report_bad_boxes(bad, base / "label_2", on_bad_box)
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
    Zero/negative-size ground-truth boxes raise EdgeKDError naming file:line (on_bad_box="error", default) or are
    kept and reported with a BadBoxWarning (on_bad_box="warn").
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
