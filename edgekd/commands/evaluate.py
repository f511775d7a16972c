"""`edgekd eval`: COCO + KITTI metrics of a checkpoint, an exported model, or KITTI result files."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape

from edgekd.console import print_table
from edgekd.data.records import Dataset, Detections, LabeledObject
from edgekd.errors import EdgeKDError


def objects_to_detections(objects: list[LabeledObject], classes: tuple[str, ...]) -> Detections:
    """KITTI result lines -> Detections; types outside `classes` (e.g. Van) are not scored, as in the devkit."""
    kept = [o for o in objects if o.type in classes]
    if not kept:
        return Detections.empty()
    import numpy as np

    return Detections(
        np.array([o.bbox for o in kept], np.float32),
        np.array([o.score for o in kept], np.float32),
        np.array([classes.index(o.type) for o in kept], np.int64),
    )


def predictions_from_dir(directory: Path, dataset: Dataset) -> dict[str, Detections]:
    from edgekd.data.kitti import read_results_dir

    ids = [record.image_id for record in dataset.records]
    return {
        image_id: objects_to_detections(objects, dataset.classes)
        for image_id, objects in read_results_dir(directory, ids).items()
    }


def check_classes(dataset: Dataset, model: Path) -> None:
    """Refuse data labelled with none of the model's classes; warn about model classes it does not label."""
    from edgekd.runtime import check_dataset_classes

    absent = check_dataset_classes(dataset.classes, dataset, model)
    if absent:
        where = f"{dataset.root} (split {dataset.split!r})" if dataset.format == "kitti" else str(dataset.root)
        Console(stderr=True, soft_wrap=True).print(
            f"[yellow]warning:[/] {escape(where)} has no ground truth of {', '.join(absent)}: the AP of "
            f"{'that class' if len(absent) == 1 else 'those classes'} is not measured",
            highlight=False,
        )


def predictions_from_model(
    path: Path, data: Path, split: str, device: str, batch: int | None
) -> tuple[Dataset, dict[str, Detections]]:
    """Open the model on its runner (a .pt on PyTorch, an .onnx on ONNX Runtime's CPU provider, an .engine on
    TensorRT; no torch for the latter two), load the split with the model's classes and predict on it."""
    from edgekd.data.loader import load_dataset
    from edgekd.runtime import RunnerOptions, evaluation_backend, open_runner, predict_dataset

    backend = evaluation_backend(path)
    if path.suffix == ".pt" and batch is None:
        batch = 8
    with open_runner(path, backend, RunnerOptions(device=device)) as runner:
        dataset = load_dataset(data, split, classes=tuple(runner.info.classes))
        check_classes(dataset, path)
        return dataset, predict_dataset(runner, dataset, batch)


def eval_command(
    model: Annotated[Path | None, typer.Argument(help="Checkpoint (.pt) or exported model (.onnx / .engine).")] = None,
    data: Annotated[Path, typer.Option("--data", help="Dataset with ground truth.")] = Path("data/synth"),
    split: Annotated[str, typer.Option("--split", help="Split to evaluate.")] = "val",
    predictions: Annotated[
        Path | None, typer.Option("--predictions", help="Folder of KITTI result files (label_2 + score).")
    ] = None,
    json_out: Annotated[Path | None, typer.Option("--json", help="Write the metrics as JSON here.")] = None,
    device: Annotated[str, typer.Option("--device", help="cpu, cuda or auto (checkpoints).")] = "auto",
    batch: Annotated[
        int | None,
        typer.Option("--batch", help="Images per batch (default 8; an exported model's own batch)."),
    ] = None,
) -> None:
    """COCO AP/AP50/AP75/APs/APm/APl and KITTI AP|R40 + AP|R11 per class and difficulty."""
    from edgekd.data.loader import load_dataset
    from edgekd.evaluate import evaluate_detections
    from edgekd.evaluate.report import check_json_target, results_table, write_results_json

    if (model is None) == (predictions is None):
        raise EdgeKDError("give either a model file or --predictions DIR (exactly one)")
    if batch is not None and batch < 1:
        raise EdgeKDError(f"--batch {batch}: must be at least 1")
    if json_out is not None:
        check_json_target(json_out)
    if predictions is not None:
        dataset = load_dataset(data, split)
        detections = predictions_from_dir(predictions, dataset)
    else:
        dataset, detections = predictions_from_model(model, data, split, device, batch)
    result = evaluate_detections(dataset, detections)
    console = Console()
    for table in results_table(result):
        print_table(console, table)
    if json_out is not None:
        write_results_json(json_out, {**result.to_dict(), "artifact": str(model if model is not None else predictions)})
        console.print(f"metrics written to {json_out}")


def register(app: typer.Typer) -> None:
    app.command("eval", help="Evaluate a checkpoint, an exported model or KITTI result files (COCO + KITTI AP).")(
        eval_command
    )
