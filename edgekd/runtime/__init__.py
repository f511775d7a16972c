"""Torch-free inference of exported models (.onnx through ONNX Runtime, .engine through TensorRT).

Pre-processing (`preprocess`) and post-processing (`postprocess`) are numpy reproductions of the PyTorch path,
driven by the metadata JSON beside each model. Nothing here imports torch: a Jetson often has TensorRT and numpy
but no matching torch.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from edgekd.data.records import Dataset, Detections
from edgekd.errors import EdgeKDError
from edgekd.export.metadata import ExportMetadata, check_model_io, metadata_path, read_metadata
from edgekd.runtime.postprocess import PostprocessConfig, decode_outputs
from edgekd.runtime.preprocess import iterate_batches, pad_batch

ARTIFACT_SUFFIXES = (".onnx", ".engine")

__all__ = ["ARTIFACT_SUFFIXES", "Artifact", "check_dataset_classes", "check_labels", "predict_artifact"]


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


def check_labels(detections: Sequence[Detections], classes: Sequence[str], model_path: Path) -> None:
    """A class index beyond the metadata's class list (edited metadata, or a model exported for more classes) is
    an error naming both counts."""
    labels = [int(d.labels.max()) for d in detections if len(d.labels)]
    if labels and max(labels) >= len(classes):
        raise EdgeKDError(
            f"{metadata_path(model_path)}: field 'classes' lists {len(classes)} classes, but {model_path.name} "
            f"outputs class index {max(labels)} (at least {max(labels) + 1} classes)"
        )


class Artifact:
    """An exported model with its metadata: `infer` (network only), `decode` (host post-processing)."""

    def __init__(
        self, path: str | Path, threads: int | None = None, providers: Sequence[str] = ("CPUExecutionProvider",)
    ) -> None:
        """`threads` and `providers` (ONNX Runtime execution providers) apply to .onnx models."""
        path = Path(path)
        if path.suffix not in ARTIFACT_SUFFIXES:
            raise EdgeKDError(f"{path}: expected an exported model ({', '.join(ARTIFACT_SUFFIXES)})")
        if not path.is_file():
            raise EdgeKDError(f"exported model not found: {path}")
        self.path = path
        self.metadata: ExportMetadata = read_metadata(path)
        if path.suffix == ".engine":
            from edgekd.runtime.tensorrt_runner import TensorRTRunner

            if not self.metadata.tensorrt:
                raise EdgeKDError(f"{path}: its metadata has no 'tensorrt' section (version and GPU that built it)")
            self.runner = TensorRTRunner(path, self.metadata.tensorrt)
        else:
            if self.metadata.nms == "trt-plugin":
                raise EdgeKDError(
                    f"{metadata_path(path)}: field 'nms' is 'trt-plugin': {path.name} ends in the EfficientNMS_TRT "
                    "plugin, which only TensorRT runs; build an engine "
                    "(`edgekd export CKPT --trt --nms trt-plugin`) or export with --nms none|onnx for ONNX Runtime"
                )
            from edgekd.runtime.onnx_runner import OnnxRunner

            self.runner = OnnxRunner(path, threads=threads, providers=providers)
        check_model_io(self.metadata, path, *self.runner.io_shapes())
        self.postprocess_config = PostprocessConfig.from_metadata(self.metadata)

    @property
    def input_size(self) -> tuple[int, int]:
        height, width = self.metadata.input_size
        return height, width

    def batch_size(self, requested: int | None) -> int:
        """The batch to run: the exported static batch, or `requested` (default: opt) within a dynamic range."""
        spec = self.metadata.batch
        if not spec.dynamic:
            if requested is not None and requested != spec.max:
                raise EdgeKDError(
                    f"--batch {requested}: {self.path.name} was exported with a static batch of {spec.max}; "
                    f"use --batch {spec.max} or re-export with --dynamic-batch"
                )
            return spec.max
        size = spec.opt if requested is None else requested
        if not spec.min <= size <= spec.max:
            raise EdgeKDError(f"--batch {size}: {self.path.name} accepts batches {spec.min} to {spec.max}")
        return size

    def infer(self, images: np.ndarray) -> dict[str, np.ndarray]:
        return self.runner.run(images)

    def decode(self, outputs: dict[str, np.ndarray], scales: np.ndarray | None) -> list[Detections]:
        """Detections in original pixels; a label beyond the metadata's class list is an error naming it."""
        detections = decode_outputs(outputs, scales, self.metadata.nms, self.postprocess_config)
        check_labels(detections, self.metadata.classes, self.path)
        return detections

    def predict(self, images: np.ndarray, scales: np.ndarray | None, batch: int) -> list[Detections]:
        """Detections for a (possibly short) batch; static-batch models get zero images appended, then dropped."""
        count = len(images)
        images = pad_batch(images, batch) if not self.metadata.batch.dynamic else images
        padded_scales = None if scales is None else pad_batch(scales, len(images), fill=1.0)
        return self.decode(self.infer(images), padded_scales)[:count]


def predict_artifact(
    path: str | Path,
    dataset: Dataset,
    batch: int | None = None,
    threads: int | None = None,
    progress: Callable[[int], None] | None = None,
) -> dict[str, Detections]:
    """Detections per image id (original pixels) of an exported model over a dataset split.

    `batch`: images per call (default: the exported static batch, or a dynamic model's optimal batch).
    `progress` is called with the number of images done after each batch.
    """
    artifact = Artifact(path, threads=threads)
    if tuple(dataset.classes) != tuple(artifact.metadata.classes):
        raise EdgeKDError(
            f"{path}: model classes {artifact.metadata.classes} differ from the dataset's {list(dataset.classes)}"
        )
    size = artifact.batch_size(batch)
    results: dict[str, Detections] = {}
    for ids, images, scales in iterate_batches(dataset, artifact.input_size, size):
        results.update(zip(ids, artifact.predict(images, scales, size)))
        if progress is not None:
            progress(len(ids))
    return results
