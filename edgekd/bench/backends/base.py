"""The interface every benchmark backend implements, and what it reports about its model."""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from edgekd.bench.timing import Clock
from edgekd.data.records import Detections


@dataclass
class ModelInfo:
    """What the report needs to know about the benchmarked model, read from its checkpoint or export metadata."""

    kind: str  # "checkpoint", "onnx" or "engine"
    model: str  # zoo name
    classes: list[str]
    input_size: tuple[int, int]  # (height, width)
    precision: str
    nms: str  # "none" (host NMS), "onnx", "trt-plugin"; checkpoints: "none" (torchvision NMS on the device)
    run: str  # name of the training run it comes from (the checkpoint's folder)
    source_sha256: str | None = None  # the source checkpoint's hash: pairs a .pt with its exports
    batch_range: tuple[int, int] | None = None  # (min, max) batch the artifact accepts; None: any
    default_batch: int = 1  # benchmarked without --batch: an export's optimal (or static) batch
    params: int | None = None
    gflops: float | None = None
    extra: dict = field(default_factory=dict)

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


class BenchRunner(ABC):
    """One loaded model on one backend.

    `compute` runs the network on an input already in place (device memory on GPU) and leaves the outputs
    there; `host_to_device` / `device_to_host` are the copies around it (GPU only). `infer` is the deployed call
    (host numpy in, host numpy/tensors out, copies included, finished on return) and `decode` the host-side
    post-processing (NMS) to detections in original pixels.
    """

    backend: str
    info: ModelInfo
    clock: Clock
    gpu: bool = False

    @property
    @abstractmethod
    def device(self) -> str:
        """Where it runs, in words (CPU model and threads, or the GPU's name)."""

    def batch_problem(self, batch: int) -> str | None:
        """Why `batch` cannot run on this artifact, or None."""
        if self.info.batch_range is None:
            return None
        low, high = self.info.batch_range
        if low <= batch <= high:
            return None
        if low == high:
            return f"exported with a static batch of {high} (re-export with --dynamic-batch)"
        return f"accepts batches {low} to {high}"

    @abstractmethod
    def prepare(self, batch: int) -> None:
        """Allocate and fill the input (random values in [0, 255]) and outputs for `batch` images."""

    @abstractmethod
    def compute(self) -> None: ...

    def host_to_device(self) -> None:
        raise NotImplementedError(f"{self.backend}: no device copies on CPU")

    def device_to_host(self) -> None:
        raise NotImplementedError(f"{self.backend}: no device copies on CPU")

    @abstractmethod
    def infer(self, images: np.ndarray) -> object: ...

    @abstractmethod
    def decode(self, outputs: object, scales: np.ndarray) -> list[Detections]: ...

    def reset_device_peak(self) -> None:  # noqa: B027  (optional hook: backends without a device peak skip it)
        """Start a new device-memory peak (no-op where the backend cannot)."""

    def device_memory(self) -> dict:
        """Device memory figures in MiB with the method that produced them; empty on CPU."""
        return {}

    def close(self) -> None:  # noqa: B027  (optional hook: nothing to release on some backends)
        """Release device memory, streams and sessions."""
