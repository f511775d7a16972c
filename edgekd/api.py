"""The Python API for scripts and notebooks, over the same library calls the CLI makes:

- `load(path)`: a checkpoint (.pt), ONNX model (.onnx) or TensorRT engine (.engine) as a `Predictor`, with
  `.predict(images)` (numpy HxWx3 uint8 RGB arrays or image paths -> `Detections` in original pixels) and
  `.evaluate(dataset, split)` (-> `EvalResult`, what `edgekd eval` prints); .onnx and .engine never import torch;
- `distill(...)`: `edgekd distill` (one process), returns the best student checkpoint;
- `export(...)`: `edgekd export`, returns the `ExportResult` (paths and parity report).

`import edgekd` stays light: edgekd/__init__.py loads this module on first use of one of these names.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from edgekd.data.records import Detections
from edgekd.errors import EdgeKDError

if TYPE_CHECKING:
    from edgekd.evaluate.result import EvalResult
    from edgekd.export.run import ExportResult
    from edgekd.runtime import ModelInfo, Runner

ImageInput = np.ndarray | str | Path


class Predictor:
    """A loaded model on its runner (the backend `edgekd eval` uses: PyTorch, ONNX Runtime CPU or TensorRT).
    Use it as a context manager, or call `close()`, to release the model."""

    def __init__(self, runner: Runner) -> None:
        self.runner = runner

    @property
    def info(self) -> ModelInfo:
        """Model name, classes, input size (height, width), precision and batch limits."""
        return self.runner.info

    @property
    def classes(self) -> list[str]:
        return list(self.runner.info.classes)

    def predict(self, images: ImageInput | Sequence[ImageInput]) -> Detections | list[Detections]:
        """Detections (boxes x1, y1, x2, y2 in the image's own pixels, scores, labels indexing `classes`) of one
        image, or a list for a sequence of images. An image is an RGB numpy array (height, width, 3) of uint8, or
        the path of an image file; each is resized to the network input as in training."""
        from edgekd.bench.frames import preprocess_frames

        single = isinstance(images, (np.ndarray, str, Path))
        frames = [_frame(image, index) for index, image in enumerate([images] if single else images)]
        size = self.runner.choose_batch(None)
        results: list[Detections] = []
        for start in range(0, len(frames), size):
            batch, scales = preprocess_frames(frames[start : start + size], self.runner.info.input_size)
            results += self.runner.predict(batch, scales)
        return results[0] if single else results

    def evaluate(self, dataset: str | Path, split: str = "val") -> EvalResult:
        """COCO + KITTI metrics on a dataset split (KITTI folder or COCO JSON), as `edgekd eval` computes them."""
        from edgekd.data.loader import load_dataset
        from edgekd.evaluate import evaluate_detections
        from edgekd.runtime import check_dataset_classes, predict_dataset

        data = load_dataset(Path(dataset), split, classes=tuple(self.runner.info.classes))
        check_dataset_classes(self.runner.info.classes, data, self.runner.name)
        return evaluate_detections(data, predict_dataset(self.runner, data))

    def close(self) -> None:
        self.runner.close()

    def __enter__(self) -> Predictor:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _frame(image: ImageInput, index: int) -> np.ndarray:
    """An image argument as an RGB uint8 array (height, width, 3); anything else is refused, naming it."""
    if isinstance(image, (str, Path)):
        from edgekd.data.images import load_rgb

        return np.asarray(load_rgb(image))
    if not isinstance(image, np.ndarray):
        raise EdgeKDError(f"image {index}: expected a numpy array or an image path, got {type(image).__name__}")
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8 or 0 in image.shape:
        raise EdgeKDError(
            f"image {index}: expected an RGB array of shape (height, width, 3) and dtype uint8, got shape "
            f"{image.shape} and dtype {image.dtype}"
        )
    return image


def load(path: str | Path, device: str = "auto", threads: int | None = None) -> Predictor:
    """The model at `path` (.pt, .onnx or .engine) ready to predict: a checkpoint on PyTorch (`device` cpu, cuda
    or auto), an ONNX model on ONNX Runtime's CPU provider (`threads`), an engine on TensorRT."""
    from edgekd.runtime import RunnerOptions, check_artifact, evaluation_backend, open_runner

    path = Path(path)
    check_artifact(path)
    return Predictor(open_runner(path, evaluation_backend(path), RunnerOptions(threads=threads, device=device)))


def distill(
    teacher: str | Path,
    data: str | Path,
    out: str | Path,
    recipe: str | Path = "recipes/fgfi.yaml",
    student: str | None = None,
    epochs: int | None = None,
    batch: int | None = None,
    lr: float | None = None,
    device: str = "auto",
    seed: int = 0,
    resume: bool = False,
    quiet: bool = False,
) -> Path:
    """`edgekd distill` in this process: the student (default: the recipe's) distilled from `teacher` with
    `recipe` on `data` into the run folder `out`, at the teacher's input size; `epochs`, `batch` and `lr` override
    the recipe's schedule. Returns the best student checkpoint (out/best.pt)."""
    from rich.console import Console

    from edgekd.data.loader import load_dataset
    from edgekd.distill.recipe import load_recipe
    from edgekd.distill.run import build_distill_trainer, schedule_options
    from edgekd.options import resolve_device
    from edgekd.train.trainer import TrainOptions

    parsed = load_recipe(Path(recipe))
    train_data = load_dataset(Path(data), "train")
    val_data = load_dataset(Path(data), "val", classes=train_data.classes)
    base = TrainOptions(seed=seed, device=resolve_device(device), quiet=quiet)
    options = schedule_options(parsed, base, {"epochs": epochs, "batch": batch, "lr": lr})
    out = Path(out)
    console = Console(quiet=quiet)
    trainer = build_distill_trainer(Path(teacher), student, parsed, train_data, val_data, out, options, console)
    if resume:
        trainer.resume()
    trainer.fit()
    return trainer.best_path


def export(
    checkpoint: str | Path,
    out: str | Path | None = None,
    data: str | Path | None = None,
    batch: int | str = 1,
    quiet: bool = True,
    **options: object,
) -> ExportResult:
    """`edgekd export`: ONNX + metadata + parity report (AP parity on `data` when given) into `out` (default
    export/<run-name>/). `batch` is a static batch size or "MIN:OPT:MAX" for a dynamic batch; other keyword
    arguments are `edgekd.export.run.ExportOptions` fields (int8, calib_data, nms, opset, trt, fp16, ...)."""
    from rich.console import Console

    from edgekd.export.run import ExportOptions, export_checkpoint
    from edgekd.runtime.metadata import BatchSpec

    spec = BatchSpec.parse_dynamic(batch) if isinstance(batch, str) else BatchSpec.static(batch)
    settings = ExportOptions(
        out_dir=Path(out) if out is not None else None,
        data=Path(data) if data is not None else None,
        batch=spec,
        **options,
    )
    return export_checkpoint(Path(checkpoint), settings, Console(quiet=quiet))
