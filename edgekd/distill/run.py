"""Set up a distillation run from a teacher checkpoint, a student name and a recipe (used by the CLI and demo)."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import torch
from rich.console import Console

from edgekd.data.records import Dataset
from edgekd.data.torch_dataset import DetectionDataset
from edgekd.distill.objective import DistillObjective
from edgekd.distill.pairing import check_pair, inherit_from_teacher
from edgekd.distill.recipe import Recipe
from edgekd.errors import EdgeKDError
from edgekd.models.checkpoint import load_detector
from edgekd.models.detector import DetectorConfig
from edgekd.models.zoo import build_detector, model_spec
from edgekd.train.trainer import Trainer, TrainOptions


def schedule_options(recipe: Recipe, options: TrainOptions, overrides: dict[str, float | int | None]) -> TrainOptions:
    """Recipe schedule, then explicit command-line values on top."""
    mapping = {"epochs": "epochs", "batch": "batch_size", "lr": "lr", "warmup_iters": "warmup_iters"}
    values = {mapping[k]: v for k, v in recipe.schedule.items() if k in mapping}
    if "weight_decay" in recipe.schedule:
        values["weight_decay"] = recipe.schedule["weight_decay"]
    values.update({mapping[k]: v for k, v in overrides.items() if v is not None})
    return replace(options, **values)


def build_distill_trainer(
    teacher_path: Path,
    student_name: str | None,
    recipe: Recipe,
    train_data: Dataset,
    val_data: Dataset,
    out_dir: Path,
    options: TrainOptions,
    console: Console,
) -> Trainer:
    """Load and freeze the teacher, build the student and the KD losses, check the pair; fail before training."""
    student_name = student_name or recipe.student
    if not student_name:
        raise EdgeKDError(f"no student: pass --student or set 'student' in {recipe.path}")
    model_spec(student_name)
    teacher, payload = load_detector(teacher_path, options.device)
    if recipe.teacher and recipe.teacher != teacher.config.name:
        console.print(f"note: {recipe.path} was written for teacher {recipe.teacher}; using {teacher.config.name}")
    if tuple(teacher.config.classes) != tuple(train_data.classes):
        raise EdgeKDError(
            f"teacher {teacher_path} detects {list(teacher.config.classes)}, the dataset has {list(train_data.classes)}"
        )
    if recipe.input_size is not None and recipe.input_size != tuple(teacher.config.input_size):
        raise EdgeKDError(
            f"{recipe.path} asks img_size {recipe.img_size} but the teacher was trained at "
            f"{teacher.config.input_size[1]}x{teacher.config.input_size[0]}; features would not align"
        )
    torch.manual_seed(options.seed)
    student_config = DetectorConfig(student_name, tuple(teacher.config.classes), tuple(teacher.config.input_size))
    student = build_detector(student_config)
    check_pair(teacher, student)
    if recipe.inherit:
        copied, total = inherit_from_teacher(teacher, student)
        console.print(f"inheriting strategy: {len(copied)}/{total} neck and head tensors copied from the teacher")
        shapes = student.state_dict()
        if not any(shapes[key].dim() > 1 for key in copied):
            console.print(
                f"[yellow]warning: no neck or head weight inherited ({student_name}'s neck and head differ in width "
                f"from {teacher.config.name}'s, at most output biases match); pair equal widths to inherit[/]"
            )
    prototype_source = DetectionDataset(train_data, student_config.input_size) if "global" in recipe.losses else None
    objective = DistillObjective(student, teacher, recipe.losses, prototype_source, source=recipe.path)
    extra = {"recipe": recipe.to_dict(), "teacher": str(teacher_path), "teacher_model": payload["config"]["name"]}
    return Trainer(objective, train_data, val_data, out_dir, options, extra)
