"""ONNX export of a detector's tensor-only `raw` forward (normalisation and box decoding inside the graph),
simplified with onnxslim, with the chosen NMS tail, checked with onnx.checker.

Why `raw` and not torchvision's model: torchvision's transform resizes and normalises image by image in a Python
loop, which bakes the batch size into the graph; `raw` takes an already resized (B, 3, H, W) batch.

NMS modes per family:
- RetinaNet, FCOS: none | onnx | trt-plugin, static or dynamic batch.
- Faster R-CNN: none | onnx | trt-plugin, static batch only. Its RPN keeps a data-dependent number of proposals
  per image (score filtering + NMS inside the graph, exported as ONNX NonMaxSuppression, which ONNX Runtime and
  TensorRT >= 8.6 run), padded to a fixed count; torchvision loops over the images of the batch in Python, so the
  trace unrolls that loop for the exported batch size: a dynamic batch cannot work.
"""

from __future__ import annotations

import io
import warnings
from dataclasses import dataclass

import numpy as np
import onnx

from edgekd.errors import EdgeKDError
from edgekd.export.nms import append_efficient_nms, append_onnx_nms
from edgekd.runtime.metadata import INPUT_NAME, NMS_MODES, RAW_OUTPUTS, BatchSpec
from edgekd.runtime.postprocess import PostprocessConfig

MIN_OPSET = 13  # Unsqueeze/ReduceSum with axes as inputs, GatherND batch_dims (NMS tail)
MAX_OPSET = 20  # the newest opset torch's TorchScript-based exporter writes
STATIC_BATCH_FAMILIES = ("fasterrcnn",)


@dataclass
class OnnxExport:
    """The exported graphs: `raw` ends at boxes/scores (parity and INT8 quantisation start from it), `model` is
    `raw` plus the requested NMS tail (the same graph when nms is "none")."""

    raw: onnx.ModelProto
    model: onnx.ModelProto
    num_candidates: int


def check_export_options(family: str, nms: str, batch: BatchSpec, opset: int) -> None:
    """Reject unsupported combinations before any work, naming the option."""
    if nms not in NMS_MODES:
        raise EdgeKDError(f"--nms {nms}: expected one of {', '.join(NMS_MODES)}")
    if not MIN_OPSET <= opset <= MAX_OPSET:
        raise EdgeKDError(f"--opset {opset}: supported opsets are {MIN_OPSET} to {MAX_OPSET}")
    if batch.dynamic and family in STATIC_BATCH_FAMILIES:
        raise EdgeKDError(
            f"--dynamic-batch: {family} exports need a static --batch (its RPN filters proposals image by image in "
            "a Python loop, which the ONNX trace unrolls for one batch size)"
        )


def export_raw_graph(
    detector: object, batch: BatchSpec, opset: int, example: np.ndarray | None = None
) -> tuple[onnx.ModelProto, int]:
    """Trace `detector.raw` to ONNX (images (B, 3, H, W) float32 in [0, 255] -> boxes, scores), simplify it, and
    return it with the candidate count N (static for a fixed input size, also where the trace cannot see it)."""
    import onnxslim
    import torch

    height, width = detector.config.input_size
    if example is None:
        trace_batch = batch.max if not batch.dynamic else max(2, batch.opt)
        generator = torch.Generator().manual_seed(0)
        example_tensor = torch.rand(trace_batch, 3, height, width, generator=generator) * 255
    else:
        example_tensor = torch.from_numpy(np.ascontiguousarray(example, np.float32))
    dynamic_axes = {name: {0: "batch"} for name in (INPUT_NAME, *RAW_OUTPUTS)} if batch.dynamic else None
    buffer = io.BytesIO()
    detector.eval()
    with warnings.catch_warnings(), torch.no_grad():
        # The TorchScript-based exporter: torch.export (dynamo) cannot trace the data-dependent RPN NMS of
        # Faster R-CNN. Its tracer warnings flag Python values (image sizes, anchors) that are constant here.
        warnings.simplefilter("ignore")
        torch.onnx.export(
            detector,
            (example_tensor,),
            buffer,
            dynamo=False,
            opset_version=opset,
            input_names=[INPUT_NAME],
            output_names=list(RAW_OUTPUTS),
            dynamic_axes=dynamic_axes,
            do_constant_folding=True,
        )
        count = int(detector.raw(example_tensor)[0].shape[1])
    model = onnxslim.slim(onnx.load_from_string(buffer.getvalue()))
    names = [output.name for output in model.graph.output]
    if names != list(RAW_OUTPUTS):
        raise EdgeKDError(f"ONNX export: graph outputs are {names}, expected {list(RAW_OUTPUTS)}")
    for output in model.graph.output:  # Faster R-CNN pads proposals to a count the trace sees as dynamic
        dims = output.type.tensor_type.shape.dim
        if len(dims) == 3:
            dims[1].Clear()
            dims[1].dim_value = count
    return model, count


def add_nms(
    raw: onnx.ModelProto, nms: str, num_candidates: int, num_classes: int, config: PostprocessConfig
) -> onnx.ModelProto:
    """`raw` with the NMS tail of the chosen mode."""
    if nms == "none":
        return raw
    if nms == "onnx":
        return append_onnx_nms(raw, num_candidates, num_classes, config)
    return append_efficient_nms(raw, config)


def build_onnx(
    detector: object, nms: str, batch: BatchSpec, opset: int, example: np.ndarray | None = None
) -> OnnxExport:
    """Export, simplify, add the NMS tail and check; nothing is written."""
    check_export_options(detector.family, nms, batch, opset)
    raw, count = export_raw_graph(detector, batch, opset, example)
    config = detector.config
    post = PostprocessConfig(config.score_thresh, config.nms_thresh, config.max_detections, config.topk_candidates)
    model = add_nms(raw, nms, count, len(config.classes), post)
    check_model(raw)
    check_model(model)
    return OnnxExport(raw, model, count)


def check_model(model: onnx.ModelProto) -> None:
    try:
        onnx.checker.check_model(model)
    except onnx.checker.ValidationError as error:
        raise EdgeKDError(f"exported ONNX graph fails onnx.checker: {error}") from None
