"""Benchmark backends, isolated behind one registry: backend name -> the factory that loads a model on it.

Factories import their framework lazily, so choosing ONNX Runtime or TensorRT never imports torch.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from edgekd.bench.backends.base import BenchRunner, ModelInfo
from edgekd.errors import EdgeKDError

__all__ = ["BACKENDS", "BackendOptions", "BenchRunner", "ModelInfo", "check_artifact", "load_runner", "resolve_backend"]


@dataclass
class BackendOptions:
    """What a factory may need beyond the path."""

    threads: int | None = None
    device: str = "auto"  # torch: cpu, cuda, cuda:N or auto
    compile: bool = False  # torch: torch.compile


def _torch(path: Path, options: BackendOptions) -> BenchRunner:
    from edgekd.bench.backends.torch_eager import TorchRunner

    return TorchRunner(path, options.device, options.compile, options.threads)


def _ort(backend: str) -> Callable[[Path, BackendOptions], BenchRunner]:
    def factory(path: Path, options: BackendOptions) -> BenchRunner:
        from edgekd.bench.backends.onnxrt import OrtRunner

        return OrtRunner(path, backend, options.threads)

    return factory


def _trt(path: Path, options: BackendOptions) -> BenchRunner:
    from edgekd.bench.backends.tensorrt import TensorRTEngineRunner

    return TensorRTEngineRunner(path)


BACKENDS: dict[str, Callable[[Path, BackendOptions], BenchRunner]] = {
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


def load_runner(path: Path, backend: str, options: BackendOptions) -> BenchRunner:
    return BACKENDS[backend](path, options)
