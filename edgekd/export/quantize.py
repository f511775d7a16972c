"""INT8 post-training static quantisation with ONNX Runtime (QDQ format), so INT8 accuracy and latency can be
measured on CPU, and so TensorRT can build an INT8 engine from the same scales (explicit quantisation).

Choices:
- Only Conv/Gemm/MatMul are quantised: box decoding (Exp, Mul, Add on pixel coordinates) and score activations
  stay in float, where INT8 would cost whole pixels.
- Symmetric INT8 activations and weights (zero point 0), per-channel weights: the form TensorRT accepts.
- Entropy calibration (as TensorRT's IInt8EntropyCalibrator2) over a few hundred real, preprocessed images.
- The heads' last layers (class logits and box regression) are kept in float by default: post-training
  quantisation of detection heads is where most of the AP is lost.
"""

from __future__ import annotations

import contextlib
import io
import tempfile
from collections.abc import Sequence
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


def _quantize_in_temporary_folder(
    raw: onnx.ModelProto,
    records: Sequence[ImageRecord],
    input_size: tuple[int, int],
    batch: int,
    keep_float: Sequence[str],
    input_name: str,
) -> tuple[onnx.ModelProto, list[str]]:
    """ONNX Runtime's quantiser works on files: they live in a temporary folder, deleted however this ends."""
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    with tempfile.TemporaryDirectory(prefix="edgekd-int8-") as folder:
        source, prepared, output = (Path(folder) / name for name in ("fp32.onnx", "prepared.onnx", "int8.onnx"))
        onnx.save(raw, source)
        quant_pre_process(source, prepared, skip_symbolic_shape=True)
        excluded = float_nodes(onnx.load(prepared), keep_float)  # names after pre-processing's fusions
        with contextlib.redirect_stdout(io.StringIO()):  # the entropy calibrator prints its progress
            quantize_static(
                prepared,
                output,
                _reader(records, input_size, batch, input_name),
                quant_format=QuantFormat.QDQ,
                op_types_to_quantize=list(QUANTIZED_OPS),
                per_channel=True,
                activation_type=QuantType.QInt8,
                weight_type=QuantType.QInt8,
                nodes_to_exclude=excluded,
                calibrate_method=CalibrationMethod.Entropy,
                extra_options={"ActivationSymmetric": True, "WeightSymmetric": True, "CalibMaxIntermediateOutputs": 8},
            )
        quantized = onnx.load(output)
    return quantized, excluded


def quantize_qdq(
    raw: onnx.ModelProto,
    records: Sequence[ImageRecord],
    input_size: tuple[int, int],
    batch: int,
    keep_float: Sequence[str],
    input_name: str = "images",
) -> tuple[onnx.ModelProto, dict]:
    """The INT8 QDQ version of `raw`, calibrated on `records`; returns it and a description for the metadata.

    Static-batch models calibrate on batches of exactly `batch` images (the last one padded with black images).
    """
    try:
        quantized, excluded = _quantize_in_temporary_folder(raw, records, input_size, batch, keep_float, input_name)
    except OSError as error:
        raise EdgeKDError(
            f"INT8 quantisation: cannot write its temporary models in {tempfile.gettempdir()}: "
            f"{error.strerror or error} (set TMPDIR to a folder with room)"
        ) from None
    info = {
        "method": "onnxruntime static QDQ, entropy calibration, symmetric int8, per-channel weights",
        "quantized_ops": list(QUANTIZED_OPS),
        "calibration_images": len(records),
        "kept_float_patterns": list(keep_float),
        "kept_float_nodes": excluded,
    }
    return quantized, info
