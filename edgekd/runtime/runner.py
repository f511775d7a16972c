"""`Runner`: the one interface through which edgekd runs a model, implemented once per backend.

    torch_runner.py     .pt checkpoints (or a detector in memory): PyTorch eager, or torch.compile
    onnx_runner.py      .onnx models (or a serialized graph): ONNX Runtime CPU, CUDA or TensorRT execution provider
    tensorrt_runner.py  .engine files: TensorRT with pinned host buffers and one CUDA stream

`edgekd eval`, the parity and INT8 checks of `edgekd export` and `edgekd bench` all call `infer` (a preprocessed
batch in host memory -> outputs, copies included, finished on return) and `decode` (outputs -> detections in
original pixels), through `predict` and `predict_dataset`, which own the one batching rule: a static-batch model
gets a short batch padded with zero images (scale 1), whose detections are dropped. The benchmark adds only its
timing hooks around the same calls: `prepare` + `compute` (the network on an input already in place) and, on a
GPU, `host_to_device` / `device_to_host`, timed with the runner's `clock`.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from edgekd.data.records import Dataset, Detections
from edgekd.errors import EdgeKDError
from edgekd.runtime.clock import Clock
from edgekd.runtime.metadata import ExportMetadata
from edgekd.runtime.preprocess import iterate_batches, pad_batch


@dataclass
class ModelInfo:
    """What a loaded model is, read from its checkpoint or export metadata (reports and the batching rule use it)."""

    kind: str  # "checkpoint", "onnx" or "engine"
    model: str  # zoo name
    classes: list[str]
    input_size: tuple[int, int]  # (height, width)
    precision: str
    nms: str  # "none" (host NMS), "onnx", "trt-plugin"; checkpoints: "none" (torchvision NMS on the device)
    run: str  # name of the training run it comes from (the checkpoint's folder)
    source_sha256: str | None = None  # the source checkpoint's hash: pairs a .pt with its exports
    batch_range: tuple[int, int] | None = None  # (min, max) batch the model accepts; None: any
    default_batch: int = 1  # without --batch: an export's optimal (or static) batch
    params: int | None = None
    gflops: float | None = None
    extra: dict = field(default_factory=dict)

    @classmethod
    def from_metadata(cls, meta: ExportMetadata, kind: str, run: str) -> ModelInfo:
        """An exported model's info from its metadata (`kind`: "onnx" or "engine")."""
        checkpoint = meta.source.get("checkpoint")
        return cls(
            kind=kind,
            model=meta.model,
            classes=list(meta.classes),
            input_size=(int(meta.input_size[0]), int(meta.input_size[1])),
            precision=meta.precision,
            nms=meta.nms,
            run=run_name(checkpoint) if checkpoint else run,
            source_sha256=meta.source.get("sha256"),
            batch_range=(meta.batch.min, meta.batch.max),
            default_batch=meta.batch.opt,
            extra={"export_batch": meta.batch.describe()},
        )

    def batch_problem(self, batch: int) -> str | None:
        """Why `batch` cannot run on this model, or None."""
        if self.batch_range is None:
            return None
        low, high = self.batch_range
        if low <= batch <= high:
            return None
        if low == high:
            return f"exported with a static batch of {high} (re-export with --dynamic-batch)"
        return f"accepts batches {low} to {high}"

    @property
    def static_batch(self) -> int | None:
        """The only batch a static-batch model runs, else None."""
        if self.batch_range is None or self.batch_range[0] != self.batch_range[1]:
            return None
        return self.batch_range[1]

    def to_dict(self) -> dict:
        return {
            "kind": self.kind,
            "model": self.model,
            "classes": list(self.classes),
            "input_size": list(self.input_size),
            "precision": self.precision,
            "nms": self.nms,
            "run": self.run,
            "source_sha256": self.source_sha256,
            "params": self.params,
            "gflops": self.gflops,
            **self.extra,
        }


def run_name(path: str | Path) -> str:
    """The run a file belongs to: its folder's name (runs/student/best.pt -> student)."""
    path = Path(path).resolve()
    return path.parent.name or path.stem


Outputs = Mapping[str, object]
"""A model's outputs by name: numpy arrays (ONNX Runtime, TensorRT) or tensors on the model's device (PyTorch)."""


class Runner(ABC):
    """One loaded model on one backend.

    `infer` is the deployed call (host numpy in, outputs out, finished on return) and `decode` the post-processing
    (NMS) to detections in original pixels; `predict` pads a short batch for a static-batch model. Timing hooks:
    `prepare(batch)` allocates and fills an input (random values in [0, 255]); `compute` runs the network on it,
    outputs left where they are (device memory on GPU); `host_to_device` / `device_to_host` are the copies around
    it (GPU only); `clock` times any of them.
    """

    backend: str
    name: str  # the model file's name, as messages show it
    info: ModelInfo
    clock: Clock
    gpu: bool = False
    threads: int | None = None  # CPU threads, where the backend sets them
    gpu_name: str | None = None  # the GPU's name, where the backend knows it

    def batch_problem(self, batch: int) -> str | None:
        """Why `batch` cannot run on this model, or None."""
        return self.info.batch_problem(batch)

    def choose_batch(self, requested: int | None) -> int:
        """The batch to run: `requested`, or the model's default; one it cannot run is an error naming --batch."""
        static = self.info.static_batch
        size = requested if requested is not None else static or self.info.default_batch
        if static is not None and size != static:
            raise EdgeKDError(
                f"--batch {size}: {self.name} was exported with a static batch of {static}; "
                f"use --batch {static} or re-export with --dynamic-batch"
            )
        problem = self.batch_problem(size)
        if problem:
            raise EdgeKDError(f"--batch {size}: {self.name} {problem}")
        return size

    def pad(self, images: np.ndarray, scales: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """A short batch padded to a static-batch model's batch: zero images with scale 1 (the one padding rule)."""
        static = self.info.static_batch
        if static is None or len(images) >= static:
            return images, scales
        return pad_batch(images, static), pad_batch(scales, static, fill=1.0)

    def predict(self, images: np.ndarray, scales: np.ndarray) -> list[Detections]:
        """Detections of a preprocessed batch (see `edgekd.runtime.preprocess`), padding dropped."""
        count = len(images)
        images, scales = self.pad(images, scales)
        return self.decode(self.infer(images), scales)[:count]

    @abstractmethod
    def infer(self, images: np.ndarray) -> Outputs:
        """Outputs of a preprocessed batch (B, 3, H, W) float32 in [0, 255]; the work is done on return."""

    @abstractmethod
    def decode(self, outputs: Outputs, scales: np.ndarray | None) -> list[Detections]:
        """Detections in original pixels; `scales` (B, 2) = (sx, sy) network size / original size."""

    def raw_outputs(self, outputs: Outputs) -> dict[str, np.ndarray]:
        """`outputs` as host numpy arrays (parity compares them across backends)."""
        return {name: np.asarray(value) for name, value in outputs.items()}

    @abstractmethod
    def prepare(self, batch: int) -> None:
        """Allocate and fill the input (random values in [0, 255]) and outputs for `batch` images."""

    @abstractmethod
    def compute(self) -> None:
        """The network alone on the prepared input; outputs stay where the backend keeps them."""

    def host_to_device(self) -> None:
        raise NotImplementedError(f"{self.backend}: no device copies on CPU")

    def device_to_host(self) -> None:
        raise NotImplementedError(f"{self.backend}: no device copies on CPU")

    def reset_device_peak(self) -> None:  # noqa: B027  (optional hook: backends without a device peak skip it)
        """Start a new device-memory peak (no-op where the backend cannot)."""

    def device_memory(self) -> dict:
        """Device memory figures in MiB with the method that produced them; empty on CPU."""
        return {}

    def close(self) -> None:  # noqa: B027  (optional hook: nothing to release on some backends)
        """Release device memory, streams and sessions."""

    def __enter__(self) -> Runner:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


def check_dataset_classes(classes: Sequence[str], dataset: Dataset, model: str | Path) -> list[str]:
    """The model's classes that no ground-truth object of `dataset` has (their AP cannot be measured); when that
    is all of them, an error naming the model's and the data's class lists (the model was trained on other
    classes, or the data is not what the model expects)."""
    labelled = sorted({obj.type for record in dataset.records for obj in record.objects} - {"DontCare"})
    absent = [name for name in classes if name not in labelled]
    if len(absent) == len(classes):
        where = f"{dataset.root} (split {dataset.split!r})" if dataset.format == "kitti" else dataset.root
        raise EdgeKDError(
            f"{model}: none of the model's classes {list(classes)} is labelled in {where}, whose labels are "
            f"{labelled or 'none'}; evaluate on data labelled with the model's classes"
        )
    return absent


def predict_dataset(
    runner: Runner, dataset: Dataset, batch: int | None = None, progress: Callable[[int], None] | None = None
) -> dict[str, Detections]:
    """Detections per image id (original pixels) of `runner` over a dataset split, `batch` images per call
    (default: the model's own batch); `progress` is called with the number of images done after each batch."""
    if tuple(dataset.classes) != tuple(runner.info.classes):
        raise EdgeKDError(
            f"{runner.name}: model classes {list(runner.info.classes)} differ from the dataset's "
            f"{list(dataset.classes)}"
        )
    size = runner.choose_batch(batch)
    results: dict[str, Detections] = {}
    for ids, images, scales in iterate_batches(dataset, runner.info.input_size, size):
        results.update(zip(ids, runner.predict(images, scales)))
        if progress is not None:
            progress(len(ids))
    return results
