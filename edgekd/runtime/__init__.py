"""How edgekd runs a model: one `Runner` per backend (see `edgekd.runtime.runner`), opened by backend name.

Pre-processing (`preprocess`) and post-processing (`postprocess`) of exported models are numpy reproductions of
the PyTorch path, driven by the metadata JSON beside each model (`metadata`). Only `torch_runner` imports torch:
a Jetson often has TensorRT and numpy but no matching torch.
"""

from edgekd.runtime.backends import (
    ARTIFACT_SUFFIXES,
    BACKEND_CHOICES,
    BACKENDS,
    RunnerOptions,
    check_artifact,
    evaluation_backend,
    open_runner,
    predict_artifact,
    resolve_backend,
)
from edgekd.runtime.runner import ModelInfo, Runner, check_dataset_classes, predict_dataset, run_name

__all__ = [
    "ARTIFACT_SUFFIXES",
    "BACKENDS",
    "BACKEND_CHOICES",
    "ModelInfo",
    "Runner",
    "RunnerOptions",
    "check_artifact",
    "check_dataset_classes",
    "evaluation_backend",
    "open_runner",
    "predict_artifact",
    "predict_dataset",
    "resolve_backend",
    "run_name",
]
