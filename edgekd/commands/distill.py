"""`edgekd distill`: train a student against a frozen teacher with a recipe's KD losses.

Data-parallel under `torchrun --nproc-per-node N -m edgekd distill ...` or with `--gpus N`: every rank holds a
frozen replica of the teacher; DDP keeps the student and the KD adaptation layers in sync.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from edgekd.commands.train import (
    AmpMode,
    AmpOption,
    ClassMapOption,
    CompileOption,
    DataOption,
    DeviceOption,
    ForceOption,
    GpusOption,
    OutOption,
    QuietOption,
    ResumeOption,
    SeedOption,
    SplitOption,
    TrainableLayersOption,
    ValSplitOption,
    WorkersOption,
    launch_gpus,
    run_trainer,
)
from edgekd.options import parse_size, resolve_device


def distill_command(
    teacher: Annotated[Path, typer.Option("--teacher", help="Teacher checkpoint (.pt), e.g. runs/teacher/best.pt.")],
    recipe: Annotated[Path, typer.Option("--recipe", help="Recipe YAML (recipes/*.yaml).")],
    data: DataOption,
    out: OutOption,
    student: Annotated[str | None, typer.Option("--student", help="Student zoo name (default: the recipe's).")] = None,
    epochs: Annotated[int | None, typer.Option("--epochs", min=1, help="Override the recipe's epochs.")] = None,
    batch: Annotated[
        int | None, typer.Option("--batch", min=1, help="Override the recipe's batch (global, all GPUs together).")
    ] = None,
    lr: Annotated[float | None, typer.Option("--lr", min=0.0, help="Override the recipe's lr.")] = None,
    img_size: Annotated[
        str | None,
        typer.Option(
            "--img-size",
            help="Input WIDTHxHEIGHT. Default: the teacher's input size (recipes need not set one); a size other "
            "than the teacher's is refused.",
        ),
    ] = None,
    device: DeviceOption = "auto",
    resume: ResumeOption = False,
    force: ForceOption = False,
    seed: SeedOption = 0,
    train_split: SplitOption = "train",
    val_split: ValSplitOption = "val",
    amp: AmpOption = AmpMode.auto,
    workers: WorkersOption = 0,
    compile: CompileOption = False,
    gpus: GpusOption = None,
    student_pretrained: Annotated[
        str | None,
        typer.Option(
            "--student-pretrained",
            help="Start the student from weights: 'coco' (torchvision's file in the torch hub cache; torchvision "
            "zoo entries) or a state_dict / edgekd checkpoint file.",
        ),
    ] = None,
    student_pretrained_backbone: Annotated[
        str | None,
        typer.Option(
            "--student-pretrained-backbone",
            help="ImageNet weights of the student's backbone: 'imagenet' (hub cache) or a file.",
        ),
    ] = None,
    class_map: ClassMapOption = None,
    trainable_backbone_layers: TrainableLayersOption = None,
    quiet: QuietOption = False,
) -> None:
    """Distil a student; best.pt holds the student alone (KD adaptation layers dropped).

    The student trains at the teacher's input size, whatever size the teacher was trained at.

    Runs data-parallel under `torchrun --nproc-per-node N -m edgekd distill ...` (or with --gpus N).
    """
    from edgekd.data.loader import load_dataset
    from edgekd.distill.recipe import load_recipe
    from edgekd.distill.run import build_distill_trainer, schedule_options
    from edgekd.models.pretrained import PretrainedOptions
    from edgekd.train import distributed
    from edgekd.train.trainer import TrainOptions

    input_size = None if img_size is None else parse_size(img_size)
    device = launch_gpus(gpus, device)
    parsed = load_recipe(recipe)
    train_data = load_dataset(data, train_split)
    val_data = load_dataset(data, val_split, classes=train_data.classes)
    with distributed.session(resolve_device(device)) as (env, rank_device):
        base = TrainOptions(seed=seed, device=rank_device, amp=amp.value, workers=workers, compile=compile, quiet=quiet)
        options = schedule_options(parsed, base, {"epochs": epochs, "batch": batch, "lr": lr})
        console = Console(quiet=quiet or not env.is_main)
        trainer = build_distill_trainer(
            teacher, student, parsed, train_data, val_data, out, options, console, img_size=input_size,
            student_start=PretrainedOptions(
                student_pretrained, student_pretrained_backbone, class_map, trainable_backbone_layers,
                "--student-pretrained", "--student-pretrained-backbone",
            ),
        )  # fmt: skip
        run_trainer(trainer, out, resume, env.is_main, "best student checkpoint", force)


def register(app: typer.Typer) -> None:
    app.command("distill", help="Distil a student from a teacher checkpoint with a KD recipe.")(distill_command)
