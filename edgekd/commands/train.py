"""`edgekd train`: supervised training of a zoo detector."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from edgekd.commands.options import parse_size, resolve_device
from edgekd.errors import EdgeKDError

DataOption = Annotated[Path, typer.Option("--data", help="Dataset: KITTI folder or COCO JSON.")]
OutOption = Annotated[Path, typer.Option("-o", "--out", help="Run folder (checkpoints, metrics).")]
SizeOption = Annotated[str, typer.Option("--img-size", help="Network input WIDTHxHEIGHT (multiples of 32).")]
EpochsOption = Annotated[int, typer.Option("--epochs", min=1, help="Training epochs.")]
BatchOption = Annotated[int, typer.Option("--batch", min=1, help="Images per step.")]
LrOption = Annotated[float, typer.Option("--lr", min=0.0, help="Peak learning rate (AdamW).")]
DeviceOption = Annotated[str, typer.Option("--device", help="cpu, cuda, cuda:N or auto.")]
ResumeOption = Annotated[bool, typer.Option("--resume", help="Continue RUN_DIR/last.pt exactly.")]
SeedOption = Annotated[int, typer.Option("--seed", help="Seed for init, data order and augmentation.")]
SplitOption = Annotated[str, typer.Option("--train-split", help="Training split (ImageSets name or 'all').")]
ValSplitOption = Annotated[str, typer.Option("--val-split", help="Validation split.")]
AmpOption = Annotated[bool, typer.Option("--amp/--no-amp", help="Mixed precision on CUDA (bf16, else fp16).")]
QuietOption = Annotated[bool, typer.Option("--quiet", help="No progress bars.")]


def prepare_run_dir(out: Path, resume: bool) -> None:
    """Refuse to overwrite an earlier run unless resuming it."""
    if resume:
        if not (out / "last.pt").is_file():
            raise EdgeKDError(f"--resume: {out / 'last.pt'} does not exist")
        return
    if (out / "last.pt").exists():
        raise EdgeKDError(f"{out} already holds a run (last.pt); pass --resume to continue it or choose another -o")
    out.mkdir(parents=True, exist_ok=True)


def train_command(
    model: Annotated[str, typer.Argument(help="Zoo name, e.g. retinanet_mobilenet_v3_lite (see `edgekd models`).")],
    data: DataOption,
    out: OutOption,
    img_size: SizeOption = "640x192",
    epochs: EpochsOption = 12,
    batch: BatchOption = 8,
    lr: LrOption = 2e-3,
    device: DeviceOption = "auto",
    resume: ResumeOption = False,
    seed: SeedOption = 0,
    train_split: SplitOption = "train",
    val_split: ValSplitOption = "val",
    amp: AmpOption = True,
    pretrained_backbone: Annotated[
        Path | None, typer.Option("--pretrained-backbone", help="Local ImageNet weights of the backbone.")
    ] = None,
    quiet: QuietOption = False,
) -> None:
    """Train a detector from the zoo; writes best.pt, last.pt, metrics.csv and metrics.png."""
    import torch

    from edgekd.data.loader import load_dataset
    from edgekd.models.detector import DetectorConfig
    from edgekd.models.zoo import build_detector, model_spec
    from edgekd.train.objective import DetectionObjective
    from edgekd.train.trainer import Trainer, TrainOptions

    model_spec(model)
    input_size = parse_size(img_size)
    options = TrainOptions(epochs, batch, lr, seed=seed, device=resolve_device(device), amp=amp, quiet=quiet)
    train_data = load_dataset(data, train_split)
    val_data = load_dataset(data, val_split, classes=train_data.classes)
    prepare_run_dir(out, resume)
    torch.manual_seed(seed)
    detector = build_detector(DetectorConfig(model, train_data.classes, input_size), pretrained_backbone)
    trainer = Trainer(DetectionObjective(detector), train_data, val_data, out, options, {"data": str(data)})
    if resume:
        trainer.resume()
    trainer.fit()
    typer.echo(f"best checkpoint: {out / 'best.pt'} (AP {trainer.best_ap:.2f})")


def register(app: typer.Typer) -> None:
    app.command("train", help="Train a zoo detector on a KITTI/COCO dataset.")(train_command)
