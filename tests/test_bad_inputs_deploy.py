"""Bad-input corpus for the deploy side: exported artifacts and their metadata, export output folders, bench
options, evaluation against data of other classes, and the JSON files `edgekd report` reads.

Every corpus case goes through the console-script entry point and asserts the house contract (exit 2, one
`error:` line naming the culprit, no traceback, nothing written); a few success tests pin down what a repeated
export into the same folder leaves behind.
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import pathlib
import shutil
import tempfile
from pathlib import Path

import pytest
from usererror import assert_user_error, files_under, run_edgekd

EXPORT_SET = ["model.onnx", "model.onnx.json", "parity.json", "parity.md"]
"""The files `edgekd export CKPT` writes without --int8/--trt (the tiny export fixture's own set)."""


def _copy_export(tiny_export: Path, folder: Path) -> Path:
    """A copy of the tiny export (the model hard-linked: it is only read) whose metadata a test may edit."""
    folder.mkdir(parents=True)
    os.link(tiny_export / "model.onnx", folder / "model.onnx")
    shutil.copy(tiny_export / "model.onnx.json", folder / "model.onnx.json")
    return folder / "model.onnx"


def _edit_metadata(model: Path, edit) -> Path:
    path = model.with_name(model.name + ".json")
    data = json.loads(path.read_text())
    edit(data)
    path.write_text(json.dumps(data))
    return path


def _set(**values):
    return lambda data: data.update(values)


def _drop(name: str):
    return lambda data: data.pop(name)


METADATA_CASES = {
    # field values that disagree with the ONNX graph (input 1x3x64x160, outputs boxes 1x1935x4, scores 1x1935x3)
    "input size not the graph's": (_set(input_size=[96, 320]), ["input_size", "[1, 3, 64, 160]"]),
    "batch not the graph's": (_set(batch={"min": 2, "opt": 2, "max": 2}), ["'batch'", "static batch of 1"]),
    "dynamic batch on a static graph": (_set(batch={"min": 1, "opt": 2, "max": 4}), ["'batch'", "dynamic 1:2:4"]),
    "nms onnx on a host-NMS graph": (_set(nms="onnx"), ["'nms'", "boxes, scores"]),
    "nms trt-plugin on a host-NMS graph": (_set(nms="trt-plugin"), ["EfficientNMS_TRT"]),
    "2 classes for 3 score columns": (
        _set(classes=["Car", "Pedestrian"]),
        ["'classes'", "2 classes listed", "has 3 per candidate"],
    ),
    "4 classes for 3 score columns": (
        _set(classes=["Car", "Pedestrian", "Cyclist", "Van"]),
        ["'classes'", "4 classes listed", "has 3 per candidate"],
    ),
    "candidate count not the graph's": (_set(num_candidates=5), ["'num_candidates'", "1935 candidates"]),
    "input name not the graph's": (_set(input_name="pixels"), ["'input_name'", "images"]),
    # wrong types and ranges
    "input size as text": (_set(input_size="160x64"), ["'input_size'", "'160x64'"]),
    "input size with a boolean": (_set(input_size=[True, 160]), ["'input_size'"]),
    "classes as a string": (_set(classes="Car,Pedestrian,Cyclist"), ["'classes'", "list"]),
    "classes as numbers": (_set(classes=[1, 2, 3]), ["'classes'"]),
    "duplicate classes": (_set(classes=["Car", "Car", "Cyclist"]), ["'classes'", "distinct"]),
    "score threshold as text": (_set(score_thresh="x"), ["'score_thresh'", "'x'"]),
    "score threshold NaN": (_set(score_thresh=float("nan")), ["'score_thresh'", "nan"]),
    "score threshold above 1": (_set(score_thresh=2.0), ["'score_thresh'", "from 0 to 1"]),
    "max detections fractional": (_set(max_detections=1.5), ["'max_detections'", "1.5"]),
    "max detections as text": (_set(max_detections="100"), ["'max_detections'"]),
    "top-k zero": (_set(topk_candidates=0), ["'topk_candidates'"]),
    "std zero": (_set(std=[0, 0, 0]), ["'std'"]),
    "mean as text": (_set(mean="imagenet"), ["'mean'"]),
    "batch as text": (_set(batch="1"), ["'batch'"]),
    "batch with an extra key": (_set(batch={"min": 1, "opt": 1, "max": 1, "step": 1}), ["'batch'"]),
    "source as a list": (_set(source=[]), ["'source'"]),
    # unknown and missing fields
    "unknown field": (_set(colour="red"), ["'colour'", "not an export metadata field"]),
    "missing classes": (_drop("classes"), ["'classes' missing"]),
    "missing nms threshold": (_drop("nms_thresh"), ["'nms_thresh' missing"]),
    "missing format": (_drop("format"), ["'format'"]),
}


def _bench(model: Path) -> list:
    return ["bench", model, "--iters", "2", "--warmup", "0", "--no-e2e", "--quiet"]


@pytest.mark.parametrize("command", ["eval", "bench"])
@pytest.mark.parametrize("case", list(METADATA_CASES))
def test_edited_metadata_is_refused_naming_file_and_field(
    case, command, tiny_export, tiny_kitti, tmp_path, capsys, monkeypatch
):
    edit, needles = METADATA_CASES[case]
    model = _copy_export(tiny_export, tmp_path / "export")
    meta = _edit_metadata(model, edit)
    before = files_under(tmp_path / "export")
    args = ["eval", model, "--data", tiny_kitti] if command == "eval" else _bench(model)
    outcome = run_edgekd(capsys, monkeypatch, *args)
    assert_user_error(outcome, str(meta), *needles, out=tmp_path / "export", before=before)


METADATA_BYTES = {
    "not UTF-8": ('{"format": "edgekd-export-v1", "model": "caf\xe9"}'.encode("latin-1"), ["not UTF-8", "0xe9"]),
    "not JSON": (b'{"format": "edgekd-export-v1",\n "model": }', [":2: not valid JSON"]),
    "a JSON list": (b"[]", ["not edgekd export metadata"]),
    "empty": (b"", ["not valid JSON"]),
}


@pytest.mark.parametrize("command", ["eval", "bench"])
@pytest.mark.parametrize("case", list(METADATA_BYTES))
def test_unreadable_metadata_is_refused_naming_the_file(
    case, command, tiny_export, tiny_kitti, tmp_path, capsys, monkeypatch
):
    content, needles = METADATA_BYTES[case]
    model = _copy_export(tiny_export, tmp_path / "export")
    meta = model.with_name("model.onnx.json")
    meta.write_bytes(content)
    args = ["eval", model, "--data", tiny_kitti] if command == "eval" else _bench(model)
    outcome = run_edgekd(capsys, monkeypatch, *args)
    assert_user_error(outcome, str(meta), *needles)


@pytest.mark.parametrize("command", ["eval", "bench"])
@pytest.mark.parametrize("keep", ["half", "none"])
def test_truncated_onnx_is_refused_naming_the_file(
    keep, command, tiny_export, tiny_kitti, tmp_path, capsys, monkeypatch
):
    data = (tiny_export / "model.onnx").read_bytes()
    model = tmp_path / "cut" / "model.onnx"
    model.parent.mkdir()
    model.write_bytes(data[: len(data) // 2] if keep == "half" else b"")
    shutil.copy(tiny_export / "model.onnx.json", model.with_name("model.onnx.json"))
    args = ["eval", model, "--data", tiny_kitti] if command == "eval" else _bench(model)
    outcome = run_edgekd(capsys, monkeypatch, *args)
    assert_user_error(outcome, str(model), "cannot load", out=tmp_path / "cut", before=files_under(tmp_path / "cut"))


def test_missing_metadata_is_refused(tiny_export, tmp_path, capsys, monkeypatch):
    model = tmp_path / "model.onnx"
    os.link(tiny_export / "model.onnx", model)
    outcome = run_edgekd(capsys, monkeypatch, *_bench(model))
    assert_user_error(outcome, "model.onnx.json", "metadata not found")


BENCH_OPTIONS = {
    "--seconds nan": (["--seconds", "nan"], ["--seconds nan"]),
    "--seconds inf": (["--seconds", "inf"], ["--seconds inf"]),
    "--seconds -inf": (["--seconds", "-inf"], ["--seconds -inf"]),
    "--seconds 1e300": (["--seconds", "1e300"], ["--seconds 1e+300", "at most 86400"]),
    "--seconds 0": (["--seconds", "0"], ["--seconds 0"]),
    "--seconds -1": (["--seconds", "-1"], ["--seconds -1"]),
    "--iters 0": (["--iters", "0"], ["--iters 0"]),
    "--iters -5": (["--iters", "-5"], ["--iters -5"]),
    "--iters 1": (["--iters", "1"], ["--iters 1", "at least 2"]),
    "--iters with --seconds": (["--iters", "5", "--seconds", "1"], ["--iters", "--seconds"]),
    "--warmup -1": (["--warmup", "-1"], ["--warmup -1"]),
    "--batch 1,0": (["--batch", "1,0"], ["--batch '1,0'"]),
    "--batch a": (["--batch", "a"], ["--batch 'a'"]),
    "--batch -2": (["--batch", "-2"], ["--batch '-2'"]),
    "--batch empty": (["--batch", ""], ["--batch ''"]),
    "--batch 1,,2": (["--batch", "1,,2"], ["--batch '1,,2'"]),
    "--threads 0": (["--threads", "0"], ["--threads 0"]),
    "--threads -4": (["--threads", "-4"], ["--threads -4"]),
    "--eval without --data": (["--eval"], ["--eval", "--data"]),
    "--backend unknown": (["--backend", "cuda-fast"], ["--backend cuda-fast"]),
    "--backend torch for onnx": (["--backend", "torch"], ["--backend torch", "model.onnx"]),
}


@pytest.mark.parametrize("case", list(BENCH_OPTIONS))
def test_bad_bench_option_is_refused_naming_it(case, tiny_export, tmp_path, capsys, monkeypatch):
    options, needles = BENCH_OPTIONS[case]
    report = tmp_path / "out" / "x.bench.json"
    outcome = run_edgekd(capsys, monkeypatch, "bench", tiny_export / "model.onnx", *options, "--json", report)
    assert_user_error(outcome, *needles, out=tmp_path / "out")


def _hidden_leftovers(parent: Path) -> list[Path]:
    return sorted(p for p in parent.iterdir() if p.name.startswith("."))


EXPORT_OPTIONS = {
    "--batch 0": (["--batch", "0"], ["--batch 0"]),
    "--threads 0": (["--threads", "0"], ["--threads 0"]),
    "--workspace 0": (["--workspace", "0"], ["--workspace 0"]),
    "--calib-images 0": (["--int8", "--calib-data", "x", "--calib-images", "0"], ["--calib-images 0"]),
    "--dynamic-batch 4:2:8": (["--dynamic-batch", "4:2:8"], ["--dynamic-batch '4:2:8'"]),
    "--nms fast": (["--nms", "fast"], ["--nms fast"]),
    "--opset 7": (["--opset", "7"], ["--opset 7"]),
    "--int8-ap-budget -1": (
        ["--int8", "--data", "x", "--int8-ap-budget", "-1"],
        ["--int8-ap-budget -1.0", "0 or more"],
    ),
    "--int8-ap-budget nan": (["--int8", "--data", "x", "--int8-ap-budget", "nan"], ["--int8-ap-budget nan", "finite"]),
    "--int8-ap-budget without --int8": (["--data", "x", "--int8-ap-budget", "1"], ["--int8-ap-budget 1.0", "--int8"]),
    "--int8-ap-budget without --data": (
        ["--int8", "--calib-data", "x", "--int8-ap-budget", "1"],
        ["--int8-ap-budget 1.0", "--data DIR"],
    ),
    "--int8-target gpu": (["--int8", "--data", "x", "--int8-target", "gpu"], ["--int8-target gpu", "tensorrt, cpu"]),
    "--int8-target cpu without --int8": (["--int8-target", "cpu"], ["--int8-target cpu", "add --int8"]),
    "--int8-target cpu with --trt": (
        ["--int8", "--data", "x", "--int8-target", "cpu", "--trt"],
        ["--int8-target cpu", "TensorRT accepts only"],
    ),
    "--int8-ap-budget with --int8-keep": (
        ["--int8", "--data", "x", "--int8-ap-budget", "1", "--int8-keep", "cls_logits"],
        ["--int8-ap-budget 1.0", "--int8-keep"],
    ),
    "--layerwise without --trt": (["--layerwise"], ["--layerwise", "add --trt"]),
}


@pytest.mark.parametrize("case", list(EXPORT_OPTIONS))
def test_bad_export_option_is_refused_naming_it(case, tiny_checkpoint, tmp_path, capsys, monkeypatch):
    options, needles = EXPORT_OPTIONS[case]
    out = tmp_path / "out"
    outcome = run_edgekd(capsys, monkeypatch, "export", tiny_checkpoint, "-o", out, *options, "--quiet")
    assert_user_error(outcome, *needles, out=out)
    assert _hidden_leftovers(tmp_path) == []


def test_export_into_a_file_is_refused(tiny_checkpoint, tmp_path, capsys, monkeypatch):
    target = tmp_path / "model.onnx"
    target.write_bytes(b"not a folder")
    outcome = run_edgekd(capsys, monkeypatch, "export", tiny_checkpoint, "-o", target, "--quiet")
    assert_user_error(outcome, f"-o {target}", "is a file", out=target, before=[target])
    assert target.read_bytes() == b"not a folder"


def test_export_under_a_file_is_refused(tiny_checkpoint, tmp_path, capsys, monkeypatch):
    blocker = tmp_path / "notes.txt"
    blocker.write_text("x")
    outcome = run_edgekd(capsys, monkeypatch, "export", tiny_checkpoint, "-o", blocker / "run", "--quiet")
    assert_user_error(outcome, str(blocker / "run"), f"under {blocker}", out=tmp_path, before=[blocker])


def test_export_into_a_folder_with_other_files_is_refused(tiny_checkpoint, tmp_path, capsys, monkeypatch):
    out = tmp_path / "run"
    out.mkdir()
    (out / "best.pt").write_bytes(b"a checkpoint the export must not delete")
    outcome = run_edgekd(capsys, monkeypatch, "export", tiny_checkpoint, "-o", out, "--quiet")
    assert_user_error(
        outcome, f"-o {out}", "best.pt", "not part of an edgekd export", out=out, before=[out / "best.pt"]
    )
    assert _hidden_leftovers(tmp_path) == []


def test_export_into_a_read_only_place_is_refused(tiny_checkpoint, tmp_path, capsys, monkeypatch):
    # root ignores chmod: the folder creation fails as it would in a read-only parent
    def refuse(*args, **kwargs):
        raise PermissionError(errno.EACCES, "Permission denied")

    monkeypatch.setattr(tempfile, "mkdtemp", refuse)
    out = tmp_path / "ro" / "run"
    outcome = run_edgekd(capsys, monkeypatch, "export", tiny_checkpoint, "-o", out, "--quiet")
    assert_user_error(outcome, f"-o {out}", "permission denied", out=out)


def _disk_full_on(name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Path.write_bytes raises ENOSPC for the temporary file of `name` (the atomic writer's), as a full disk."""
    original = pathlib.Path.write_bytes

    def write_bytes(self: Path, data: bytes) -> int:
        if self.name.startswith(f".{name}."):
            raise OSError(errno.ENOSPC, "No space left on device")
        return original(self, data)

    monkeypatch.setattr(pathlib.Path, "write_bytes", write_bytes)


@pytest.mark.parametrize("name", ["model.onnx", "parity.md"])
def test_export_on_a_full_disk_leaves_nothing(name, tiny_checkpoint, tmp_path, capsys, monkeypatch):
    _disk_full_on(name, monkeypatch)
    out = tmp_path / "run"
    outcome = run_edgekd(capsys, monkeypatch, "export", tiny_checkpoint, "-o", out, "--quiet")
    assert_user_error(outcome, name, "no space left", out=out)
    assert not out.exists() and _hidden_leftovers(tmp_path) == []


def test_export_on_a_full_disk_keeps_the_previous_export(tiny_checkpoint, tiny_export, tmp_path, capsys, monkeypatch):
    out = tmp_path / "run"
    shutil.copytree(tiny_export, out)
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    _disk_full_on("model.onnx", monkeypatch)
    outcome = run_edgekd(capsys, monkeypatch, "export", tiny_checkpoint, "-o", out, "--quiet")
    assert_user_error(outcome, "no space left", out=out, before=sorted(out / n for n in before))
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before
    assert _hidden_leftovers(tmp_path) == []


def test_export_replaces_another_models_export(tiny_checkpoint, tiny_export, tmp_path, capsys, monkeypatch):
    """A folder holding another checkpoint's export (with an INT8 model this export does not make) ends up
    holding this export's files only."""
    out = tmp_path / "run"
    shutil.copytree(tiny_export, out)
    other = {"checkpoint": "runs/other/best.pt", "sha256": "0" * 64}
    _edit_metadata(out / "model.onnx", _set(source=other))
    (out / "model_int8.onnx").write_bytes(b"stale int8 model of another checkpoint")
    shutil.copy(out / "model.onnx.json", out / "model_int8.onnx.json")
    (out / "calibration.cache").write_bytes(b"stale scales")
    outcome = run_edgekd(capsys, monkeypatch, "export", tiny_checkpoint, "-o", out)
    assert outcome.code == 0, outcome.stderr
    assert "replaced the previous export" in outcome.stdout
    assert sorted(p.name for p in out.iterdir()) == EXPORT_SET
    meta = json.loads((out / "model.onnx.json").read_text())
    assert meta["source"]["sha256"] == hashlib.sha256(tiny_checkpoint.read_bytes()).hexdigest()
    assert _hidden_leftovers(tmp_path) == []


def test_reexport_of_the_same_checkpoint_gives_the_same_set(
    tiny_checkpoint, tiny_export, tmp_path, capsys, monkeypatch
):
    out = tmp_path / "run"
    shutil.copytree(tiny_export, out)
    (out / "timing.cache").write_bytes(b"TensorRT timing cache")
    outcome = run_edgekd(capsys, monkeypatch, "export", tiny_checkpoint, "-o", out, "--quiet")
    assert outcome.code == 0, outcome.stderr
    assert sorted(p.name for p in out.iterdir()) == sorted([*EXPORT_SET, "timing.cache"])
    assert (out / "timing.cache").read_bytes() == b"TensorRT timing cache"  # GPU-specific, kept across exports
    umask = os.umask(0)
    os.umask(umask)
    assert (out / "model.onnx").stat().st_mode & 0o777 == 0o666 & ~umask
    assert out.stat().st_mode & 0o777 == 0o777 & ~umask
    assert _hidden_leftovers(tmp_path) == []


def _coco(tiny_kitti: Path, folder: Path, categories: list[str]) -> Path:
    """A COCO JSON over the tiny validation images with the given categories and one box per image."""
    from PIL import Image

    ids = (tiny_kitti / "ImageSets" / "val.txt").read_text().split()
    images = []
    for number, image_id in enumerate(ids, start=1):
        width, height = Image.open(tiny_kitti / "image_2" / f"{image_id}.png").size
        images.append({"id": number, "file_name": f"{image_id}.png", "width": width, "height": height})
    annotations = [
        {"id": i["id"], "image_id": i["id"], "category_id": 1, "bbox": [10, 10, 30, 20], "area": 600, "iscrowd": 0}
        for i in images
    ]
    data = {
        "images": images,
        "annotations": annotations,
        "categories": [{"id": n, "name": name} for n, name in enumerate(categories, start=1)],
    }
    folder.mkdir()
    path = folder / "val.json"
    path.write_text(json.dumps(data))
    for image in images:
        os.link(tiny_kitti / "image_2" / image["file_name"], folder / image["file_name"])
    return path


def test_eval_on_coco_lacking_a_checkpoint_class_is_refused(tiny_checkpoint, tiny_kitti, tmp_path, capsys, monkeypatch):
    coco = _coco(tiny_kitti, tmp_path / "coco", ["Car", "Pedestrian"])
    outcome = run_edgekd(capsys, monkeypatch, "eval", tiny_checkpoint, "--data", coco, "--device", "cpu")
    assert_user_error(outcome, str(coco), "Cyclist", "Car, Pedestrian")


@pytest.mark.parametrize("command", ["eval", "bench"])
def test_model_classes_unlabelled_in_the_data_are_refused(
    command, tiny_export, tiny_kitti, tmp_path, capsys, monkeypatch
):
    """A model whose classes are KITTI types that the data never labels (Truck, Tram, Misc) is refused, naming
    the model's classes and the data's labelled ones (Car, Cyclist, Pedestrian, Van in the tiny val split)."""
    model = _copy_export(tiny_export, tmp_path / "export")
    _edit_metadata(model, _set(classes=["Truck", "Tram", "Misc"]))
    if command == "eval":
        args = ["eval", model, "--data", tiny_kitti]
    else:
        args = [*_bench(model), "--eval", "--data", tiny_kitti]
    outcome = run_edgekd(capsys, monkeypatch, *args)
    assert_user_error(
        outcome,
        str(model),
        "['Truck', 'Tram', 'Misc']",
        "['Car', 'Cyclist', 'Pedestrian', 'Van']",
        out=tmp_path / "export",
        before=files_under(tmp_path / "export"),
    )


def test_model_classes_foreign_to_kitti_are_refused(tiny_export, tiny_kitti, tmp_path, capsys, monkeypatch):
    model = _copy_export(tiny_export, tmp_path / "export")
    _edit_metadata(model, _set(classes=["car", "person", "bike"]))
    outcome = run_edgekd(capsys, monkeypatch, "eval", model, "--data", tiny_kitti)
    assert_user_error(outcome, "'car'", "not a KITTI type")


def test_eval_warns_about_a_model_class_the_split_does_not_label(tiny_export, tiny_kitti, capsys, monkeypatch):
    """The tiny train split labels Car and Cyclist but no Pedestrian: the evaluation runs and says so."""
    outcome = run_edgekd(
        capsys, monkeypatch, "eval", tiny_export / "model.onnx", "--data", tiny_kitti, "--split", "train"
    )
    assert outcome.code == 0, outcome.stderr
    warnings = [line for line in outcome.stderr.splitlines() if line.startswith("warning:")]
    assert len(warnings) == 1 and "no ground truth of Pedestrian" in warnings[0], outcome.stderr


EVAL_OPTIONS = {
    "--batch 0": lambda tmp: (["--batch", "0"], ["--batch 0"]),
    "--json under a file": lambda tmp: (["--json", tmp / "blocker" / "m.json"], ["--json", "under", "blocker"]),
    "--json a folder": lambda tmp: (["--json", tmp], ["--json", "is a folder"]),
}


@pytest.mark.parametrize("case", list(EVAL_OPTIONS))
def test_bad_eval_option_is_refused(case, tiny_export, tiny_kitti, tmp_path, capsys, monkeypatch):
    (tmp_path / "blocker").write_text("x")
    options, needles = EVAL_OPTIONS[case](tmp_path)
    outcome = run_edgekd(capsys, monkeypatch, "eval", tiny_export / "model.onnx", "--data", tiny_kitti, *options)
    assert_user_error(outcome, *needles, out=tmp_path, before=[tmp_path / "blocker"])


@pytest.fixture(scope="module")
def bench_json(tiny_export: Path, tmp_path_factory: pytest.TempPathFactory) -> dict:
    """A real bench JSON of the tiny export (2 timed calls, compute only)."""
    from typer.testing import CliRunner

    from edgekd.cli import app

    path = tmp_path_factory.mktemp("bench") / "tiny.bench.json"
    args = ["bench", str(tiny_export / "model.onnx"), "--iters", "2", "--warmup", "0", "--no-e2e", "--quiet"]
    result = CliRunner().invoke(app, [*args, "--json", str(path)])
    assert result.exit_code == 0, result.output
    return json.loads(path.read_text())


EVAL_RESULT = {
    "coco": {"AP": 1.0, "AP50": 2.0, "AP75": 0.5, "APs": None, "APm": 1.0, "APl": None},
    "kitti": {"Car": {"easy": 1.0, "moderate": 1.0, "hard": 1.0}},
    "kitti_r11": {"Car": {"easy": 1.0, "moderate": 1.0, "hard": 1.0}},
    "kitti_notes": [],
}


def _bench_edit(path: str, value: object):
    """Set the field at a dotted path (list indices as numbers) of a bench payload."""

    def edit(data: dict) -> None:
        keys = [int(k) if k.isdigit() else k for k in path.split(".")]
        target = data
        for key in keys[:-1]:
            target = target[key]
        target[keys[-1]] = value

    return edit


REPORT_CASES = {
    "eval JSON not JSON": ("m.eval.json", b"{oops", ["m.eval.json", "cannot read JSON"]),
    "eval JSON not UTF-8": ("m.eval.json", b'{"coco": {"AP": "\xe9"}}', ["m.eval.json"]),
    "eval AP as text": ("m.eval.json", {"coco": {"AP": "high"}}, ["m.eval.json", "'coco.AP'", "'high'"]),
    "eval KITTI AP as text": (
        "m.eval.json",
        {**EVAL_RESULT, "kitti": {"Car": {"moderate": "good"}}},
        ["m.eval.json", "'kitti.Car.moderate'"],
    ),
    "eval KITTI class not an object": ("m.eval.json", {**EVAL_RESULT, "kitti": {"Car": 3}}, ["'kitti.Car'"]),
    "eval notes not strings": ("m.eval.json", {**EVAL_RESULT, "kitti_notes": [1]}, ["'kitti_notes'"]),
    "eval without coco": ("m.eval.json", {"kitti": {}}, ["m.eval.json", "neither a bench JSON"]),
    "bench JSON not JSON": ("m.bench.json", b"[1, 2", ["m.bench.json", "cannot read JSON"]),
    "bench batch as text": ("m.bench.json", _bench_edit("records.0.batch", "a"), ["records[0]", "'batch'"]),
    "bench batch zero": ("m.bench.json", _bench_edit("records.0.batch", 0), ["records[0]", "'batch'"]),
    "bench p50 as text": (
        "m.bench.json",
        _bench_edit("records.0.phases.compute.p50_ms", "fast"),
        ["records[0]: phases.compute", "'p50_ms'"],
    ),
    "bench p50 negative": (
        "m.bench.json",
        _bench_edit("records.0.phases.compute.p50_ms", -1.0),
        ["phases.compute", "'p50_ms'"],
    ),
    "bench phase not an object": ("m.bench.json", _bench_edit("records.0.phases.compute", 3), ["phases.compute"]),
    "bench host a list": ("m.bench.json", _bench_edit("host", []), ["'host'"]),
    "bench created a number": ("m.bench.json", _bench_edit("created", 5), ["'created'"]),
    "bench records not a list": ("m.bench.json", _bench_edit("records", {}), ["'records'"]),
    "bench record a number": ("m.bench.json", _bench_edit("records.0", 7), ["records[0]", "object"]),
    "bench precision a number": ("m.bench.json", _bench_edit("records.0.precision", 32), ["'precision'"]),
    "bench warnings a string": ("m.bench.json", _bench_edit("records.0.warnings", "slow"), ["'warnings'"]),
    "bench accuracy malformed": (
        "m.bench.json",
        _bench_edit("records.0.accuracy", {"coco": {"AP": "x"}}),
        ["records[0]: accuracy", "'coco.AP'"],
    ),
    "bench GFLOPs as text": ("m.bench.json", _bench_edit("records.0.gflops", "many"), ["'gflops'"]),
    "bench wrong format": ("m.bench.json", _bench_edit("format", "edgekd-bench-v0"), ["not an edgekd bench JSON"]),
}


@pytest.mark.parametrize("case", list(REPORT_CASES))
def test_malformed_report_input_is_refused_naming_the_file(case, bench_json, tmp_path, capsys, monkeypatch):
    name, content, needles = REPORT_CASES[case]
    runs = tmp_path / "runs"
    runs.mkdir()
    (runs / "good.bench.json").write_text(json.dumps(bench_json))
    if callable(content):
        data = json.loads(json.dumps(bench_json))
        content(data)
        content = data
    (runs / name).write_bytes(content if isinstance(content, bytes) else json.dumps(content).encode())
    out = tmp_path / "report"
    outcome = run_edgekd(capsys, monkeypatch, "report", runs, "-o", out)
    assert_user_error(outcome, str(runs / name), *needles, out=out)


def test_report_into_a_file_is_refused(bench_json, tmp_path, capsys, monkeypatch):
    (tmp_path / "a.bench.json").write_text(json.dumps(bench_json))
    target = tmp_path / "report.md"
    target.write_text("mine")
    outcome = run_edgekd(capsys, monkeypatch, "report", tmp_path / "a.bench.json", "-o", target)
    assert_user_error(outcome, f"-o {target}", "is a file")
    assert target.read_text() == "mine"


def test_report_batch_zero_is_refused(bench_json, tmp_path, capsys, monkeypatch):
    (tmp_path / "a.bench.json").write_text(json.dumps(bench_json))
    out = tmp_path / "report"
    outcome = run_edgekd(capsys, monkeypatch, "report", tmp_path / "a.bench.json", "-o", out, "--batch", "0")
    assert_user_error(outcome, "--batch 0", out=out)


@pytest.mark.parametrize("where", ["folder", "under a file"])
def test_bench_json_target_is_checked_before_timing(where, tiny_export, tmp_path, capsys, monkeypatch):
    (tmp_path / "blocker").write_text("x")
    target = tmp_path if where == "folder" else tmp_path / "blocker" / "x.bench.json"
    outcome = run_edgekd(capsys, monkeypatch, *_bench(tiny_export / "model.onnx"), "--json", target)
    assert_user_error(outcome, f"--json {target}", out=tmp_path, before=[tmp_path / "blocker"])


@pytest.mark.parametrize("command", ["eval", "bench"])
def test_missing_exported_model_is_named(command, tiny_kitti, tmp_path, capsys, monkeypatch):
    model = tmp_path / "nowhere" / "model.onnx"
    args = ["eval", model, "--data", tiny_kitti] if command == "eval" else _bench(model)
    outcome = run_edgekd(capsys, monkeypatch, *args)
    assert_user_error(outcome, "not found", str(model))
