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
from edgekd.models.pretrained import PretrainedOptions, build_pretrained_detector
from edgekd.models.zoo import model_spec
from edgekd.train.trainer import Trainer, TrainOptions


def schedule_options(recipe: Recipe, options: TrainOptions, overrides: dict[str, float | int | None]) -> TrainOptions:
    """Recipe schedule, then explicit command-line values on top."""
    mapping = {"epochs": "epochs", "batch": "batch_size", "lr": "lr", "warmup_iters": "warmup_iters"}
    values = {mapping[k]: v for k, v in recipe.schedule.items() if k in mapping}
    if "weight_decay" in recipe.schedule:
        values["weight_decay"] = recipe.schedule["weight_decay"]
    values.update({mapping[k]: v for k, v in overrides.items() if v is not None})
    return replace(options, **values)


def check_input_size(
    teacher_size: tuple[int, int], teacher_path: Path, recipe: Recipe, img_size: tuple[int, int] | None
) -> None:
    """Distillation runs at the teacher's input size (height, width): an `--img-size` or a recipe `img_size` of
    another size is an error giving the teacher's size (teacher and student features must align cell for cell)."""
    teacher_text = f"{teacher_size[1]}x{teacher_size[0]}"
    if img_size is not None and tuple(img_size) != teacher_size:
        raise EdgeKDError(
            f"--img-size {img_size[1]}x{img_size[0]}: the teacher {teacher_path} was trained at {teacher_text}, and "
            f"the student must see the teacher's input size; leave out --img-size (or pass {teacher_text})"
        )
    if recipe.input_size is not None and recipe.input_size != teacher_size:
        raise EdgeKDError(
            f"{recipe.path}: img_size {recipe.img_size}: the teacher {teacher_path} was trained at {teacher_text}, "
            f"and the student must see the teacher's input size; remove img_size from the recipe to follow the teacher"
        )


def build_distill_trainer(
    teacher_path: Path,
    student_name: str | None,
    recipe: Recipe,
    train_data: Dataset,
    val_data: Dataset,
    out_dir: Path,
    options: TrainOptions,
    console: Console,
    img_size: tuple[int, int] | None = None,
    student_start: PretrainedOptions | None = None,
) -> Trainer:
    """Load and freeze the teacher, build the student and the KD losses, check the pair; fail before training.

    The student runs at the teacher's input size; `img_size` (height, width; `--img-size`), when given, must equal it.
    `student_start` gives the student's pretrained weights (`--student-pretrained` and friends); random by default.
    """
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
    check_input_size(tuple(teacher.config.input_size), teacher_path, recipe, img_size)
    torch.manual_seed(options.seed)
    student_config = DetectorConfig(student_name, tuple(teacher.config.classes), tuple(teacher.config.input_size))
    student = build_pretrained_detector(
        student_config, student_start or PretrainedOptions(), lambda line: console.print(line, markup=False)
    )
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
    train_images = DetectionDataset(train_data, student_config.input_size)  # decodes only what a loss reads
    objective = DistillObjective(student, teacher, recipe.losses, train_images, source=recipe.path)
    extra = {"recipe": recipe.to_dict(), "teacher": str(teacher_path), "teacher_model": payload["config"]["name"]}
    return Trainer(objective, train_data, val_data, out_dir, options, extra)
