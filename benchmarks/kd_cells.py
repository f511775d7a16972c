"""Presets and cached cells shared by baselines.py and kd_table.py.

A cell is one training run (a teacher, or a student with or without KD for one seed). It runs in
benchmarks/cache/cells/<role>-<hash>/ (git-ignored: checkpoints) named by the hash of everything that decides
its result (data, input size, schedule, model, recipe losses, seed, teacher cell), so scripts that share a
configuration share the run, and an interrupted script resumes where it stopped. The evaluation of a finished
cell is kept in benchmarks/results/cells/<role>-<hash>.json, which is committed: a table can be completed over
several sessions or machines (`kd_table.py --available` writes it from the stored cells alone).
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import json
import os
import platform
from dataclasses import dataclass, field, replace
from pathlib import Path

import torch
from common import CACHE, RESULTS, commit
from rich.console import Console

from edgekd.atomic import atomic_write_text
from edgekd.data.loader import load_dataset
from edgekd.data.records import Dataset
from edgekd.data.synth_config import SynthConfig
from edgekd.distill.losses import LOSSES
from edgekd.distill.recipe import Recipe, load_recipe
from edgekd.pipeline import checkpoint_row, distill_cached, ensure_synthetic, finished_run, train_cached
from edgekd.train.trainer import TrainOptions

RECIPES = Path(__file__).resolve().parent.parent / "recipes"
ABLATION_RECIPES = Path(__file__).resolve().parent / "recipes"


@dataclass(frozen=True)
class Preset:
    """Data, input size, schedules and model pairs of one benchmark scale."""

    image_size: tuple[int, int]  # rendered (width, height)
    input_size: tuple[int, int]  # network (height, width)
    n_train: int
    n_val: int
    near_range: bool  # objects labelled to 30 m only (SynthConfig.near_range)
    teacher_epochs: int
    student_epochs: int
    batch: int
    lr: float
    warmup_iters: tuple[int, int]  # (teacher, student) warm-up iterations
    device: str
    pairs: dict[str, tuple[str, str]] = field(default_factory=dict)  # pair name -> (teacher, student)
    n_test: int = 0  # held-out test images: when set, tables report them and val serves model selection only
    data_seed: int = 0  # synthetic scenes' generator seed (scene i of seed s depends only on (s, i))

    def data_key(self) -> dict:
        key = {k: getattr(self, k) for k in ("image_size", "input_size", "n_train", "n_val", "near_range")}
        if self.n_test:  # only when set, so the cells of the presets without a test split keep their hashes
            key["n_test"] = self.n_test
        if self.data_seed:  # likewise
            key["data_seed"] = self.data_seed
        return key

    @property
    def report_split(self) -> str:
        """The split tables report: the held-out test split where the preset has one, else val."""
        return "test" if self.n_test else "val"


LITE_PAIRS = {  # CPU-sized pairs: width-reduced ResNet-18 teachers stand in for ResNet-50
    "one-stage": ("retinanet_resnet18_lite", "retinanet_mobilenet_v3_lite"),
    "two-stage": ("fasterrcnn_resnet18_lite", "fasterrcnn_mobilenet_v3_lite"),
    "one-stage-gfl": ("gfl_resnet18_lite", "gfl_mobilenet_v3_lite"),
}
WIDE_TEACHER_PAIRS = {  # a full-width (256-channel neck and head) ResNet-18 teacher for the lite student: 12x its FLOPs
    "one-stage-gfl-wide": ("gfl_resnet18", "gfl_mobilenet_v3_lite"),
}
SMALL_STUDENT_PAIRS = {  # the lite teacher for a MobileNetV3-Small student: half the two-stage student's parameters
    "two-stage-small": ("fasterrcnn_resnet18_lite", "fasterrcnn_mobilenet_v3_small_lite"),
}
PRESETS = {
    # 2-core CPU, the whole one-stage table with 3 seeds in under 2 hours: near-range scenes (objects labelled to
    # 30 m) keep boxes learnable at 416x128; the width-reduced ResNet-18 RetinaNet stands in for ResNet-50 (the
    # full-width ResNet-18 trains at about 1 image/s here). Teacher on a longer schedule than the students, as in
    # the KD papers.
    "cpu": Preset(
        (1242, 375), (128, 416), 480, 150, True, 10, 2, 8, 3e-3, (100, 20), "cpu",
        LITE_PAIRS,
    ),
    # One H100-class GPU, the recipes' 640x192 input and the pairs of the KD issue.
    "gpu": Preset(
        (1242, 375), (192, 640), 1000, 300, False, 12, 6, 16, 2e-3, (200, 60), "cuda",
        {"one-stage": ("retinanet_resnet50", "retinanet_mobilenet_v3"),
         "two-stage": ("fasterrcnn_resnet50", "fasterrcnn_mobilenet_v3")},
    ),
    # One GPU, students trained to convergence (docs/kd-at-convergence.md): the gpu preset's input and ResNet-50
    # teachers, a held-out test split of scenes of generator seed 1, and one long schedule for teacher and students
    # (2,250 iterations: the CPU sizing runs plateaued after about 1,800). benchmarks/gpu_campaign.sh trains the
    # teachers and no-KD students first, so the first GPU run measures whether this schedule has converged.
    "gpu-conv": Preset(
        (1242, 375), (192, 640), 1000, 300, False, 36, 36, 16, 2e-3, (200, 200), "cuda",
        {"one-stage": ("retinanet_resnet50", "retinanet_mobilenet_v3"),
         "two-stage": ("fasterrcnn_resnet50", "fasterrcnn_mobilenet_v3"),
         "one-stage-gfl": ("gfl_resnet50", "gfl_mobilenet_v3")},
        n_test=500, data_seed=1,
    ),
    # 2-core CPU, students trained to convergence (docs/kd-at-convergence.md): the cpu preset's scenes and input,
    # half its training images, a held-out test split, and the same long schedule for teacher and students.
    "cpu-conv": Preset(
        (1242, 375), (128, 416), 240, 100, True, 24, 24, 8, 3e-3, (50, 50), "cpu",
        LITE_PAIRS, n_test=200,
    ),
    # Sizing runs for cpu-conv (docs/kd-at-convergence.md): how long teacher and student take to plateau, and the gap
    # they keep, with half cpu-conv's training images on a doubled and a 6.7x longer schedule.
    # Scenes of generator seed 1: none is an image of the cpu preset, on whose validation split the combined recipes
    # were chosen.
    "sizing-120": Preset(
        (1242, 375), (128, 416), 120, 100, True, 48, 48, 8, 3e-3, (50, 50), "cpu",
        {**LITE_PAIRS, **WIDE_TEACHER_PAIRS}, n_test=200, data_seed=1,
    ),
    "sizing-120-long": Preset(
        (1242, 375), (128, 416), 120, 100, True, 160, 160, 8, 3e-3, (50, 50), "cpu",
        {**LITE_PAIRS, **WIDE_TEACHER_PAIRS, **SMALL_STUDENT_PAIRS}, n_test=200, data_seed=1,
    ),
    # Seconds-long runs that exercise the scripts end to end (tests, first check on a new machine).
    "smoke": Preset(
        (310, 94), (64, 192), 8, 4, True, 1, 1, 4, 2e-3, (2, 2), "cpu",
        LITE_PAIRS, n_test=4,
    ),
    # Full KITTI resolution on one GPU, for the teacher/student baselines.
    "gpu-full": Preset(
        (1242, 375), (384, 1248), 1000, 300, False, 12, 6, 16, 2e-3, (200, 60), "cuda",
        {"one-stage": ("retinanet_resnet50", "retinanet_mobilenet_v3_lite")},
    ),
}  # fmt: skip


@dataclass(frozen=True)
class ValChoice:
    """A row whose recipe is chosen on the validation split: the losses of the `top` SINGLE_ROWS with the best mean
    best-epoch validation AP over CHOICE_SEEDS seeds, merged (each with its own recipe's options, its `weight`
    times `weight_scale`)."""

    top: int
    weight_scale: float = 1.0


SINGLE_ROWS = ("fgfi", "ssim", "gkd+bmfi", "global", "fitnet", "logits")
CHOICE_SEEDS = 3  # seeds each single row needs stored before a ValChoice row can be trained
COMBINED_ON_VAL = ValChoice(3)  # `combined` on presets with a held-out test split
# The same three with each weight divided by three: each single recipe's weight sizes its KD loss to about the
# detection loss, so the plain sum triples KD's share; this candidate keeps the total at one recipe's. Which of the
# two goes in the README's `combined` is decided on validation AP (docs/kd/README.md section 6).
COMBINED_THIRD_WEIGHTS = ValChoice(3, weight_scale=1 / 3)

ROWS: dict[str, Path | dict[str, Path] | ValChoice | None] = {  # row name -> its recipe(s); None: no KD
    "no KD": None,
    "fgfi": RECIPES / "fgfi.yaml",
    "ssim": RECIPES / "ssim.yaml",
    "gkd+bmfi": RECIPES / "gkd_bmfi.yaml",
    "global": RECIPES / "global.yaml",
    "fitnet": RECIPES / "fitnet.yaml",
    "logits": RECIPES / "logits.yaml",
    "best single": ValChoice(1),
    "combined (weights / 3)": COMBINED_THIRD_WEIGHTS,
    "combined": {  # each pair's best single methods on the CPU preset (presets with a test split: COMBINED_ON_VAL)
        "one-stage": RECIPES / "combined.yaml",  # fgfi + ssim + logits
        "two-stage": RECIPES / "fasterrcnn_combined.yaml",  # global + gkd + bmfi
        "one-stage-gfl": RECIPES / "combined.yaml",  # the one-stage combination
    },
    # ablation rows, only when asked for (kd_table.py --methods ... --tag ...)
    "fgfi (raw scale)": ABLATION_RECIPES / "fgfi_raw_scale.yaml",
    "fgfi+ssim+logits": RECIPES / "combined.yaml",  # the one-stage combination, on the two-stage pair
    "inherit only": ABLATION_RECIPES / "inherit_only.yaml",
}
DEFAULT_ROWS = ("no KD", "fgfi", "ssim", "gkd+bmfi", "global", "fitnet", "logits", "combined")
INHERIT = " (inherit)"  # any KD row + this suffix: the same recipe with the student's neck and head from the teacher
KNOWN_ROWS = [*ROWS, *(f"{name}{INHERIT}" for name, recipe in ROWS.items() if recipe and name != "inherit only")]


def parse_rows(parser: argparse.ArgumentParser, preset_name: str, pairs: str, methods: str) -> tuple[list, list]:
    """The --pairs and --methods comma lists of a table script, each name checked (parser.error names the culprit)."""
    preset = PRESETS[preset_name]
    pair_names = [p.strip() for p in pairs.split(",")]
    method_names = [m.strip() for m in methods.split(",")]
    for name in pair_names:
        if name not in preset.pairs:
            parser.error(f"--pairs: the {preset_name} preset has no pair '{name}' (it has {', '.join(preset.pairs)})")
    for name in method_names:
        if name not in KNOWN_ROWS:
            parser.error(f"--methods: unknown method '{name}' (known: {', '.join(KNOWN_ROWS)})")
    return pair_names, method_names


def row_choice(method: str, pair: str, preset_name: str) -> Path | ValChoice | None:
    """What decides a row's recipe on a preset (an inheriting row: its base row's): a recipe file, a choice on the
    validation split, or None for no KD."""
    row = ROWS[method.removesuffix(INHERIT)]
    if isinstance(row, dict):
        return COMBINED_ON_VAL if PRESETS[preset_name].n_test else row[pair]
    return row


def val_ranking(preset_name: str, pair: str) -> list[tuple[str, float]] | None:
    """SINGLE_ROWS of a pair by mean best-epoch validation AP over CHOICE_SEEDS seeds, best first; None until every
    one of them has its seeds stored."""
    ranking = []
    for method in SINGLE_ROWS:
        rows = [cached_result(Cell(preset_name, pair, "student", method, seed)) for seed in range(CHOICE_SEEDS)]
        if any(row is None or not row.get("ap_per_epoch") for row in rows):
            return None
        ranking.append((method, sum(max(row["ap_per_epoch"]) for row in rows) / len(rows)))
    return sorted(ranking, key=lambda entry: -entry[1])


def chosen_rows(choice: ValChoice, pair: str, preset_name: str) -> list[str] | None:
    """The single rows a ValChoice merges on a preset, or None while the validation ranking is incomplete."""
    ranking = val_ranking(preset_name, pair)
    return None if ranking is None else [method for method, _ in ranking[: choice.top]]


def row_recipe(method: str, pair: str, preset_name: str) -> Recipe | None:
    """The recipe a row trains with, inheriting when the row name ends in INHERIT; None for no KD. Raises
    ChoiceNotReady for a row chosen on the validation split whose single rows are not all stored yet."""
    choice = row_choice(method, pair, preset_name)
    if choice is None:
        return None
    if isinstance(choice, ValChoice):
        names = chosen_rows(choice, pair, preset_name)
        if names is None:
            raise ChoiceNotReady(f"{method}: chosen on validation AP once {', '.join(SINGLE_ROWS)} have "
                                 f"{CHOICE_SEEDS} seeds each")  # fmt: skip
        recipes = [row_recipe(name, pair, preset_name) for name in names]
        losses = {
            name: {
                **options,
                "weight": choice.weight_scale * options.get("weight", LOSSES[name].options["weight"].default),
            }
            if choice.weight_scale != 1.0
            else options
            for recipe in recipes
            for name, options in recipe.losses.items()
        }
        recipe = replace(recipes[0], path=" + ".join(names), name=method.removesuffix(INHERIT), losses=losses)
    else:
        recipe = load_recipe(choice)
    return replace(recipe, inherit=True) if method.endswith(INHERIT) else recipe


class ChoiceNotReady(Exception):
    """A row chosen on the validation split cannot be built yet: the single rows it is chosen from are missing."""


@dataclass(frozen=True)
class Cell:
    """One run: the teacher of a pair (method None, role teacher) or a student of a method and seed."""

    preset_name: str
    pair: str
    role: str  # teacher | student
    method: str | None = None
    seed: int = 0

    @property
    def preset(self) -> Preset:
        return PRESETS[self.preset_name]

    @property
    def model(self) -> str:
        teacher, student = self.preset.pairs[self.pair]
        return teacher if self.role == "teacher" else student

    def config(self) -> dict:
        options = self.options()
        config = {
            "data": self.preset.data_key(),
            "model": self.model,
            "schedule": [options.epochs, options.batch_size, options.lr, options.warmup_iters],
            "seed": self.seed,
            "device": options.device,
        }
        recipe = self.recipe()
        if recipe is not None:
            config["losses"] = recipe.losses
            config["teacher"] = self.teacher().directory().name
            if recipe.inherit:  # only when set, so the hashes of the other cells stay as they were
                config["inherit"] = True
            revisions = {name: LOSSES[name].revision for name in recipe.losses if LOSSES[name].revision != 1}
            if revisions:  # a loss fixed since its cells were stored hashes to new cells (revision 1: unchanged)
                config["loss_revisions"] = revisions
        return json.loads(json.dumps(config))

    def directory(self) -> Path:
        digest = hashlib.sha256(json.dumps(self.config(), sort_keys=True).encode()).hexdigest()[:16]
        return CACHE / "cells" / f"{self.role}-{digest}"

    def teacher(self) -> Cell:
        return Cell(self.preset_name, self.pair, "teacher")

    def options(self) -> TrainOptions:
        preset, teacher = self.preset, self.role == "teacher"
        epochs = preset.teacher_epochs if teacher else preset.student_epochs
        return TrainOptions(
            epochs, preset.batch, preset.lr, warmup_iters=preset.warmup_iters[0 if teacher else 1], seed=self.seed,
            device=preset.device, quiet=True,
        )  # fmt: skip

    def recipe(self) -> Recipe | None:
        """The KD recipe of a student cell; None for a teacher or the student without KD."""
        return row_recipe(str(self.method), self.pair, self.preset_name) if self.role == "student" else None

    def ready(self) -> bool:
        """False for a row chosen on the validation split before the rows it is chosen from are stored."""
        try:
            self.recipe()
        except ChoiceNotReady:
            return False
        return True

    @property
    def label(self) -> str:
        return "teacher" if self.role == "teacher" else str(self.method)


def data_root(preset_name: str) -> Path:
    """Presets that render the same scenes share them."""
    preset = PRESETS[preset_name]
    width, height = preset.image_size
    near = "_near" if preset.near_range else ""
    test = f"_{preset.n_test}" if preset.n_test else ""
    seed = f"_seed{preset.data_seed}" if preset.data_seed else ""
    return CACHE / f"data_{width}x{height}_{preset.n_train}_{preset.n_val}{test}{near}{seed}"


def ensure_data(preset_name: str, console: Console) -> tuple[Dataset, Dataset]:
    """Render (once) and load the synthetic train/val split of a preset."""
    preset, root = PRESETS[preset_name], data_root(preset_name)
    config = SynthConfig.near_range() if preset.near_range else SynthConfig()
    workers = max(1, (os.cpu_count() or 1) - 1)
    ensure_synthetic(
        root, preset.image_size, preset.n_train, preset.n_val, preset.data_seed, console, config, workers, preset.n_test
    )
    return load_dataset(root, "train"), load_dataset(root, "val")


def report_data(preset_name: str) -> Dataset:
    """The split a preset's tables report (test where it has one, else val); ensure_data must have run."""
    return load_dataset(data_root(preset_name), PRESETS[preset_name].report_split)


def epoch_metrics(run_dir: Path) -> list[dict[str, float]]:
    """The per-epoch rows of a finished cell's metrics.csv."""
    with (run_dir / "metrics.csv").open() as handle:
        return [{key: float(value) for key, value in row.items()} for row in csv.DictReader(handle)]


def epoch_losses(epochs: list[dict[str, float]]) -> dict[str, list[float]]:
    """Each loss term's per-epoch mean (metrics.csv columns `loss` and `loss_*`): the detection and KD losses'
    shares of the total over training."""
    names = [name for name in epochs[0] if name == "loss" or name.startswith("loss_")]
    return {name: [e[name] for e in epochs] for name in names}


def device_name(device: str) -> str:
    if device.startswith("cuda"):
        return torch.cuda.get_device_name(device)
    return f"{platform.machine()} CPU, {os.cpu_count()} cores"


CELL_RESULTS = RESULTS / "cells"


def cached_result(cell: Cell, run_dir: Path | None = None) -> dict | None:
    """The stored evaluation of a finished cell (whose directory is `run_dir`, if known), or None."""
    try:
        run_dir = run_dir or cell.directory()
    except ChoiceNotReady:
        return None
    result_file = CELL_RESULTS / f"{run_dir.name}.json"
    return json.loads(result_file.read_text()) if result_file.is_file() else None


def run_cell(cell: Cell, console: Console | None = None, need_checkpoint: bool = False) -> dict:
    """Train (or reuse) one cell and evaluate its best checkpoint once; a top-level function so that a process
    pool can run cells side by side (the teacher of a student cell must have finished). `need_checkpoint`: train
    again (resuming an interrupted run) when the stored result has no finished run on this machine (a teacher
    whose students are still to run)."""
    console = console or Console(quiet=True)
    run_dir = cell.directory()
    cached = cached_result(cell, run_dir)
    if cached is not None and not (need_checkpoint and not finished_run(run_dir)):
        return cached
    train, val = ensure_data(cell.preset_name, console)
    options = cell.options()
    recipe = cell.recipe()
    if recipe is not None:
        recipe = replace(recipe, img_size=None)  # the preset sets the size
        teacher = cell.teacher().directory() / "best.pt"
        best = distill_cached(run_dir, teacher, cell.model, recipe, train, val, options, console)
    else:
        best = train_cached(run_dir, cell.model, train, val, cell.preset.input_size, options, console)
    row = checkpoint_row(cell.label, best, report_data(cell.preset_name), cell.preset.device).to_dict()
    results = row.pop("results")
    if cell.preset.n_test:  # per-difficulty AP|R40 per class (tables of the presets with a held-out split)
        row["kitti_r40"] = results.get("kitti", {})
    epochs = epoch_metrics(run_dir)
    epoch_seconds = sum(e["train_seconds"] for e in epochs) / len(epochs)
    row.update(
        epochs=options.epochs, epoch_seconds=epoch_seconds, train_minutes=epoch_seconds * options.epochs / 60,
        ap_per_epoch=[e["AP"] for e in epochs], loss_per_epoch=epoch_losses(epochs), seed=cell.seed, cell=run_dir.name,
        trained_on=device_name(options.device), commit=commit(), split=cell.preset.report_split,
    )  # fmt: skip
    CELL_RESULTS.mkdir(parents=True, exist_ok=True)
    atomic_write_text(CELL_RESULTS / f"{run_dir.name}.json", json.dumps(row, indent=1) + "\n")
    return row


def preset_summary(preset_name: str) -> str:
    preset = PRESETS[preset_name]
    height, width = preset.input_size
    near = " (near-range: objects labelled to 30 m)" if preset.near_range else ""
    return (
        f"Synthetic KITTI-like data: {preset.n_train} train / {preset.n_val} val images rendered at "
        f"{preset.image_size[0]}x{preset.image_size[1]}{near}, network input {width}x{height}; teacher "
        f"{preset.teacher_epochs} epochs, students {preset.student_epochs} epochs; batch {preset.batch}, AdamW lr "
        f"{preset.lr}, warm-up {preset.warmup_iters[0]} (teacher) / {preset.warmup_iters[1]} (students) "
        "iterations, then cosine decay."
    )
