"""Bad-input corpus, data: malformed KITTI and COCO datasets and output paths of `edgekd data synth | stats | show`
and `edgekd train`. Each corpus case exits 2 with one line naming the file:line / entry / option at fault, no
traceback and nothing left in the output folder; the tests after the corpus check what is accepted instead."""

from __future__ import annotations

import errno
import json
import os
import shutil
import struct
import tempfile
import zlib
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from usererror import assert_user_error, files_under, run_edgekd

from edgekd.data.images import load_resized, load_rgb
from edgekd.data.kitti import read_calib
from edgekd.data.loader import load_dataset
from edgekd.data.records import KITTI_CLASSES
from edgekd.data.torch_dataset import DetectionDataset
from edgekd.errors import EdgeKDError

LABEL = "Car 0.00 0 0.00 {} 1.5 1.6 3.9 0.00 1.65 20.00 0.00\n"
"""A ground-truth Car line; the braces take its box "left top right bottom"."""
TRAIN_ARGS = ("--epochs", "1", "--batch", "4", "--device", "cpu", "--img-size", "160x64", "--quiet")
SIZE = (320, 96)  # tiny_kitti's image size (width, height)


def _kitti(tmp: Path, source: Path) -> Path:
    root = tmp / "kitti"
    shutil.copytree(source, root)
    return root


def _append(path: Path, text: str) -> int:
    """Append one line to a label/split file; returns its 1-based line number."""
    before = path.read_text()
    path.write_text(before + text)
    return len(before.splitlines()) + 1


def _coco(tmp: Path, **overrides: object) -> Path:
    """A one-image COCO file (image a.png, 40x30, one car) with `overrides` replacing top-level keys."""
    Image.new("RGB", (40, 30), (90, 90, 90)).save(tmp / "a.png")
    data = {
        "images": [{"id": 1, "file_name": "a.png", "width": 40, "height": 30}],
        "categories": [{"id": 1, "name": "car"}],
        "annotations": [{"id": 1, "image_id": 1, "category_id": 1, "bbox": [1, 2, 10, 5]}],
    }
    data.update(overrides)
    path = tmp / "coco.json"
    path.write_text(json.dumps(data))  # json.dumps writes NaN / Infinity for non-finite floats
    return path


def _annotation(bbox: list[float]) -> list[dict]:
    return [{"id": 1, "image_id": 1, "category_id": 1, "bbox": bbox}]


# Each builder gets (tmp, tiny_kitti) and returns (args, out folder or None, needles).
Builder = Callable[[Path, Path], tuple[list[object], Path | None, tuple[str, ...]]]


def split_not_utf8(tmp: Path, kitti: Path) -> tuple[list[object], Path | None, tuple[str, ...]]:
    root = _kitti(tmp, kitti)
    (root / "ImageSets" / "train.txt").write_bytes(b"000000\n000001\n0000\xe90\n")
    return ["data", "stats", root], None, ("ImageSets/train.txt:3", "not UTF-8", "0xe9")


def split_id_with_path(tmp: Path, kitti: Path) -> tuple[list[object], Path | None, tuple[str, ...]]:
    root = _kitti(tmp, kitti)
    line = _append(root / "ImageSets" / "train.txt", "../image_2/000000\n")
    return ["data", "stats", root], None, (f"train.txt:{line}", "field image id", "'../image_2/000000'")


def split_id_with_backslash(tmp: Path, kitti: Path) -> tuple[list[object], Path | None, tuple[str, ...]]:
    root = _kitti(tmp, kitti)
    line = _append(root / "ImageSets" / "train.txt", "sub\\000000\n")
    return ["data", "stats", root], None, (f"train.txt:{line}", "field image id")


def label_not_utf8(tmp: Path, kitti: Path) -> tuple[list[object], Path | None, tuple[str, ...]]:
    root = _kitti(tmp, kitti)
    path = root / "label_2" / "000001.txt"
    line = len(path.read_text().splitlines()) + 1
    path.write_bytes(path.read_bytes() + "Café 0.00 0 0.00 1 1 9 9 1 1 1 1 1 1 0\n".encode("latin-1"))
    return ["data", "stats", root], None, (f"000001.txt:{line}", "not UTF-8", "0xe9 at column 4")


def label_lowercase_type(tmp: Path, kitti: Path) -> tuple[list[object], Path | None, tuple[str, ...]]:
    root = _kitti(tmp, kitti)
    line = _append(root / "label_2" / "000002.txt", LABEL.format("10 10 40 40").replace("Car", "car"))
    return (
        ["data", "stats", root],
        None,
        (f"000002.txt:{line}", "field type", "'car'", "did you mean 'Car'", "Person_sitting"),
    )


def label_foreign_type(tmp: Path, kitti: Path) -> tuple[list[object], Path | None, tuple[str, ...]]:
    root = _kitti(tmp, kitti)
    line = _append(root / "label_2" / "000003.txt", LABEL.format("10 10 40 40").replace("Car", "Bus"))
    needles = (f"000003.txt:{line}", "field type", "'Bus'", "Car, Van, Truck, Pedestrian, Person_sitting")
    return ["data", "stats", root], None, needles


def train_foreign_type(tmp: Path, kitti: Path) -> tuple[list[object], Path | None, tuple[str, ...]]:
    root = _kitti(tmp, kitti)
    line = _append(root / "label_2" / "000000.txt", LABEL.format("10 10 40 40").replace("Car", "Bus"))
    out = tmp / "run"
    args = ["train", "retinanet_mobilenet_v3_lite", "--data", root, "-o", out, *TRAIN_ARGS]
    return args, out, (f"000000.txt:{line}", "field type", "'Bus'")


def train_no_object_of_the_classes(tmp: Path, kitti: Path) -> tuple[list[object], Path | None, tuple[str, ...]]:
    root = _kitti(tmp, kitti)
    for image_id in (root / "ImageSets" / "train.txt").read_text().split():
        (root / "label_2" / f"{image_id}.txt").write_text(LABEL.format("10 10 40 40").replace("Car", "Van"))
    out = tmp / "run"
    args = ["train", "retinanet_mobilenet_v3_lite", "--data", root, "-o", out, *TRAIN_ARGS]
    return args, out, ("split 'train'", "no labelled object of the classes", "nothing to train on")


def label_box_right_of_image(tmp: Path, kitti: Path) -> tuple[list[object], Path | None, tuple[str, ...]]:
    root = _kitti(tmp, kitti)
    line = _append(root / "label_2" / "000001.txt", LABEL.format(f"{SIZE[0] + 5} 10 {SIZE[0] + 40} 40"))
    needles = (f"000001.txt:{line}", "field bbox", f"entirely outside the {SIZE[0]}x{SIZE[1]} image")
    return ["data", "stats", root, "--bad-boxes", "error"], None, needles


def label_box_above_image(tmp: Path, kitti: Path) -> tuple[list[object], Path | None, tuple[str, ...]]:
    root = _kitti(tmp, kitti)
    line = _append(root / "label_2" / "000004.txt", LABEL.format("10 -50 40 -2"))
    return (
        ["data", "show", root, "--bad-boxes", "error", "-o", tmp / "show" / "grid.png"],
        tmp / "show",
        (
            f"000004.txt:{line}",
            f"entirely outside the {SIZE[0]}x{SIZE[1]} image",
        ),
    )


def train_box_outside(tmp: Path, kitti: Path) -> tuple[list[object], Path | None, tuple[str, ...]]:
    root = _kitti(tmp, kitti)
    line = _append(root / "label_2" / "000005.txt", LABEL.format(f"10 {SIZE[1]} 40 {SIZE[1] + 30}"))
    out = tmp / "run"
    args = ["train", "retinanet_mobilenet_v3_lite", "--data", root, "-o", out, *TRAIN_ARGS]
    return args, out, (f"000005.txt:{line}", "entirely outside")


def empty_label_folder(tmp: Path, kitti: Path) -> tuple[list[object], Path | None, tuple[str, ...]]:
    root = _kitti(tmp, kitti)
    for path in (root / "label_2").iterdir():
        path.unlink()
    return ["data", "stats", root, "--split", "all"], None, ("label_2", "no label files")


def empty_label_folder_with_split(tmp: Path, kitti: Path) -> tuple[list[object], Path | None, tuple[str, ...]]:
    root = _kitti(tmp, kitti)
    for path in (root / "label_2").iterdir():
        path.unlink()
    return ["data", "stats", root], None, ("label file not found", "label_2/000000.txt")


def truncated_image_show(tmp: Path, kitti: Path) -> tuple[list[object], Path | None, tuple[str, ...]]:
    root = _kitti(tmp, kitti)
    path = root / "image_2" / "000001.png"
    path.write_bytes(path.read_bytes()[:400])
    out = tmp / "show"
    return ["data", "show", root, "-o", out / "grid.png"], out, ("image_2/000001.png", "not a readable image")


def truncated_image_train_workers(tmp: Path, kitti: Path) -> tuple[list[object], Path | None, tuple[str, ...]]:
    root = _kitti(tmp, kitti)
    path = root / "image_2" / "000002.png"
    path.write_bytes(path.read_bytes()[:400])
    out = tmp / "run"
    args = ["train", "retinanet_mobilenet_v3_lite", "--data", root, "-o", out, *TRAIN_ARGS, "--workers", "1"]
    return args, out, ("image_2/000002.png", "not a readable image")


def image_header_too_large(tmp: Path, kitti: Path) -> tuple[list[object], Path | None, tuple[str, ...]]:
    root = _kitti(tmp, kitti)
    Image.new("RGB", (4, 4)).save(root / "image_2" / "000003.png")
    data = bytearray((root / "image_2" / "000003.png").read_bytes())
    data[16:24] = struct.pack(">II", 40000, 40000)  # IHDR width, height: 1.6 gigapixels
    data[29:33] = struct.pack(">I", zlib.crc32(bytes(data[12:29])))
    (root / "image_2" / "000003.png").write_bytes(bytes(data))
    return ["data", "stats", root], None, ("image_2/000003.png", "not a readable image", "exceeds limit")


def coco_not_utf8(tmp: Path, kitti: Path) -> tuple[list[object], Path | None, tuple[str, ...]]:
    path = _coco(tmp, categories=[{"id": 1, "name": "cär"}])
    path.write_bytes(path.read_text(encoding="utf-8").replace("\\u00e4", "\u00e4").encode("latin-1"))
    return ["data", "stats", path], None, ("coco.json:1", "not UTF-8", "0xe4")


def coco_nan_box(tmp: Path, kitti: Path) -> tuple[list[object], Path | None, tuple[str, ...]]:
    path = _coco(tmp, annotations=_annotation([float("nan"), 2, 10, 5]))
    return ["data", "stats", path], None, ("coco.json: annotations[0]", "field bbox", "not a finite number")


def coco_infinite_box(tmp: Path, kitti: Path) -> tuple[list[object], Path | None, tuple[str, ...]]:
    path = _coco(tmp, annotations=_annotation([1, 2, float("inf"), 5]))
    return ["data", "stats", path], None, ("annotations[0]", "field bbox", "not a finite number")


def coco_negative_infinite_box(tmp: Path, kitti: Path) -> tuple[list[object], Path | None, tuple[str, ...]]:
    path = _coco(tmp, annotations=_annotation([1, float("-inf"), 10, 5]))
    return ["data", "show", path, "-o", tmp / "show" / "g.png"], tmp / "show", ("annotations[0]", "not a finite")


def coco_box_outside(tmp: Path, kitti: Path) -> tuple[list[object], Path | None, tuple[str, ...]]:
    path = _coco(tmp, annotations=_annotation([45, 2, 10, 5]))
    return (
        ["data", "stats", path, "--bad-boxes", "error"],
        None,
        (
            "annotations[0]",
            "field bbox",
            "entirely outside the 40x30 image",
        ),
    )


def coco_size_disagrees(tmp: Path, kitti: Path) -> tuple[list[object], Path | None, tuple[str, ...]]:
    path = _coco(tmp, images=[{"id": 1, "file_name": "a.png", "width": 1242, "height": 375}])
    return ["data", "stats", path], None, ("images[0]", "field width/height", "1242x375", "is 40x30")


def coco_same_file_twice(tmp: Path, kitti: Path) -> tuple[list[object], Path | None, tuple[str, ...]]:
    images = [{"id": i, "file_name": "a.png", "width": 40, "height": 30} for i in (1, 2)]
    path = _coco(tmp, images=images)
    return ["data", "stats", path], None, ("images[1]", "field file_name", "images[0]")


def coco_no_images(tmp: Path, kitti: Path) -> tuple[list[object], Path | None, tuple[str, ...]]:
    path = _coco(tmp, images=[], annotations=[])
    out = tmp / "run"
    args = ["train", "retinanet_mobilenet_v3_lite", "--data", path, "-o", out, *TRAIN_ARGS]
    return args, out, ("coco.json", "field images", "no images")


def _fail_save(self: Image.Image, fp: object, *args: object, **kwargs: object) -> None:
    """Stand-in for PIL's save on a full disk: half a file, then ENOSPC."""
    Path(fp).write_bytes(b"\x89PNG half")
    raise OSError(errno.ENOSPC, "No space left on device")


def synth_out_is_file(tmp: Path, kitti: Path) -> tuple[list[object], Path | None, tuple[str, ...]]:
    out = tmp / "synth"
    out.write_text("not a folder")
    return (
        ["data", "synth", out, "--train", "1", "--val", "1", "--size", "64x24", "--workers", "1", "-q"],
        None,
        (
            str(out),
            "is a file",
        ),
    )


def synth_out_under_file(tmp: Path, kitti: Path) -> tuple[list[object], Path | None, tuple[str, ...]]:
    (tmp / "file").write_text("x")
    out = tmp / "file" / "synth"
    args = ["data", "synth", out, "--train", "1", "--val", "1", "--size", "64x24", "--workers", "1", "-q"]
    return args, None, (str(out), f"under {tmp / 'file'}, which is a file")


def show_out_under_file(tmp: Path, kitti: Path) -> tuple[list[object], Path | None, tuple[str, ...]]:
    (tmp / "file").write_text("x")
    return ["data", "show", kitti, "-o", tmp / "file" / "grid.png"], None, ("grid.png", "is a file")


def show_out_is_folder(tmp: Path, kitti: Path) -> tuple[list[object], Path | None, tuple[str, ...]]:
    out = tmp / "grid.png"
    out.mkdir()
    return ["data", "show", kitti, "-o", out], out, ("-o", "grid.png", "is a folder")


CORPUS: dict[str, Builder] = {
    f.__name__: f
    for f in (
        split_not_utf8,
        split_id_with_path,
        split_id_with_backslash,
        label_not_utf8,
        label_lowercase_type,
        label_foreign_type,
        train_foreign_type,
        train_no_object_of_the_classes,
        label_box_right_of_image,
        label_box_above_image,
        train_box_outside,
        empty_label_folder,
        empty_label_folder_with_split,
        truncated_image_show,
        truncated_image_train_workers,
        image_header_too_large,
        coco_not_utf8,
        coco_nan_box,
        coco_infinite_box,
        coco_negative_infinite_box,
        coco_box_outside,
        coco_size_disagrees,
        coco_same_file_twice,
        coco_no_images,
        synth_out_is_file,
        synth_out_under_file,
        show_out_under_file,
        show_out_is_folder,
    )
}


@pytest.mark.parametrize("name", list(CORPUS))
def test_bad_data_input(
    name: str, tiny_kitti: Path, tmp_path: Path, capsys: pytest.CaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    args, out, needles = CORPUS[name](tmp_path, tiny_kitti)
    assert_user_error(run_edgekd(capsys, monkeypatch, *args), *needles, out=out)


SYNTH = ("--train", "2", "--val", "1", "--size", "64x24", "--workers", "1", "-q")


def test_synth_full_disk_leaves_nothing(tmp_path: Path, capsys: pytest.CaptureFixture, monkeypatch) -> None:
    out = tmp_path / "synth"
    monkeypatch.setattr(Image.Image, "save", _fail_save)
    outcome = run_edgekd(capsys, monkeypatch, "data", "synth", out, *SYNTH)
    assert_user_error(outcome, str(out), "no space left on the device", out=out)
    assert list(out.iterdir()) == []  # not even the hidden staging folder


def test_synth_overwrite_on_full_disk_keeps_the_old_dataset(tmp_path: Path, capsys, monkeypatch) -> None:
    out = tmp_path / "synth"
    assert run_edgekd(capsys, monkeypatch, "data", "synth", out, *SYNTH).code == 0
    before = {p: p.read_bytes() for p in files_under(out)}
    assert len(before) == 3 * 3 + 3 + 1  # image/label/calib per image, 3 split files, synth_config.json
    monkeypatch.setattr(Image.Image, "save", _fail_save)
    outcome = run_edgekd(capsys, monkeypatch, "data", "synth", out, *SYNTH, "--seed", "9", "--overwrite")
    assert_user_error(outcome, "no space left", out=out, before=sorted(before))
    assert {p: p.read_bytes() for p in files_under(out)} == before


def test_synth_into_an_earlier_dataset_is_refused(tmp_path: Path, capsys, monkeypatch) -> None:
    out = tmp_path / "synth"
    assert run_edgekd(capsys, monkeypatch, "data", "synth", out, *SYNTH).code == 0
    before = {p: p.read_bytes() for p in files_under(out)}
    outcome = run_edgekd(capsys, monkeypatch, "data", "synth", out, *SYNTH)  # even the identical one
    assert_user_error(outcome, str(out), "already holds image_2, label_2, calib, ImageSets", "--overwrite")
    assert {p: p.read_bytes() for p in files_under(out)} == before
    assert run_edgekd(capsys, monkeypatch, "data", "synth", out, *SYNTH, "--seed", "2", "--overwrite").code == 0
    after = {p: p.read_bytes() for p in files_under(out)}
    assert sorted(after) == sorted(before) and after != before


def test_synth_into_a_folder_with_other_files_keeps_them(tmp_path: Path, capsys, monkeypatch) -> None:
    out = tmp_path / "synth"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    assert run_edgekd(capsys, monkeypatch, "data", "synth", out, *SYNTH).code == 0
    assert (out / "notes.txt").read_text() == "mine"
    assert len(list((out / "image_2").iterdir())) == 3


def test_synth_read_only_folder_simulated(tmp_path: Path, capsys, monkeypatch) -> None:
    out = tmp_path / "synth"
    out.mkdir()
    real_access = os.access

    def access(path: object, mode: int, **kwargs: object) -> bool:
        writing_out = Path(path) == out and bool(mode & os.W_OK)
        return not writing_out and real_access(path, mode, **kwargs)

    monkeypatch.setattr(os, "access", access)
    outcome = run_edgekd(capsys, monkeypatch, "data", "synth", out, *SYNTH)
    assert_user_error(outcome, str(out), "not writable", out=out)


@pytest.mark.skipif(os.geteuid() == 0, reason="root ignores folder permissions")
def test_synth_and_show_read_only_folder(tiny_kitti: Path, tmp_path: Path, capsys, monkeypatch) -> None:
    folder = tmp_path / "ro"
    folder.mkdir()
    folder.chmod(0o555)
    try:
        outcome = run_edgekd(capsys, monkeypatch, "data", "synth", folder / "synth", *SYNTH)
        assert_user_error(outcome, str(folder / "synth"), "permission denied", out=folder)
        outcome = run_edgekd(capsys, monkeypatch, "data", "show", tiny_kitti, "-o", folder / "grid.png")
        assert_user_error(outcome, "grid.png", "permission denied", out=folder)
    finally:
        folder.chmod(0o755)


def test_show_read_only_folder_simulated(tiny_kitti: Path, tmp_path: Path, capsys, monkeypatch) -> None:
    def refuse(*args: object, **kwargs: object) -> None:
        raise PermissionError(errno.EACCES, "Permission denied")

    monkeypatch.setattr(tempfile, "mkstemp", refuse)
    outcome = run_edgekd(capsys, monkeypatch, "data", "show", tiny_kitti, "-o", tmp_path / "out" / "grid.png")
    assert_user_error(outcome, "grid.png", "permission denied", out=tmp_path / "out")


def test_show_full_disk_leaves_nothing(tiny_kitti: Path, tmp_path: Path, capsys, monkeypatch) -> None:
    monkeypatch.setattr(Image.Image, "save", _fail_save)
    outcome = run_edgekd(capsys, monkeypatch, "data", "show", tiny_kitti, "-o", tmp_path / "out" / "grid.png")
    assert_user_error(outcome, "grid.png", "no space left on the device", out=tmp_path / "out")


# What is accepted, and the library-level checks behind the corpus.


def test_box_partly_outside_is_truncation_not_an_error(tiny_kitti: Path, tmp_path: Path) -> None:
    root = _kitti(tmp_path, tiny_kitti)
    _append(root / "label_2" / "000000.txt", LABEL.format(f"-20 -10 30 {SIZE[1] + 10}"))
    boxes, _ = load_dataset(root, "train").records[0].targets(KITTI_CLASSES)
    assert boxes[-1].tolist() == [-20, -10, 30, SIZE[1] + 10]


def test_out_of_image_boxes_are_kept_and_listed_with_warn(
    tiny_kitti: Path, tmp_path: Path, capsys, monkeypatch
) -> None:
    root = _kitti(tmp_path, tiny_kitti)
    line = _append(root / "label_2" / "000001.txt", LABEL.format(f"{SIZE[0]} 10 {SIZE[0] + 9} 40"))
    outcome = run_edgekd(capsys, monkeypatch, "data", "stats", root, "--json")
    assert outcome.code == 0, outcome.stderr
    assert "1 out-of-image box(es) kept" in outcome.stderr and f"000001.txt:{line}" in outcome.stderr


def test_class_list_must_be_known_or_present(tiny_kitti: Path, tmp_path: Path) -> None:
    root = _kitti(tmp_path, tiny_kitti)
    assert load_dataset(root, "train", classes=("Pedestrian", "Tram")).classes == ("Pedestrian", "Tram")
    with pytest.raises(EdgeKDError, match=r"class 'car' of the class list is not a KITTI type .*did you mean 'Car'"):
        load_dataset(root, "train", classes=("car", "Pedestrian"))
    line = _append(root / "label_2" / "000000.txt", LABEL.format("10 10 40 40").replace("Car", "Bus"))
    dataset = load_dataset(root, "train", classes=("Car", "Bus"))  # a class list may add types of its own
    assert dataset.records[0].targets(dataset.classes)[1].tolist()[-1] == 1
    with pytest.raises(EdgeKDError, match=rf"000000.txt:{line}: field type: 'Bus' is not a KITTI type;"):
        load_dataset(root, "train", classes=("Car", "Truck"))


def test_byte_order_marks_are_accepted(tiny_kitti: Path, tmp_path: Path) -> None:
    root = _kitti(tmp_path, tiny_kitti)
    for path in (root / "ImageSets" / "train.txt", root / "label_2" / "000000.txt"):
        path.write_bytes(b"\xef\xbb\xbf" + path.read_bytes())
    assert len(load_dataset(root, "train")) == 12
    coco = _coco(tmp_path)
    coco.write_bytes(b"\xef\xbb\xbf" + coco.read_bytes())
    assert load_dataset(coco).classes == ("car",)


def test_calib_not_utf8_names_the_line(tmp_path: Path) -> None:
    path = tmp_path / "000000.txt"
    path.write_bytes(b"P0: 1 2 3\nP2: 7\xff 0 0 0 0 0 0 0 0 0 0 0\n")
    with pytest.raises(EdgeKDError, match=r"000000.txt:2: not UTF-8 text \(byte 0xff at column 6\)"):
        read_calib(path)


def test_uppercase_image_extension_is_found(tiny_kitti: Path, tmp_path: Path) -> None:
    root = _kitti(tmp_path, tiny_kitti)
    (root / "image_2" / "000000.png").rename(root / "image_2" / "000000.PNG")
    assert load_dataset(root, "train").records[0].image_path.name == "000000.PNG"


def _grey(values: np.ndarray, path: Path) -> Path:
    Image.fromarray(values).save(path)
    return path


def test_16_bit_png_decodes_like_its_8_bit_version(tmp_path: Path) -> None:
    eight = np.arange(0, 256, dtype=np.uint8).reshape(16, 16)
    sixteen = eight.astype(np.uint16) * 257  # v in 8 bits is v * 257 in 16 bits
    path16 = _grey(sixteen, tmp_path / "deep.png")
    path8 = _grey(eight, tmp_path / "flat.png")
    with Image.open(path16) as image:
        assert image.mode == "I;16"
    expected = np.repeat(eight[:, :, None], 3, axis=2)
    assert np.array_equal(np.asarray(load_rgb(path16)), expected)
    assert np.array_equal(np.asarray(load_rgb(path8)), expected)
    assert np.array_equal(load_resized(path16, (8, 8))[0], load_resized(path8, (8, 8))[0])
    low_byte = _grey(np.full((4, 4), 255, dtype=np.uint16), tmp_path / "dark.png")  # 255/65535: nearly black
    assert np.asarray(load_rgb(low_byte)).max() == 0


def test_16_bit_png_trains_like_its_8_bit_version(tiny_kitti: Path, tmp_path: Path) -> None:
    root = _kitti(tmp_path, tiny_kitti)
    path = root / "image_2" / "000000.png"
    with Image.open(path) as image:
        grey8 = np.asarray(image.convert("L"))
    _grey(grey8, path)
    eight = DetectionDataset(load_dataset(root, "train"), (48, 160), cache=False)[0][0]
    _grey(grey8.astype(np.uint16) * 257, path)
    sixteen = DetectionDataset(load_dataset(root, "train"), (48, 160), cache=False)[0][0]
    assert sixteen.shape == (3, 48, 160) and np.array_equal(sixteen.numpy(), eight.numpy())
    assert float(sixteen.max()) > 0 and float(sixteen.max()) <= 255


def test_floating_point_image_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "float.tif"
    Image.fromarray(np.ones((4, 4), dtype=np.float32)).save(path)
    with pytest.raises(EdgeKDError, match=r"float.tif: floating-point images are not supported \(mode F\)"):
        load_rgb(path)


def test_classes_without_a_training_object_are_named(tiny_kitti: Path, tmp_path: Path) -> None:
    from edgekd.data.loader import check_trainable

    root = _kitti(tmp_path, tiny_kitti)
    for path in (root / "label_2").glob("*.txt"):
        path.write_text(LABEL.format("10 10 40 40") + LABEL.format("50 10 60 40").replace("Car", "Cyclist"))
    dataset = load_dataset(root, "train")
    assert dataset.class_counts() == {"Car": 12, "Pedestrian": 0, "Cyclist": 12}
    assert check_trainable(dataset) == ["Pedestrian"]
