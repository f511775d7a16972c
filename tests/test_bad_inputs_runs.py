"""Bad inputs at recipes, checkpoints and training runs (`edgekd train` / `distill` / `eval` / `export`): each one
exit 2 with one line naming the file and key, the tensor, or the option, and nothing left in the output folder;
plus the run folder after faults: a stop right after last.pt, a full disk, and a real kill -9 of `edgekd distill`.
"""

from __future__ import annotations

import argparse
import collections
import csv
import errno
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import yaml
from typer.testing import CliRunner
from usererror import assert_user_error, files_under, run_edgekd

from edgekd.cli import app
from edgekd.errors import EdgeKDError
from edgekd.models.detector import DetectorConfig
from edgekd.models.zoo import build_detector
from edgekd.train.objective import DetectionObjective
from edgekd.train.trainer import Trainer, TrainOptions

REPO = Path(__file__).resolve().parents[1]
MODEL = "retinanet_mobilenet_v3_lite"
CLASSES = ("Car", "Pedestrian", "Cyclist")
GOOD_SCHEDULE = "schedule: {epochs: 1, batch: 4}\n"
GOOD_LOSSES = "losses: {fgfi: {}}\n"


@pytest.fixture(autouse=True)
def no_tensorboard(monkeypatch):
    """Runs in this process log no TensorBoard events (RUN_DIR/tb/, tested in test_tensorboard.py), so the run
    folders hold exactly the files these cases check."""
    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", None)


def _train(data, out, *extra):
    return ("train", MODEL, "--data", data, "-o", out, "--img-size", "160x64", "--epochs", "2", "--batch", "4",
            "--lr", "0.003", "--device", "cpu", "--quiet", *extra)  # fmt: skip


def _distill(teacher, recipe, data, out, *extra):
    return ("distill", "--teacher", teacher, "--student", MODEL, "--recipe", recipe, "--data", data, "-o", out,
            "--device", "cpu", "--quiet", *extra)  # fmt: skip


# ---------------------------------------------------------------------------------------------------- recipes

RECIPES = {
    "not-utf8": (b"name: caf\xe9\n" + (GOOD_LOSSES + GOOD_SCHEDULE).encode(), ["not UTF-8", "0xe9", "offset 9"]),
    "img-size-number": ("img_size: 640\n" + GOOD_LOSSES, ["img_size 640", "WIDTHxHEIGHT"]),
    "img-size-word": ("img_size: big\n" + GOOD_LOSSES, ["img_size 'big'", "WIDTHxHEIGHT"]),
    "img-size-not-32": ("img_size: 100x50\n" + GOOD_LOSSES, ["img_size '100x50'", "multiples of 32"]),
    "img-size-not-teachers": ("img_size: 640x192\n" + GOOD_LOSSES, ["img_size 640x192", "trained at 160x64"]),
    "batch-0": (GOOD_LOSSES + "schedule: {epochs: 1, batch: 0}\n", ["schedule.batch 0", "whole number >= 1"]),
    "batch-fraction": (GOOD_LOSSES + "schedule: {batch: 2.5}\n", ["schedule.batch 2.5", "whole number >= 1"]),
    "lr-negative": (GOOD_LOSSES + "schedule: {lr: -0.1}\n", ["schedule.lr -0.1", "finite number > 0"]),
    "lr-zero": (GOOD_LOSSES + "schedule: {lr: 0}\n", ["schedule.lr 0", "finite number > 0"]),
    "lr-nan": (GOOD_LOSSES + "schedule: {lr: .nan}\n", ["schedule.lr nan", "finite number > 0"]),
    "lr-text": (GOOD_LOSSES + "schedule: {lr: fast}\n", ["schedule.lr 'fast'", "finite number > 0"]),
    "weight-decay-negative": (GOOD_LOSSES + "schedule: {weight_decay: -1}\n", ["schedule.weight_decay -1", ">= 0"]),
    "warmup-negative": (GOOD_LOSSES + "schedule: {warmup_iters: -5}\n", ["schedule.warmup_iters -5", ">= 0"]),
    "epochs-0": (GOOD_LOSSES + "schedule: {epochs: 0}\n", ["schedule.epochs 0", "whole number >= 1"]),
    "epochs-fraction": (GOOD_LOSSES + "schedule: {epochs: 2.5}\n", ["schedule.epochs 2.5", "whole number >= 1"]),
    "epochs-bool": (GOOD_LOSSES + "schedule: {epochs: true}\n", ["schedule.epochs True", "whole number >= 1"]),
    "schedule-list": (GOOD_LOSSES + "schedule: [1, 2]\n", ["'schedule' must be a mapping"]),
    "loss-weight-text": ("losses: {fgfi: {weight: a}}\n", ["losses.fgfi", "'weight'", "'a'"]),
    "loss-weight-negative": ("losses: {fgfi: {weight: -1}}\n", ["losses.fgfi", "'weight'", ">= 0"]),
    "loss-options-list": ("losses: {fgfi: [1]}\n", ["options of loss 'fgfi' must be a mapping"]),
    "loss-unknown-option": ("losses: {ssim: {wieght: 1}}\n", ["losses.ssim", "unknown option 'wieght'"]),
    "inherit-text": (GOOD_LOSSES + "inherit: yes please\n", ["'inherit' must be true or false"]),
    "student-number": (GOOD_LOSSES + "student: 5\n", ["student 5", "must be a string"]),
    "not-a-mapping": ("- fgfi\n", ["a recipe must be a YAML mapping"]),
    "bad-yaml": ("losses: {fgfi: {\n", ["not valid YAML"]),
}


@pytest.mark.parametrize("case", RECIPES)
def test_bad_recipe_is_one_error_naming_the_file_and_key(
    case, tiny_kitti, tiny_checkpoint, tmp_path, capsys, monkeypatch
):
    content, needles = RECIPES[case]
    recipe = tmp_path / "recipe.yaml"
    if isinstance(content, bytes):
        recipe.write_bytes(content)
    else:
        recipe.write_text(content)
    out = tmp_path / "run"
    outcome = run_edgekd(capsys, monkeypatch, *_distill(tiny_checkpoint, recipe, tiny_kitti, out))
    assert_user_error(outcome, str(recipe), *needles, out=out)


@pytest.mark.parametrize(
    ("size", "needles"),
    [
        ("192x64", ["--img-size 192x64", "trained at 160x64", "leave out --img-size"]),
        ("big", ["--img-size 'big'", "WIDTHxHEIGHT"]),
    ],
)
def test_distill_img_size_other_than_the_teachers_is_refused(
    size, needles, tiny_kitti, tiny_checkpoint, tmp_path, capsys, monkeypatch
):
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(GOOD_LOSSES + GOOD_SCHEDULE)
    out = tmp_path / "run"
    outcome = run_edgekd(capsys, monkeypatch, *_distill(tiny_checkpoint, recipe, tiny_kitti, out, "--img-size", size))
    assert_user_error(outcome, *needles, out=out)


def test_options_that_cannot_train_are_refused_by_the_trainer(tiny_kitti, tmp_path):
    from edgekd.data.loader import load_dataset

    data = load_dataset(tiny_kitti, "train")
    detector = build_detector(DetectorConfig(MODEL, CLASSES, (64, 160)))
    for options, needle in [
        (TrainOptions(epochs=0), "epochs 0"),
        (TrainOptions(batch_size=0), "batch_size 0"),
        (TrainOptions(lr=-1.0), "lr -1.0"),
        (TrainOptions(weight_decay=float("nan")), "weight_decay nan"),
        (TrainOptions(warmup_iters=-1), "warmup_iters -1"),
    ]:
        with pytest.raises(EdgeKDError, match=needle):
            Trainer(DetectionObjective(detector), data, data, tmp_path / "never", options)
    assert not (tmp_path / "never").exists()


# ---------------------------------------------------------------------------------------------- checkpoints


class Payload:
    """A class torch would have to unpickle (and so run code) to load."""


class StateDict(collections.OrderedDict):
    """An OrderedDict subclass, as some training scripts save their weights."""


def _edited(payload: dict, case: str) -> dict | bytes:
    """The tiny checkpoint's payload after one edit a user (or another tool) might make."""
    config, model = payload["config"], dict(payload["model"])
    edits = {
        "unknown-model": lambda: {**payload, "config": {**config, "name": "retinanet_tiny"}},
        "other-model": lambda: {**payload, "config": {**config, "name": "fcos_mobilenet_v3_lite"}},
        "four-classes": lambda: {**payload, "config": {**config, "classes": [*CLASSES, "Van"]}},
        "no-classes": lambda: {**payload, "config": {**config, "classes": []}},
        "missing-config-key": lambda: {**payload, "config": {k: v for k, v in config.items() if k != "score_thresh"}},
        "extra-config-key": lambda: {**payload, "config": {**config, "dropout": 0.1}},
        "input-size-text": lambda: {**payload, "config": {**config, "input_size": "160x64"}},
        "input-size-not-32": lambda: {**payload, "config": {**config, "input_size": [60, 160]}},
        "config-not-mapping": lambda: {**payload, "config": ["retinanet"]},
        "no-model": lambda: {k: v for k, v in payload.items() if k != "model"},
        "missing-weight": lambda: {
            **payload,
            "model": {k: v for k, v in model.items() if k != "backbone.fpn.layer_blocks.0.0.weight"},
        },  # noqa: E501
        "extra-weight": lambda: {**payload, "model": {**model, "adapter.weight": torch.zeros(3)}},
        "transposed-weight": lambda: {
            **payload,
            "model": {**model, "backbone.body.0.0.weight": model["backbone.body.0.0.weight"].transpose(0, 1)},
        },  # noqa: E501
        "weight-not-tensor": lambda: {**payload, "model": {**model, "backbone.body.0.0.weight": "zeros"}},
        "no-format-tag": lambda: {k: v for k, v in payload.items() if k != "format"},
        "pickled-namespace": lambda: {**payload, "args": argparse.Namespace(lr=0.1)},
        "pickled-class": lambda: {**payload, "extra": Payload()},
        "pickled-ordereddict-subclass": lambda: {**payload, "model": StateDict(model)},
    }
    return edits[case]()


# file -> needles; conv 0 of the MobileNetV3 stem is (16, 3, 3, 3); RetinaNet has 9 anchors per cell, so the class
# logits conv has 9 * 3 = 27 output channels for three classes and 36 for four.
CHECKPOINTS = {
    "unknown-model": ["config.name 'retinanet_tiny' is not a zoo model"],
    "other-model": ["weights lack", "of fcos_mobilenet_v3_lite", "head_module.classification_head.conv.0.weight"],
    "four-classes": [
        "weight 'head_module.classification_head.cls_logits.weight'",
        "(27, 64, 3, 3) in the file",
        "with 4 classes at 160x64 expects (36, 64, 3, 3)",
    ],
    "no-classes": ["config.classes []", "non-empty list"],
    "missing-config-key": ["config lacks key(s) score_thresh"],
    "extra-config-key": ["config has unknown key(s) dropout"],
    "input-size-text": ["config.input_size '160x64'", "two positive whole numbers"],
    "input-size-not-32": ["config.input_size [60, 160]", "multiples of 32"],
    "config-not-mapping": ["config must be a mapping"],
    "no-model": ["checkpoint lacks 'model'"],
    "missing-weight": ["weights lack 1 tensor(s)", "backbone.fpn.layer_blocks.0.0.weight"],
    "extra-weight": ["weights hold 1 tensor(s)", "does not have: adapter.weight"],
    "transposed-weight": ["weight 'backbone.body.0.0.weight' has shape (3, 16, 3, 3) in the file", "(16, 3, 3, 3)"],
    "weight-not-tensor": ["weight 'backbone.body.0.0.weight' is a str, not a tensor"],
    "no-format-tag": ["is not an edgekd checkpoint"],
    "pickled-namespace": ["not a plain edgekd checkpoint", "argparse.Namespace", "may be unsafe"],
    "pickled-class": ["not a plain edgekd checkpoint", "Payload", "may be unsafe"],
    "pickled-ordereddict-subclass": ["not a plain edgekd checkpoint", "StateDict", "may be unsafe"],
    "text-file": ["cannot read checkpoint", "not a PyTorch checkpoint file"],
    "truncated": ["cannot read checkpoint"],
}


# one intra-op thread as in the killed subprocess (OMP_NUM_THREADS=1): resumed weights compare bit for bit
pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def bad_checkpoints(tiny_checkpoint, tmp_path_factory) -> dict[str, Path]:
    """One file per CHECKPOINTS case."""
    folder = tmp_path_factory.mktemp("bad_checkpoints")
    payload = torch.load(tiny_checkpoint, weights_only=True)
    paths = {}
    for case in CHECKPOINTS:
        path = paths[case] = folder / f"{case}.pt"
        if case == "text-file":
            path.write_text("this is not a checkpoint\n")
        elif case == "truncated":
            data = tiny_checkpoint.read_bytes()
            path.write_bytes(data[: len(data) // 2])
        else:
            torch.save(_edited(payload, case), path)
    return paths


def _command(name: str, checkpoint: Path, data: Path, out: Path, recipe: Path) -> tuple:
    if name == "eval":
        return ("eval", checkpoint, "--data", data, "--device", "cpu", "--json", out / "metrics.json")
    if name == "export":
        return ("export", checkpoint, "-o", out, "--quiet")
    return _distill(checkpoint, recipe, data, out)


@pytest.mark.parametrize("command", ["eval", "export", "distill"])
@pytest.mark.parametrize("case", CHECKPOINTS)
def test_checkpoint_that_does_not_fit_is_one_error(
    case, command, bad_checkpoints, tiny_kitti, tmp_path, capsys, monkeypatch
):
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(GOOD_LOSSES + GOOD_SCHEDULE)
    out = tmp_path / "out"
    checkpoint = bad_checkpoints[case]
    outcome = run_edgekd(capsys, monkeypatch, *_command(command, checkpoint, tiny_kitti, out, recipe))
    message = assert_user_error(outcome, *CHECKPOINTS[case], out=out)
    assert "weights_only" not in message  # never advise turning the safety check off
    if case not in ("text-file", "truncated"):
        assert str(checkpoint) in message


# ------------------------------------------------------------------------------------------------ run folders


@pytest.fixture(scope="module")
def runs(tiny_kitti, tmp_path_factory) -> dict[str, Path]:
    """A private copy of the tiny data set and a finished 2-epoch training run on it (`straight`)."""
    root = tmp_path_factory.mktemp("runs")
    data = root / "data"
    shutil.copytree(tiny_kitti, data)
    straight = root / "straight"
    _run_ok(*_train(data, straight))
    return {"data": data, "straight": straight}


def _run_ok(*args: object) -> None:
    result = CliRunner().invoke(app, [str(a) for a in args])
    assert result.exit_code == 0, result.output


def _copy_run(runs: dict, tmp_path: Path) -> Path:
    run = tmp_path / "run"
    shutil.copytree(runs["straight"], run)
    return run


@pytest.mark.parametrize(
    ("change", "needles"),
    [
        (("--img-size", "192x64"), ["input size: 160x64 then, 192x64 now"]),
        (("--train-split", "trainval"), ["training data split: train then, trainval now", "images: 12 then, 18 now"]),
        (("--val-split", "train"), ["validation data split: val then, train now"]),
        (("--lr", "0.01"), ["schedule: epochs 2, batch 4, lr 0.003", "lr 0.01"]),
        (("--seed", "5"), ["seed 0", "seed 5"]),
    ],
)
def test_train_resume_refuses_a_changed_run(change, needles, runs, tmp_path, capsys, monkeypatch):
    run = _copy_run(runs, tmp_path)
    before = files_under(run)
    args = list(_train(runs["data"], run, "--resume"))
    if change[0] in args:
        args[args.index(change[0]) + 1] = change[1]
    else:
        args += change
    outcome = run_edgekd(capsys, monkeypatch, *args)
    assert_user_error(outcome, f"--resume: {run / 'last.pt'}", *needles, "--force", out=run, before=before)


def test_train_resume_refuses_changed_labels(runs, tmp_path, capsys, monkeypatch):
    run = _copy_run(runs, tmp_path)
    label = runs["data"] / "label_2" / "000000.txt"
    original = label.read_text()
    assert "Car" in original
    label.write_text(original.replace("Car", "Cyclist", 1))
    before = files_under(run)
    try:
        outcome = run_edgekd(capsys, monkeypatch, *_train(runs["data"], run, "--resume"))
    finally:
        label.write_text(original)
    assert_user_error(outcome, "training data: the image list or labels changed", out=run, before=before)


def test_train_resume_with_force_warns_and_continues(runs, tmp_path, capsys, monkeypatch):
    run = _copy_run(runs, tmp_path)
    args = [str(a) for a in _train(runs["data"], run, "--resume", "--force", "--train-split", "trainval")]
    args.remove("--quiet")
    outcome = run_edgekd(capsys, monkeypatch, *args)
    assert outcome.code == 0, outcome.stderr
    text = " ".join(outcome.stdout.split())
    assert "warning: --force: resuming although the training data split: train then, trainval now" in text
    assert f"best checkpoint: {run / 'best.pt'}" in text


@pytest.mark.parametrize(
    ("setup", "extra", "needles"),
    [
        ("none", ("--resume",), ["--resume: {out}/last.pt does not exist"]),
        ("none", ("--force",), ["--force only applies with --resume"]),
        ("best-as-last", ("--resume",), ["{out}/last.pt cannot be resumed: it lacks epoch, objective, optimizer"]),
        ("earlier-run", (), ["{out} already holds a run (last.pt)", "--resume"]),
        ("file", (), ["-o {out}: is a file; give a folder"]),
        ("under-file", (), ["-o {out}: is under", "which is a file"]),
        ("file", ("--resume",), ["-o {out}: is a file; give a folder"]),
    ],
)
def test_train_output_folder_problems(setup, extra, needles, runs, tiny_checkpoint, tmp_path, capsys, monkeypatch):
    out = tmp_path / "run"
    if setup == "best-as-last":
        out.mkdir()
        shutil.copy(tiny_checkpoint, out / "last.pt")
    elif setup == "earlier-run":
        out.mkdir()
        (out / "last.pt").write_bytes(b"earlier run")
    elif setup == "file":
        out.write_text("a file")
    elif setup == "under-file":
        (tmp_path / "file").write_text("a file")
        out = tmp_path / "file" / "run"
    before = files_under(out)
    outcome = run_edgekd(capsys, monkeypatch, *_train(runs["data"], out, *extra))
    assert_user_error(outcome, *(needle.format(out=out) for needle in needles), out=out, before=before)


def test_unwritable_output_folder(runs, tmp_path, capsys, monkeypatch):
    out = tmp_path / "readonly"
    out.mkdir()
    real_access = os.access
    denied = lambda path, mode: Path(path) == out and bool(mode & os.W_OK)  # noqa: E731  (root ignores chmod)
    monkeypatch.setattr(os, "access", lambda path, mode: not denied(path, mode) and real_access(path, mode))
    outcome = run_edgekd(capsys, monkeypatch, *_train(runs["data"], out))
    assert_user_error(outcome, f"-o {out}: the folder is not writable", out=out)


def _full_disk(*args, **kwargs):
    raise OSError(errno.ENOSPC, "No space left on device")


@pytest.mark.parametrize("target", ["torch.save", "os.replace"])
def test_full_disk_while_writing_a_checkpoint(target, runs, tmp_path, capsys, monkeypatch):
    out = tmp_path / "run"
    module, name = target.split(".")
    monkeypatch.setattr({"torch": torch, "os": os}[module], name, _full_disk)
    args = list(_train(runs["data"], out))
    args[args.index("--epochs") + 1] = "1"
    outcome = run_edgekd(capsys, monkeypatch, *args)
    assert_user_error(outcome, f"cannot write {out / 'best.pt'}: no space left on the device", out=out)


def test_full_disk_while_plotting_leaves_no_temporary(runs, tmp_path, capsys, monkeypatch):
    import matplotlib.figure

    out = tmp_path / "run"
    monkeypatch.setattr(matplotlib.figure.Figure, "savefig", _full_disk)
    args = list(_train(runs["data"], out))
    args[args.index("--epochs") + 1] = "1"
    outcome = run_edgekd(capsys, monkeypatch, *args)
    assert_user_error(outcome, f"cannot write {out / 'metrics.png'}: no space left on the device")
    assert sorted(p.name for p in files_under(out)) == ["best.pt", "last.pt", "metrics.csv"]


# ------------------------------------------------------------------------------- stops between two writes


def _same_weights(expected: Path, actual: Path) -> None:
    want, got = torch.load(expected, weights_only=True), torch.load(actual, weights_only=True)
    assert want["epoch"] == got["epoch"]
    assert want["model"].keys() == got["model"].keys()
    for key in want["model"]:
        assert torch.equal(want["model"][key], got["model"][key]), key


def _metric_rows(run: Path) -> list[tuple[str, str, str]]:
    return [(row["epoch"], row["loss"], row["AP"]) for row in csv.DictReader((run / "metrics.csv").open())]


def _stop_after_first_last_pt(monkeypatch):
    """Make the trainer stop (as Ctrl-C would) right after last.pt of epoch 1 is on disk."""
    from edgekd.train import trainer as trainer_module

    original = trainer_module.atomic_torch_save

    def save_then_stop(obj, path):
        original(obj, path)
        if Path(path).name == "last.pt" and obj["epoch"] == 0:
            raise KeyboardInterrupt

    monkeypatch.setattr(trainer_module, "atomic_torch_save", save_then_stop)


@pytest.mark.parametrize("lose_best", [False, True])
def test_stop_right_after_last_pt_then_resume_restores_every_file(lose_best, runs, tmp_path, capsys, monkeypatch):
    """`lose_best`: best.pt of epoch 1 is missing too, as an older edgekd (last.pt written first) left it;
    the resumed run must end with exactly the uninterrupted run's files, best.pt of the best epoch included."""
    run = tmp_path / "run"
    with monkeypatch.context() as patch:
        _stop_after_first_last_pt(patch)
        outcome = run_edgekd(capsys, patch, *_train(runs["data"], run))
    assert outcome.code == 130  # stopped as by Ctrl-C
    assert torch.load(run / "last.pt", weights_only=True)["epoch"] == 0
    assert not (run / "metrics.csv").exists()
    if lose_best:
        (run / "best.pt").unlink()
    (run / ".metrics.png.k9x2.tmp").write_bytes(b"half a plot")  # what a kill -9 inside atomic_output leaves
    outcome = run_edgekd(capsys, monkeypatch, *_train(runs["data"], run, "--resume"))
    assert outcome.code == 0, outcome.stderr
    straight = runs["straight"]
    run_files = [p for p in files_under(run) if p.parent.name != "tb"]  # the killed process's TensorBoard log
    assert sorted(p.name for p in run_files) == ["best.pt", "last.pt", "metrics.csv", "metrics.png"]
    _same_weights(straight / "best.pt", run / "best.pt")
    _same_weights(straight / "last.pt", run / "last.pt")
    assert _metric_rows(run) == _metric_rows(straight)
    assert f"best checkpoint: {run / 'best.pt'}" in outcome.stdout


def test_lost_best_pt_that_cannot_be_rebuilt_is_refused_unless_forced(runs, tmp_path, capsys, monkeypatch):
    run = _copy_run(runs, tmp_path)
    (run / "best.pt").unlink()
    last = torch.load(run / "last.pt", weights_only=True)
    last["best_epoch"] = 0  # best.pt held epoch 1; last.pt holds epoch 2: its weights are not the best's
    torch.save(last, run / "last.pt")
    before = files_under(run)
    outcome = run_edgekd(capsys, monkeypatch, *_train(runs["data"], run, "--resume"))
    assert_user_error(outcome, f"{run / 'best.pt'} (the best epoch, 1) is missing", "--force", out=run, before=before)
    outcome = run_edgekd(capsys, monkeypatch, *_train(runs["data"], run, "--resume", "--force"))
    assert outcome.code == 0
    assert not (run / "best.pt").exists()
    assert "no best checkpoint" in outcome.stdout and "best.pt was not written" in outcome.stdout


# ------------------------------------------------------------------------------------------------- distill


@pytest.fixture(scope="module")
def distilled(runs, tiny_checkpoint, tmp_path_factory) -> dict[str, Path]:
    """A 2-epoch recipe and its uninterrupted distillation run (`straight`) on the private data copy."""
    root = tmp_path_factory.mktemp("distilled")
    recipe = root / "recipe.yaml"
    recipe.write_text(yaml.safe_dump({"losses": {"fgfi": {}, "ssim": {}}, "schedule": {"epochs": 2, "batch": 4}}))
    straight = root / "straight"
    _run_ok(*_distill(tiny_checkpoint, recipe, runs["data"], straight))
    return {"recipe": recipe, "straight": straight, "data": runs["data"], "teacher": tiny_checkpoint}


def test_distill_resume_refuses_changed_data_recipe_or_teacher(distilled, tmp_path, capsys, monkeypatch):
    run = tmp_path / "run"
    shutil.copytree(distilled["straight"], run)
    before = files_under(run)
    teacher, recipe, data = distilled["teacher"], distilled["recipe"], distilled["data"]
    other_teacher = tmp_path / "teacher.pt"
    shutil.copy(teacher, other_teacher)
    other_recipe = tmp_path / "other.yaml"
    other_recipe.write_text(yaml.safe_dump({"losses": {"fgfi": {}}, "schedule": {"epochs": 2, "batch": 4}}))
    cases = [
        (_distill(teacher, recipe, data, run, "--resume", "--train-split", "trainval"), "split: train then, trainval"),
        (_distill(other_teacher, recipe, data, run, "--resume"), f"then, {other_teacher.resolve()} now"),
        (_distill(teacher, other_recipe, data, run, "--resume"), "kd losses:"),
        (_distill(teacher, recipe, data, run, "--resume", "--batch", "2"), "batch 4, lr"),
    ]
    for args, needle in cases:
        outcome = run_edgekd(capsys, monkeypatch, *args)
        assert_user_error(outcome, "--resume:", "was written for another run", needle, out=run, before=before)


def test_distill_output_is_a_file(distilled, tmp_path, capsys, monkeypatch):
    out = tmp_path / "out"
    out.write_text("a file")
    outcome = run_edgekd(
        capsys, monkeypatch, *_distill(distilled["teacher"], distilled["recipe"], distilled["data"], out)
    )
    assert_user_error(outcome, f"-o {out}: is a file", out=out, before=[out])


def test_distill_survives_kill_9_and_resumes_exactly(distilled, tmp_path, capsys, monkeypatch):
    """A real SIGKILL of `edgekd distill` once last.pt of epoch 1 is on disk (so in epoch 2, or while the epoch-1
    metrics are written); `--resume` then ends with the uninterrupted run's files and weights."""
    run = tmp_path / "run"
    args = [str(a) for a in _distill(distilled["teacher"], distilled["recipe"], distilled["data"], run)]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
    process = subprocess.Popen([sys.executable, "-m", "edgekd", *args], env=env, cwd=tmp_path)
    deadline = time.monotonic() + 120
    try:
        while not (run / "last.pt").exists():
            assert process.poll() is None, f"distill ended with {process.returncode} before writing last.pt"
            assert time.monotonic() < deadline, "no last.pt after 120 s"
            time.sleep(0.02)
        process.send_signal(signal.SIGKILL)
    finally:
        process.kill()
        process.wait()
    assert process.returncode == -signal.SIGKILL
    assert torch.load(run / "last.pt", weights_only=True)["epoch"] == 0, "killed too late: epoch 2 had finished"
    outcome = run_edgekd(capsys, monkeypatch, *args, "--resume")
    assert outcome.code == 0, outcome.stderr
    straight = distilled["straight"]
    run_files = [p for p in files_under(run) if p.parent.name != "tb"]  # the killed process's TensorBoard log
    assert sorted(p.name for p in run_files) == ["best.pt", "last.pt", "metrics.csv", "metrics.png"]
    _same_weights(straight / "best.pt", run / "best.pt")
    _same_weights(straight / "last.pt", run / "last.pt")
    expected = torch.load(straight / "last.pt", weights_only=True)["objective"]["losses"]
    actual = torch.load(run / "last.pt", weights_only=True)["objective"]["losses"]
    for key in expected:
        assert torch.equal(expected[key], actual[key]), key
    assert _metric_rows(run) == _metric_rows(straight)
