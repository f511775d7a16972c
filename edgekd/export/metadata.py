"""The metadata JSON beside every exported model (`model.onnx` -> `model.onnx.json`).

It carries everything a torch-free runtime needs to pre- and post-process for the model (classes, input size,
normalisation, thresholds, NMS mode, batch shape, output layout) plus provenance (source checkpoint hash, library
versions, TensorRT version and GPU for engines). Standard library only: a Jetson without torch reads it.
"""

from __future__ import annotations

import hashlib
import json
import platform
from dataclasses import asdict, dataclass, field
from importlib import metadata as importlib_metadata
from pathlib import Path

from edgekd.atomic import atomic_write_text
from edgekd.errors import EdgeKDError

FORMAT = "edgekd-export-v1"
NMS_MODES: tuple[str, ...] = ("none", "onnx", "trt-plugin")
PRECISIONS: tuple[str, ...] = ("fp32", "fp16", "int8", "int8-qdq")
INPUT_NAME = "images"
INPUT_FORMAT = "(B, 3, H, W) float32 RGB in [0, 255], resized bilinearly (PIL); mean/std normalisation is in the graph"
RAW_OUTPUTS: tuple[str, ...] = ("boxes", "scores")
PADDED_OUTPUTS: tuple[str, ...] = ("num_detections", "detection_boxes", "detection_scores", "detection_classes")
_VERSIONED_PACKAGES = ("edgekd", "torch", "torchvision", "onnx", "onnxruntime", "onnxslim", "numpy")


@dataclass(frozen=True)
class BatchSpec:
    """Batch sizes an exported model accepts: static when min == opt == max."""

    min: int
    opt: int
    max: int

    @classmethod
    def static(cls, size: int) -> BatchSpec:
        if size < 1:
            raise EdgeKDError(f"--batch {size}: must be at least 1")
        return cls(size, size, size)

    @classmethod
    def parse_dynamic(cls, text: str) -> BatchSpec:
        """'MIN:OPT:MAX' (e.g. 1:4:8) -> BatchSpec, with 1 <= MIN <= OPT <= MAX."""
        parts = text.split(":")
        if len(parts) != 3 or not all(p.strip().isdigit() for p in parts):
            raise EdgeKDError(f"--dynamic-batch '{text}': expected MIN:OPT:MAX, e.g. 1:4:8")
        low, opt, high = (int(p) for p in parts)
        if not 1 <= low <= opt <= high:
            raise EdgeKDError(f"--dynamic-batch '{text}': need 1 <= MIN <= OPT <= MAX")
        return cls(low, opt, high)

    @property
    def dynamic(self) -> bool:
        return self.min != self.max

    def describe(self) -> str:
        return f"dynamic {self.min}:{self.opt}:{self.max}" if self.dynamic else f"static {self.max}"


@dataclass
class ExportMetadata:
    """What `edgekd eval`/`bench` and the runtime need to know about an exported model."""

    model: str
    family: str
    classes: list[str]
    input_size: list[int]  # (height, width)
    mean: list[float]
    std: list[float]
    score_thresh: float
    nms_thresh: float
    max_detections: int
    topk_candidates: int
    nms: str
    batch: BatchSpec
    num_candidates: int
    opset: int
    precision: str = "fp32"
    input_name: str = INPUT_NAME
    input_format: str = INPUT_FORMAT
    outputs: list[dict] = field(default_factory=list)
    source: dict = field(default_factory=dict)
    versions: dict = field(default_factory=dict)
    quantization: dict | None = None
    tensorrt: dict | None = None
    format: str = FORMAT

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict, origin: str = "metadata") -> ExportMetadata:
        if not isinstance(data, dict) or data.get("format") != FORMAT:
            raise EdgeKDError(f"{origin}: not edgekd export metadata (field 'format' must be '{FORMAT}')")
        values = dict(data)
        try:
            values["batch"] = BatchSpec(**values["batch"])
            meta = cls(**values)
        except (KeyError, TypeError) as error:
            raise EdgeKDError(f"{origin}: malformed export metadata ({error})") from None
        meta.validate(origin)
        return meta

    def validate(self, origin: str = "metadata") -> None:
        """Raise EdgeKDError naming the first inconsistent field."""
        checks = [
            ("nms", self.nms in NMS_MODES, f"one of {', '.join(NMS_MODES)}"),
            ("precision", self.precision in PRECISIONS, f"one of {', '.join(PRECISIONS)}"),
            ("input_size", len(self.input_size) == 2 and min(self.input_size) > 0, "[height, width] > 0"),
            ("classes", len(self.classes) > 0, "a non-empty list"),
            ("mean", len(self.mean) == 3, "three values"),
            ("std", len(self.std) == 3 and min(self.std) > 0, "three positive values"),
            ("batch", 1 <= self.batch.min <= self.batch.opt <= self.batch.max, "1 <= min <= opt <= max"),
            ("max_detections", self.max_detections > 0, "positive"),
        ]
        for name, ok, expected in checks:
            if not ok:
                raise EdgeKDError(f"{origin}: field '{name}' must be {expected}, got {getattr(self, name)!r}")

    @property
    def output_names(self) -> tuple[str, ...]:
        return RAW_OUTPUTS if self.nms == "none" else PADDED_OUTPUTS

    def describe_outputs(self) -> list[dict]:
        """The output layout written into `outputs`: name, dtype, shape (symbolic batch) and meaning."""
        batch = "batch" if self.batch.dynamic else self.batch.max
        count, classes = self.num_candidates, len(self.classes)
        if self.nms == "none":
            return [
                _output("boxes", "float32", [batch, count, 4], "candidate boxes x1,y1,x2,y2 in network pixels"),
                _output("scores", "float32", [batch, count, classes], "per-class scores in [0, 1]"),
            ]
        kept = self.max_detections if self.nms == "trt-plugin" else min(self.max_detections, self.topk_count)
        note = "rows at index >= num_detections are padding"
        return [
            _output("num_detections", "int32", [batch, 1], "valid rows per image"),
            _output("detection_boxes", "float32", [batch, kept, 4], f"x1,y1,x2,y2 network pixels; {note}"),
            _output("detection_scores", "float32", [batch, kept], f"scores, descending; {note}"),
            _output("detection_classes", "int32", [batch, kept], f"label index into classes; {note}"),
        ]

    @property
    def topk_count(self) -> int:
        """Candidates entering NMS after the top-k over flattened (box, class) scores."""
        return min(self.topk_candidates, self.num_candidates * len(self.classes))


def _output(name: str, dtype: str, shape: list, meaning: str) -> dict:
    return {"name": name, "dtype": dtype, "shape": shape, "meaning": meaning}


def metadata_path(model_path: str | Path) -> Path:
    """`export/run/model.onnx` -> `export/run/model.onnx.json` (one JSON per artifact, engines included)."""
    model_path = Path(model_path)
    return model_path.with_name(model_path.name + ".json")


def read_metadata(model_path: str | Path) -> ExportMetadata:
    """The metadata of an exported model; a missing or malformed file is named."""
    path = metadata_path(model_path)
    if not path.is_file():
        raise EdgeKDError(f"{path}: metadata not found (every exported model has a <model>.json beside it)")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as error:
        raise EdgeKDError(f"{path}: cannot read metadata ({error})") from None
    return ExportMetadata.from_dict(data, str(path))


def write_metadata(model_path: str | Path, meta: ExportMetadata) -> Path:
    meta.validate()
    path = metadata_path(model_path)
    atomic_write_text(path, json.dumps(meta.to_dict(), indent=2) + "\n")
    return path


def file_sha256(path: str | Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as stream:
        for block in iter(lambda: stream.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def library_versions() -> dict[str, str | None]:
    """Installed versions of the packages an export depends on (read from package metadata: imports nothing)."""
    versions: dict[str, str | None] = {"python": platform.python_version()}
    for package in _VERSIONED_PACKAGES:
        try:
            versions[package] = importlib_metadata.version(package)
        except importlib_metadata.PackageNotFoundError:
            versions[package] = None
    if versions["edgekd"] is None:
        from edgekd import __version__

        versions["edgekd"] = __version__
    return versions
