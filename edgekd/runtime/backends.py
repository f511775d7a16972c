"""Backend name -> the runner that loads a model on it; the file kinds each backend runs.

Openers import their framework lazily, so choosing ONNX Runtime or TensorRT never imports torch.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from edgekd.data.records import Dataset, Detections
from edgekd.errors import EdgeKDError
from edgekd.runtime.metadata import read_metadata
from edgekd.runtime.runner import Runner, predict_dataset


@dataclass
class RunnerOptions:
    """What an opener may need beyond the path."""

    threads: int | None = None
    device: str = "auto"  # torch: cpu, cuda, cuda:N or auto
    compile: bool = False  # torch: torch.compile


def _torch(path: Path, options: RunnerOptions) -> Runner:
    from edgekd.runtime.torch_runner import TorchRunner

    return TorchRunner.open(path, options.device, options.compile, options.threads)


def _ort(backend: str) -> Callable[[Path, RunnerOptions], Runner]:
    def opener(path: Path, options: RunnerOptions) -> Runner:
        from edgekd.runtime.onnx_runner import OnnxRunner

        return OnnxRunner(path, read_metadata(path), backend, options.threads)

    return opener


def _trt(path: Path, options: RunnerOptions) -> Runner:
    from edgekd.runtime.tensorrt_runner import TensorRTRunner

    return TensorRTRunner(path, read_metadata(path))


BACKENDS: dict[str, Callable[[Path, RunnerOptions], Runner]] = {
    "torch": _torch,
    "ort-cpu": _ort("ort-cpu"),
    "ort-cuda": _ort("ort-cuda"),
    "ort-trt": _ort("ort-trt"),
    "trt": _trt,
}
SUFFIX_BACKENDS: dict[str, tuple[str, ...]] = {
    ".pt": ("torch",),
    ".onnx": ("ort-cpu", "ort-cuda", "ort-trt"),
    ".engine": ("trt",),
}
BACKEND_CHOICES: tuple[str, ...] = ("auto", *BACKENDS)
ARTIFACT_SUFFIXES: tuple[str, ...] = (".onnx", ".engine")
"""Exported models, which run without torch."""


def check_artifact(path: Path) -> None:
    """A missing file or an unknown kind of file is a user error naming it."""
    if path.suffix not in SUFFIX_BACKENDS:
        raise EdgeKDError(f"{path}: expected a checkpoint (.pt) or an exported model (.onnx, .engine)")
    if not path.is_file():
        raise EdgeKDError(f"artifact not found: {path}")


def _onnx_gpu_available() -> bool:
    try:
        import onnxruntime
    except ImportError:
        return False
    return "CUDAExecutionProvider" in onnxruntime.get_available_providers()


def resolve_backend(path: Path, backend: str) -> str:
    """The backend to run `path` on: `backend` checked against the file kind, or the default for `auto`
    (.pt: torch; .onnx: ort-cuda where ONNX Runtime has CUDA, else ort-cpu; .engine: trt)."""
    if backend not in BACKEND_CHOICES:
        raise EdgeKDError(f"--backend {backend}: expected one of {', '.join(BACKEND_CHOICES)}")
    allowed = SUFFIX_BACKENDS.get(path.suffix)
    if allowed is None:
        raise EdgeKDError(f"{path}: expected a checkpoint (.pt) or an exported model (.onnx, .engine)")
    if backend == "auto":
        if path.suffix == ".onnx":
            return "ort-cuda" if _onnx_gpu_available() else "ort-cpu"
        return allowed[0]
    if backend not in allowed:
        raise EdgeKDError(
            f"--backend {backend} cannot run {path.name}: {path.suffix} files run on {', '.join(allowed)}"
        )
    return backend


def open_runner(path: str | Path, backend: str = "auto", options: RunnerOptions | None = None) -> Runner:
    """The model at `path` loaded on `backend` (see `resolve_backend`); a missing export is named as such (a
    missing checkpoint by the checkpoint loader)."""
    path = Path(path)
    backend = resolve_backend(path, backend)
    if path.suffix in ARTIFACT_SUFFIXES and not path.is_file():
        raise EdgeKDError(f"exported model not found: {path}")
    return BACKENDS[backend](path, options or RunnerOptions())


EVALUATION_BACKENDS: dict[str, str] = {".pt": "torch", ".onnx": "ort-cpu", ".engine": "trt"}
"""The backend `edgekd eval` and `edgekd show` run each kind of file on (reproducible on any machine: ONNX Runtime's
CPU provider rather than CUDA)."""


def evaluation_backend(path: Path) -> str:
    """The backend `path` is evaluated on (EVALUATION_BACKENDS), or one error naming the unknown file kind."""
    backend = EVALUATION_BACKENDS.get(Path(path).suffix)
    if backend is None:
        raise EdgeKDError(f"{path}: expected a .pt checkpoint or an exported .onnx / .engine model")
    return backend


def predict_artifact(
    path: str | Path,
    dataset: Dataset,
    batch: int | None = None,
    threads: int | None = None,
    progress: Callable[[int], None] | None = None,
) -> dict[str, Detections]:
    """Detections per image id (original pixels) of an exported model over a dataset split, as `edgekd eval`
    runs it: .onnx on ONNX Runtime's CPU provider, .engine on TensorRT (see `predict_dataset` for the rest)."""
    path = Path(path)
    if path.suffix not in ARTIFACT_SUFFIXES:
        raise EdgeKDError(f"{path}: expected an exported model ({', '.join(ARTIFACT_SUFFIXES)})")
    with open_runner(path, evaluation_backend(path), RunnerOptions(threads=threads)) as runner:
        return predict_dataset(runner, dataset, batch, progress)
