"""`edgekd train`: supervised training of a zoo detector, on one device or data-parallel under torchrun.

edgekd train MODEL --data D -o RUN                                   # one GPU (or the CPU)
torchrun --nproc-per-node 4 -m edgekd train MODEL --data D -o RUN    # 4 GPUs, --batch is the global batch
edgekd train MODEL --data D -o RUN --gpus 4                          # the same; starts torchrun itself
"""

from __future__ import annotations

import sys
from enum import Enum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from edgekd.atomic import output_dir
from edgekd.errors import EdgeKDError
from edgekd.options import parse_size, resolve_device

if TYPE_CHECKING:
    from edgekd.train.trainer import Trainer

DataOption = Annotated[Path, typer.Option("--data", help="Dataset: KITTI folder or COCO JSON.")]
OutOption = Annotated[Path, typer.Option("-o", "--out", help="Run folder (checkpoints, metrics).")]
SizeOption = Annotated[str, typer.Option("--img-size", help="Network input WIDTHxHEIGHT (multiples of 32).")]
EpochsOption = Annotated[int, typer.Option("--epochs", min=1, help="Training epochs.")]
BatchOption = Annotated[
    int, typer.Option("--batch", min=1, help="Images per step, all GPUs together (each rank gets batch / ranks).")
]
LrOption = Annotated[float, typer.Option("--lr", min=0.0, help="Peak learning rate (AdamW).")]
DeviceOption = Annotated[
    str, typer.Option("--device", help="cpu, cuda, cuda:N or auto (under torchrun: each rank uses cuda:LOCAL_RANK).")
]
ResumeOption = Annotated[bool, typer.Option("--resume", help="Continue RUN_DIR/last.pt exactly.")]
ForceOption = Annotated[
    bool,
    typer.Option(
        "--force",
        help="With --resume: continue even though the data, input size, model, schedule or recipe differ from "
        "the run's (each difference is printed as a warning).",
    ),
]
SeedOption = Annotated[int, typer.Option("--seed", help="Seed for init, data order and augmentation.")]
SplitOption = Annotated[str, typer.Option("--train-split", help="Training split (ImageSets name or 'all').")]
ValSplitOption = Annotated[str, typer.Option("--val-split", help="Validation split.")]


class AmpMode(str, Enum):
    """Values of --amp (see edgekd.train.acceleration.resolve_amp)."""

    auto = "auto"
    off = "off"
    bf16 = "bf16"
    fp16 = "fp16"


AmpOption = Annotated[
    AmpMode,
    typer.Option(
        "--amp",
        help="Mixed precision: auto = bf16 on GPUs that have it (else fp16 with a grad scaler), off on CPU.",
    ),
]
WorkersOption = Annotated[
    int,
    typer.Option(
        "--workers",
        min=0,
        help="Data-loading processes per GPU (decode + augment; persistent, pinned memory on CUDA). "
        "0 loads in the training process and caches resized images.",
    ),
]
CompileOption = Annotated[
    bool,
    typer.Option("--compile", help="torch.compile the trained model's backbone + FPN (the first steps compile)."),
]
GpusOption = Annotated[
    int | None,
    typer.Option("--gpus", min=1, help="Train on N local GPUs: starts torchrun with N processes (DDP)."),
]
QuietOption = Annotated[bool, typer.Option("--quiet", help="No progress bars.")]
ClassMapOption = Annotated[
    Path | None,
    typer.Option(
        "--class-map",
        help="YAML 'dataset class: class of the pretrained weights' (null: re-initialise) for the class-aware "
        "head start; Car, Pedestrian, Cyclist, Van, Truck map to COCO by default.",
    ),
]
TrainableLayersOption = Annotated[
    int | None,
    typer.Option(
        "--trainable-backbone-layers",
        help="With pretrained weights: backbone stages that train (torchvision's rule; default 3, BN frozen).",
    ),
]


def prepare_run_dir(out: Path, resume: bool) -> None:
    """Refuse an output path that cannot hold a run, and an earlier run unless resuming it (call it on rank 0)."""
    if resume:
        if out.exists() or any(parent.is_file() for parent in out.parents):
            output_dir(out)  # names a file in the way or an unwritable folder; creates nothing here
        if not (out / "last.pt").is_file():
            raise EdgeKDError(f"--resume: {out / 'last.pt'} does not exist")
        return
    if (out / "last.pt").exists():
        raise EdgeKDError(f"{out} already holds a run (last.pt); pass --resume to continue it or choose another -o")
    output_dir(out)


def launch_gpus(gpus: int | None, device: str) -> str:
    """--gpus N: rerun this very command line under torchrun on N local GPUs (exits with its status); returns
    the device to train on in this process."""
    if gpus is None:
        return device
    from edgekd.train import distributed

    if device not in ("auto", "cuda"):
        raise EdgeKDError(f"--gpus {gpus} trains on cuda:0..{gpus - 1}; leave out --device {device}")
    status = distributed.launch_on_gpus(gpus, sys.argv[1:])
    if status is not None:
        raise typer.Exit(status)
    return "cuda"


def run_trainer(trainer: Trainer, out: Path, resume: bool, is_main: bool, what: str, force: bool = False) -> None:
    """Claim the run folder (rank 0), resume if asked, train, and say where the best checkpoint is."""
    from edgekd.train import distributed

    if force and not resume:
        raise EdgeKDError("--force only applies with --resume")
    distributed.run_on_main(lambda: prepare_run_dir(out, resume))
    if resume:
        trainer.resume(force)
    trainer.fit()
    if is_main:
        if trainer.best_path.is_file():
            typer.echo(f"{what}: {trainer.best_path} (AP {trainer.best_ap:.2f})")
        else:
            typer.echo(f"no best checkpoint: {trainer.best_path} was not written (see the warnings above)")


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
    force: ForceOption = False,
    seed: SeedOption = 0,
    train_split: SplitOption = "train",
    val_split: ValSplitOption = "val",
    amp: AmpOption = AmpMode.auto,
    workers: WorkersOption = 0,
    compile: CompileOption = False,
    gpus: GpusOption = None,
    pretrained: Annotated[
        str | None,
        typer.Option(
            "--pretrained",
            help="Start from weights: 'coco' (torchvision's file in the torch hub cache; torchvision zoo entries) "
            "or a state_dict / edgekd checkpoint file.",
        ),
    ] = None,
    pretrained_backbone: Annotated[
        str | None,
        typer.Option(
            "--pretrained-backbone",
            help="ImageNet weights of the backbone: 'imagenet' (torchvision's file in the hub cache) or a file.",
        ),
    ] = None,
    class_map: ClassMapOption = None,
    trainable_backbone_layers: TrainableLayersOption = None,
    quiet: QuietOption = False,
) -> None:
    """Train a detector from the zoo; writes best.pt, last.pt, metrics.csv and metrics.png.

    Runs data-parallel under `torchrun --nproc-per-node N -m edgekd train ...` (or with --gpus N).
    """
    import torch

    from edgekd.data.loader import load_dataset
    from edgekd.models.detector import DetectorConfig
    from edgekd.models.pretrained import PretrainedOptions, build_pretrained_detector
    from edgekd.models.zoo import model_spec
    from edgekd.train import distributed
    from edgekd.train.objective import DetectionObjective
    from edgekd.train.trainer import Trainer, TrainOptions

    device = launch_gpus(gpus, device)
    model_spec(model)
    input_size = parse_size(img_size)
    train_data = load_dataset(data, train_split)
    val_data = load_dataset(data, val_split, classes=train_data.classes)
    with distributed.session(resolve_device(device)) as (env, rank_device):
        options = TrainOptions(
            epochs, batch, lr, seed=seed, device=rank_device, amp=amp.value, workers=workers, compile=compile,
            quiet=quiet,
        )  # fmt: skip
        torch.manual_seed(seed)
        start = PretrainedOptions(pretrained, pretrained_backbone, class_map, trainable_backbone_layers)
        echo = typer.echo if env.is_main else (lambda _: None)
        detector = build_pretrained_detector(DetectorConfig(model, train_data.classes, input_size), start, echo)
        trainer = Trainer(DetectionObjective(detector), train_data, val_data, out, options, {"data": str(data)})
        run_trainer(trainer, out, resume, env.is_main, "best checkpoint", force)


def register(app: typer.Typer) -> None:
    app.command("train", help="Train a zoo detector on a KITTI/COCO dataset.")(train_command)
