"""`edgekd distill`: train a student against a frozen teacher with a recipe's KD losses."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from edgekd.commands.options import resolve_device
from edgekd.commands.train import (
    AmpOption,
    DataOption,
    DeviceOption,
    OutOption,
    QuietOption,
    ResumeOption,
    SeedOption,
    SplitOption,
    ValSplitOption,
    prepare_run_dir,
)


def distill_command(
    teacher: Annotated[Path, typer.Option("--teacher", help="Teacher checkpoint (.pt), e.g. runs/teacher/best.pt.")],
    recipe: Annotated[Path, typer.Option("--recipe", help="Recipe YAML (recipes/*.yaml).")],
    data: DataOption,
    out: OutOption,
    student: Annotated[str | None, typer.Option("--student", help="Student zoo name (default: the recipe's).")] = None,
    epochs: Annotated[int | None, typer.Option("--epochs", min=1, help="Override the recipe's epochs.")] = None,
    batch: Annotated[int | None, typer.Option("--batch", min=1, help="Override the recipe's batch.")] = None,
    lr: Annotated[float | None, typer.Option("--lr", min=0.0, help="Override the recipe's lr.")] = None,
    device: DeviceOption = "auto",
    resume: ResumeOption = False,
    seed: SeedOption = 0,
    train_split: SplitOption = "train",
    val_split: ValSplitOption = "val",
    amp: AmpOption = True,
    quiet: QuietOption = False,
) -> None:
    """Distil a student; best.pt holds the student alone (KD adaptation layers dropped)."""
    from edgekd.data.loader import load_dataset
    from edgekd.distill.recipe import load_recipe
    from edgekd.distill.run import build_distill_trainer, schedule_options
    from edgekd.train.trainer import TrainOptions

    parsed = load_recipe(recipe)
    base = TrainOptions(seed=seed, device=resolve_device(device), amp=amp, quiet=quiet)
    options = schedule_options(parsed, base, {"epochs": epochs, "batch": batch, "lr": lr})
    train_data = load_dataset(data, train_split)
    val_data = load_dataset(data, val_split, classes=train_data.classes)
    console = Console(quiet=quiet)
    trainer = build_distill_trainer(teacher, student, parsed, train_data, val_data, out, options, console)
    prepare_run_dir(out, resume)
    if resume:
        trainer.resume()
    trainer.fit()
    typer.echo(f"best student checkpoint: {out / 'best.pt'} (AP {trainer.best_ap:.2f})")


def register(app: typer.Typer) -> None:
    app.command("distill", help="Distil a student from a teacher checkpoint with a KD recipe.")(distill_command)
