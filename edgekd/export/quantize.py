"""INT8 post-training static quantisation with ONNX Runtime (QDQ format), so INT8 accuracy and latency can be
measured on CPU, and so TensorRT can build an INT8 engine from the same scales (explicit quantisation).

Choices:
- Only Conv/Gemm/MatMul are quantised: box decoding (Exp, Mul, Add on pixel coordinates) and score activations
  stay in float, where INT8 would cost whole pixels.
- Two targets (`--int8-target`): `tensorrt` (default), symmetric signed INT8 activations and weights (zero point
  0, S8S8), the only form TensorRT accepts; `cpu`, unsigned asymmetric activations with signed symmetric weights
  (U8S8), the form ONNX Runtime's x86 kernels fuse. With S8S8, ONNX Runtime 1.32 on x86 fuses only part of the
  Q/DQ-wrapped convolutions into QLinearConv; the others run in float with their weights dequantised on every
  call, which makes S8S8 INT8 slower than FP32 on CPU (benchmarks/results/int8_profile.md measures it).
- Per-channel weights.
- Entropy calibration (as TensorRT's IInt8EntropyCalibrator2) over a few hundred real, preprocessed images.
- The heads' last layers (class logits and box regression) are kept in float by default: post-training
  quantisation of detection heads is where most of the AP is lost.
"""

from __future__ import annotations

import contextlib
import io
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx

from edgekd.data.records import Dataset, ImageRecord
from edgekd.errors import EdgeKDError
from edgekd.runtime.preprocess import load_images, pad_batch

HEAD_OUTPUT_LAYERS: dict[str, tuple[str, ...]] = {
    "retinanet": ("classification_head/cls_logits", "regression_head/bbox_reg"),
    "fcos": ("classification_head/cls_logits", "regression_head/bbox_reg", "regression_head/bbox_ctrness"),
    # the adapter calls the RPN head directly (not through rpn.forward), so its scope is "/head"
    "fasterrcnn": ("/head/cls_logits", "/head/bbox_pred", "box_predictor/cls_score", "box_predictor/bbox_pred"),
    "gfl": ("head_module/gfl_cls", "head_module/gfl_reg"),
}
"""Per family, name fragments of the ONNX nodes kept in float by default (`--int8-keep auto`)."""

QUANTIZED_OPS = ("Conv", "Gemm", "MatMul")
MIN_RECOMMENDED_IMAGES = 100
INT8_TARGETS: dict[str, str] = {
    "tensorrt": "symmetric int8 activations and weights (S8S8), for TensorRT explicit quantisation",
    "cpu": "asymmetric uint8 activations, symmetric int8 weights (U8S8), for ONNX Runtime on x86 CPUs",
}
"""--int8-target: the runtime the QDQ model is tuned for, and how its activations are quantised."""


@dataclass(frozen=True)
class QuantSettings:
    """How `QdqQuantizer` quantises: target runtime (INT8_TARGETS), per-channel weights, quantised op types."""

    target: str = "tensorrt"
    per_channel: bool = True
    op_types: tuple[str, ...] = QUANTIZED_OPS
    operator_format: bool = False  # QOperator (QLinearConv nodes) instead of QDQ: only benchmarks compare it

    def describe(self) -> str:
        weights = "per-channel" if self.per_channel else "per-tensor"
        form = "QOperator" if self.operator_format else "QDQ"
        return f"onnxruntime static {form}, entropy calibration, {INT8_TARGETS[self.target]}, {weights} weights"


def float_nodes(model: onnx.ModelProto, patterns: Sequence[str]) -> list[str]:
    """Names of the quantisable nodes whose name contains one of `patterns`; a pattern matching none is an error."""
    quantisable = [node.name for node in model.graph.node if node.op_type in QUANTIZED_OPS]
    chosen = []
    for pattern in patterns:
        matches = [name for name in quantisable if pattern in name]
        if not matches:
            raise EdgeKDError(f"--int8-keep {pattern!r}: no Conv/Gemm/MatMul node of the graph has it in its name")
        chosen += [name for name in matches if name not in chosen]
    return chosen


def calibration_records(dataset: Dataset, count: int) -> list[ImageRecord]:
    """`count` images spread over the dataset (a fixed-seed sample, so calibration is reproducible)."""
    if count < 1:
        raise EdgeKDError(f"--calib-images {count}: must be at least 1")
    records = dataset.records
    if len(records) <= count:
        return list(records)
    chosen = np.sort(np.random.default_rng(0).choice(len(records), size=count, replace=False))
    return [records[i] for i in chosen]


def _reader(records: Sequence[ImageRecord], input_size: tuple[int, int], batch: int, input_name: str) -> object:
    from onnxruntime.quantization import CalibrationDataReader

    class ImageReader(CalibrationDataReader):
        """Preprocessed calibration batches, decoded lazily one batch at a time."""

        def __init__(self) -> None:
            self.position = 0

        def get_next(self) -> dict[str, np.ndarray] | None:
            if self.position >= len(records):
                return None
            chunk = records[self.position : self.position + batch]
            self.position += batch
            images, _ = load_images(chunk, input_size)
            return {input_name: pad_batch(images, batch) if len(images) < batch else images}

        def rewind(self) -> None:
            self.position = 0

    return ImageReader()


class QdqQuantizer:
    """ONNX Runtime static QDQ quantisation of one float graph, calibrated once and quantised as often as asked.

    ONNX Runtime's quantiser works on files: the pre-processed float model and the calibration cache (tensor
    ranges, `quantize_static(calibration_cache_path=...)`) live in a temporary folder that `close()` deletes.
    The ranges do not depend on which nodes are excluded, so every `quantize(keep)` after the first reuses them:
    the INT8 fallback search (`edgekd.export.int8_search`) builds dozens of variants from one calibration.
    Use as a context manager.
    """

    def __init__(
        self,
        raw: onnx.ModelProto,
        records: Sequence[ImageRecord],
        input_size: tuple[int, int],
        batch: int,
        input_name: str = "images",
        settings: QuantSettings | None = None,
    ) -> None:
        from onnxruntime.quantization.shape_inference import quant_pre_process

        self.records, self.input_size, self.batch, self.input_name = records, input_size, batch, input_name
        self.settings = settings or QuantSettings()
        self._folder = tempfile.TemporaryDirectory(prefix="edgekd-int8-")
        folder = Path(self._folder.name)
        self.source, self.prepared = folder / "fp32.onnx", folder / "prepared.onnx"
        self.cache, self.output = folder / "calibration.json", folder / "int8.onnx"
        try:
            onnx.save(raw, self.source)
            quant_pre_process(self.source, self.prepared, skip_symbolic_shape=True)
        except OSError as error:
            self.close()
            raise _temporary_error(error) from None
        self.model = onnx.load(self.prepared)
        """The pre-processed float graph: node names here are the ones `quantize` excludes by."""

    def quantisable_nodes(self) -> list[str]:
        """Names of the nodes the quantiser would quantise (the settings' op types), in graph order."""
        return [node.name for node in self.model.graph.node if node.op_type in self.settings.op_types]

    def quantize(self, keep_nodes: Sequence[str]) -> onnx.ModelProto:
        """The QDQ model with `keep_nodes` (exact node names of `model`) left in float."""
        from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static

        settings = self.settings
        signed = settings.target == "tensorrt"
        extra = {"ActivationSymmetric": signed, "WeightSymmetric": True, "CalibMaxIntermediateOutputs": 8}
        try:
            with contextlib.redirect_stdout(io.StringIO()):  # the entropy calibrator prints its progress
                quantize_static(
                    self.prepared,
                    self.output,
                    _reader(self.records, self.input_size, self.batch, self.input_name),
                    quant_format=QuantFormat.QOperator if settings.operator_format else QuantFormat.QDQ,
                    op_types_to_quantize=list(settings.op_types),
                    per_channel=settings.per_channel,
                    activation_type=QuantType.QInt8 if signed else QuantType.QUInt8,
                    weight_type=QuantType.QInt8,
                    nodes_to_exclude=list(keep_nodes),
                    calibrate_method=CalibrationMethod.Entropy,
                    extra_options=extra,
                    calibration_cache_path=self.cache,
                )
            return onnx.load(self.output)
        except OSError as error:
            raise _temporary_error(error) from None

    def close(self) -> None:
        self._folder.cleanup()

    def __enter__(self) -> QdqQuantizer:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


def _temporary_error(error: OSError) -> EdgeKDError:
    return EdgeKDError(
        f"INT8 quantisation: cannot write its temporary models in {tempfile.gettempdir()}: "
        f"{error.strerror or error} (set TMPDIR to a folder with room)"
    )


def quantization_info(
    records: Sequence[ImageRecord],
    keep_float: Sequence[str],
    excluded: Sequence[str],
    settings: QuantSettings | None = None,
) -> dict:
    """The metadata `quantization` section of a QDQ model: method, calibration and the nodes kept in float."""
    settings = settings or QuantSettings()
    return {
        "method": settings.describe(),
        "target": settings.target,
        "quantized_ops": list(settings.op_types),
        "calibration_images": len(records),
        "kept_float_patterns": list(keep_float),
        "kept_float_nodes": list(excluded),
    }


def quantize_qdq(
    raw: onnx.ModelProto,
    records: Sequence[ImageRecord],
    input_size: tuple[int, int],
    batch: int,
    keep_float: Sequence[str],
    input_name: str = "images",
    settings: QuantSettings | None = None,
) -> tuple[onnx.ModelProto, dict]:
    """The INT8 QDQ version of `raw`, calibrated on `records`, with the nodes matching `keep_float` in float;
    returns it and a description for the metadata.

    Static-batch models calibrate on batches of exactly `batch` images (the last one padded with black images).
    """
    with QdqQuantizer(raw, records, input_size, batch, input_name, settings) as quantizer:
        excluded = float_nodes(quantizer.model, keep_float)  # names after pre-processing's fusions
        quantized = quantizer.quantize(excluded)
    return quantized, quantization_info(records, keep_float, excluded, quantizer.settings)
