"""`edgekd show`: a model's predictions drawn beside the ground truth, each box coloured by its KITTI outcome."""

from __future__ import annotations

import math
from dataclasses import replace
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape

from edgekd.data.records import Dataset, Detections
from edgekd.errors import EdgeKDError

DEFAULT_N = 16


def _subset(dataset: Dataset, n: int | None) -> Dataset:
    """The first n images of the split (all of them for n None)."""
    if not dataset.records:
        raise EdgeKDError(f"{dataset.root}: split {dataset.split!r} holds no images")
    return dataset if n is None else replace(dataset, records=dataset.records[:n])


def _predictions(
    path: Path, data: Path, split: str, n: int | None, device: str, batch: int | None
) -> tuple[Dataset, dict[str, Detections]]:
    """Open the model on the runner `edgekd eval` uses (a .pt on PyTorch, an .onnx on ONNX Runtime's CPU provider,
    an .engine on TensorRT; no torch for the latter two), load the split with its classes and predict."""
    from edgekd.data.loader import load_dataset
    from edgekd.evaluate.visualize import evaluated_classes
    from edgekd.runtime import RunnerOptions, evaluation_backend, open_runner, predict_dataset

    backend = evaluation_backend(path)
    if path.suffix == ".pt" and batch is None:
        batch = 8
    with open_runner(path, backend, RunnerOptions(device=device)) as runner:
        dataset = _subset(load_dataset(data, split, classes=tuple(runner.info.classes)), n)
        evaluated_classes(dataset)
        return dataset, predict_dataset(runner, dataset, batch)


def show_command(
    model: Annotated[Path, typer.Argument(help="Checkpoint (.pt) or exported model (.onnx / .engine).")],
    data: Annotated[Path, typer.Option("--data", help="KITTI-format dataset with ground truth.")],
    output: Annotated[Path, typer.Option("--output", "-o", help="PNG to write.")] = Path("preds.png"),
    split: Annotated[str, typer.Option("--split", help="Split to draw from.")] = "val",
    n: Annotated[int | None, typer.Option("--n", "-n", help=f"The first N images (default {DEFAULT_N}).")] = None,
    worst: Annotated[
        int | None, typer.Option("--worst", help="Instead of the first images: the N with the most misses + FPs.")
    ] = None,
    score: Annotated[float, typer.Option("--score", help="Draw detections scoring at least this.")] = 0.3,
    difficulty: Annotated[
        str, typer.Option("--difficulty", help="KITTI difficulty deciding what counts: easy, moderate or hard.")
    ] = "moderate",
    device: Annotated[str, typer.Option("--device", help="cpu, cuda or auto (checkpoints).")] = "auto",
    batch: Annotated[
        int | None, typer.Option("--batch", help="Images per batch (default 8; an exported model's own batch).")
    ] = None,
) -> None:
    """Draw predictions beside the ground truth, coloured as true positive / false positive / missed / ignored
    (DontCare, too small, occluded or truncated for the difficulty, neighbouring class) under the KITTI rules of
    `edgekd eval`; .onnx and .engine models run without torch."""
    from edgekd.evaluate.kitti import DIFFICULTIES
    from edgekd.evaluate.visualize import check_sheet_path, judge_images, save_outcomes, worst_images

    if n is not None and worst is not None:
        raise EdgeKDError(f"--n {n} and --worst {worst}: give one of them (the first N images, or the N worst)")
    for option, value in (("--n", n), ("--worst", worst), ("--batch", batch)):
        if value is not None and value < 1:
            raise EdgeKDError(f"{option} {value}: must be at least 1")
    if not (math.isfinite(score) and 0.0 <= score <= 1.0):
        raise EdgeKDError(f"--score {score}: must be a number in [0, 1]")
    if difficulty not in DIFFICULTIES:
        raise EdgeKDError(f"--difficulty {difficulty!r}: expected one of {', '.join(DIFFICULTIES)}")
    check_sheet_path(output)
    count = None if worst is not None else (n or DEFAULT_N)
    dataset, predictions = _predictions(model, data, split, count, device, batch)
    judged = judge_images(dataset, predictions, score, difficulty)
    if worst is not None:
        judged = worst_images(judged, worst)
    save_outcomes(judged, output, difficulty, score)
    tp, fp, missed = (sum(image.match.count(kind) for image in judged) for kind in ("tp", "fp", "missed"))
    Console().print(
        f"wrote {escape(str(output))}: {len(judged)} images, {tp} true positives, {fp} false positives, "
        f"{missed} missed (KITTI {difficulty}, score >= {score:g})",
        highlight=False,
        soft_wrap=True,
    )


def register(app: typer.Typer) -> None:
    app.command("show", help="Draw a model's predictions beside the ground truth, coloured by KITTI outcome.")(
        show_command
    )
