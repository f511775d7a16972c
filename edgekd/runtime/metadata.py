"""The metadata JSON beside every exported model (`model.onnx` -> `model.onnx.json`).

It carries everything a torch-free runtime needs to pre- and post-process for the model (classes, input size,
normalisation, thresholds, NMS mode, batch shape, output layout) plus provenance (source checkpoint hash, library
versions, TensorRT version and GPU for engines). Standard library only: a Jetson without torch reads it.
"""

from __future__ import annotations

import hashlib
import json
import math
import platform
import reprlib
from collections.abc import Callable
from dataclasses import MISSING, asdict, dataclass, field, fields
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
    def from_dict(cls, data: object, origin: str = "metadata") -> ExportMetadata:
        """Metadata from its JSON object; an unknown, missing or ill-typed field is an error naming it."""
        if not isinstance(data, dict) or data.get("format") != FORMAT:
            raise EdgeKDError(f"{origin}: not edgekd export metadata (field 'format' must be '{FORMAT}')")
        unknown = [name for name in data if name not in _FIELD_RULES]
        if unknown:
            raise EdgeKDError(
                f"{origin}: field '{unknown[0]}' is not an export metadata field (known: {', '.join(_FIELD_RULES)})"
            )
        required = [f.name for f in fields(cls) if f.default is MISSING and f.default_factory is MISSING]
        missing = [name for name in required if name not in data]
        if missing:
            raise EdgeKDError(f"{origin}: field '{missing[0]}' missing (re-export the model to regenerate it)")
        _check_fields(data, origin)
        return cls(**{**data, "batch": BatchSpec(**data["batch"])})

    def validate(self, origin: str = "metadata") -> None:
        """Raise EdgeKDError naming the first field of the wrong type or out of range."""
        _check_fields(self.to_dict(), origin)

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


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _is_text(value: object) -> bool:
    return isinstance(value, str) and bool(value.strip())


def _numbers(value: object, count: int) -> bool:
    return isinstance(value, list) and len(value) == count and all(_is_number(v) for v in value)


def _batch_ok(value: object) -> bool:
    if not isinstance(value, dict) or sorted(value) != ["max", "min", "opt"]:
        return False
    low, opt, high = value["min"], value["opt"], value["max"]
    return all(_is_int(v) for v in (low, opt, high)) and 1 <= low <= opt <= high


def _classes_ok(value: object) -> bool:
    return isinstance(value, list) and bool(value) and all(_is_text(c) for c in value) and len(set(value)) == len(value)


def _positive_int(value: object) -> bool:
    return _is_int(value) and value > 0


def _fraction(value: object) -> bool:
    return _is_number(value) and 0 <= value <= 1


def _optional_dict(value: object) -> bool:
    return value is None or isinstance(value, dict)


_FIELD_RULES: dict[str, tuple[Callable[[object], bool], str]] = {
    "model": (_is_text, "a model name (string)"),
    "family": (_is_text, "a detector family (string)"),
    "classes": (_classes_ok, "a non-empty list of distinct class names (strings)"),
    "input_size": (
        lambda v: isinstance(v, list) and len(v) == 2 and all(_positive_int(x) for x in v),
        "[height, width], two positive integers",
    ),
    "mean": (lambda v: _numbers(v, 3), "three numbers"),
    "std": (lambda v: _numbers(v, 3) and min(v) > 0, "three positive numbers"),
    "score_thresh": (_fraction, "a number from 0 to 1"),
    "nms_thresh": (_fraction, "a number from 0 to 1"),
    "max_detections": (_positive_int, "a positive integer"),
    "topk_candidates": (_positive_int, "a positive integer"),
    "nms": (lambda v: isinstance(v, str) and v in NMS_MODES, f"one of {', '.join(NMS_MODES)}"),
    "batch": (_batch_ok, "an object {min, opt, max} of integers with 1 <= min <= opt <= max"),
    "num_candidates": (_positive_int, "a positive integer"),
    "opset": (_positive_int, "a positive integer"),
    "precision": (lambda v: isinstance(v, str) and v in PRECISIONS, f"one of {', '.join(PRECISIONS)}"),
    "input_name": (_is_text, "the graph input's name (string)"),
    "input_format": (lambda v: isinstance(v, str), "a string"),
    "outputs": (lambda v: isinstance(v, list) and all(isinstance(o, dict) for o in v), "a list of objects"),
    "source": (lambda v: isinstance(v, dict), "an object"),
    "versions": (lambda v: isinstance(v, dict), "an object"),
    "quantization": (_optional_dict, "an object or null"),
    "tensorrt": (_optional_dict, "an object or null"),
    "format": (lambda v: v == FORMAT, f"'{FORMAT}'"),
}
"""Per metadata field: the check its JSON value must pass and what that means, for the error message."""


def _check_fields(data: dict, origin: str) -> None:
    for name, value in data.items():
        ok, expected = _FIELD_RULES[name]
        if not ok(value):
            raise EdgeKDError(f"{origin}: field '{name}' must be {expected}, got {reprlib.repr(value)}")


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
        text = path.read_bytes().decode("utf-8")
    except OSError as error:
        raise EdgeKDError(f"{path}: cannot read metadata ({error.strerror or error})") from None
    except UnicodeDecodeError as error:
        raise EdgeKDError(
            f"{path}: not UTF-8 text (byte 0x{error.object[error.start]:02x} at offset {error.start}); export "
            "metadata is JSON written by `edgekd export`"
        ) from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as error:
        raise EdgeKDError(f"{path}:{error.lineno}: not valid JSON ({error.msg}, column {error.colno})") from None
    return ExportMetadata.from_dict(data, str(path))


def _static(dim: object) -> int | None:
    """A dimension as an integer, or None when it is symbolic (a name, None, or TensorRT's -1)."""
    return dim if _is_int(dim) and dim > 0 else None


def check_model_io(
    meta: ExportMetadata, model_path: str | Path, inputs: dict[str, list], outputs: dict[str, list]
) -> None:
    """Raise EdgeKDError naming the metadata file and field that disagree with the model's own inputs and
    outputs (names and shapes, as the runtime reports them: symbolic dimensions are skipped)."""
    origin = metadata_path(model_path)
    name = Path(model_path).name

    def mismatch(field_name: str, detail: str) -> EdgeKDError:
        value = meta.batch.describe() if field_name == "batch" else reprlib.repr(getattr(meta, field_name))
        return EdgeKDError(f"{origin}: field '{field_name}' {value} disagrees with {name}: {detail}")

    if list(inputs) != [meta.input_name]:
        raise mismatch("input_name", f"its input(s) are {', '.join(inputs)}")
    shape = list(inputs[meta.input_name])
    described = f"its input '{meta.input_name}' has shape {shape}"
    if len(shape) != 4:
        raise mismatch("input_size", described)
    if [_static(d) for d in shape[2:]] != list(meta.input_size) and None not in [_static(d) for d in shape[2:]]:
        raise mismatch("input_size", described)
    batch = _static(shape[0])
    if batch is not None and (meta.batch.dynamic or meta.batch.max != batch):
        raise mismatch("batch", f"{described} (a static batch of {batch})")
    if sorted(outputs) != sorted(meta.output_names):
        raise mismatch(
            "nms",
            f"NMS mode {meta.nms!r} means outputs {', '.join(meta.output_names)}, but its outputs are "
            f"{', '.join(outputs)}",
        )
    if meta.nms == "none":
        count = _static(list(outputs["scores"])[-1]) if outputs["scores"] else None
        if count is not None and count != len(meta.classes):
            raise mismatch(
                "classes", f"{len(meta.classes)} classes listed, but its 'scores' output has {count} per candidate"
            )
        candidates = _static(list(outputs["boxes"])[1]) if len(outputs["boxes"]) > 1 else None
        if candidates is not None and candidates != meta.num_candidates:
            raise mismatch("num_candidates", f"its 'boxes' output has {candidates} candidates")


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
        from edgekd._version import __version__

        versions["edgekd"] = __version__
    return versions
