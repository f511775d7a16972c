"""NMS tails appended to the exported raw graph, whose outputs are boxes (B, N, 4) and scores (B, N, K).

- `append_onnx_nms`: the steps of `Detector.postprocess` as standard ONNX ops (TopK over the flattened scores,
  NonMaxSuppression per class with its score and IoU thresholds, then the best `max_detections` kept), gathered
  into fixed-size padded outputs plus a count, so batches of any size run in ONNX Runtime and TensorRT.
- `append_efficient_nms`: one EfficientNMS_TRT plugin node (TensorRT only; same output layout).
Both keep static shapes; the host only drops padding rows and rescales boxes.
"""

from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from edgekd.errors import EdgeKDError
from edgekd.runtime.metadata import PADDED_OUTPUTS, RAW_OUTPUTS
from edgekd.runtime.postprocess import PostprocessConfig

PLUGIN_DOMAIN = "TRT"  # TensorRT's ONNX parser resolves unknown ops through its plugin registry by op type


class _Tail:
    """Accumulates nodes and constants of a graph tail under one name prefix."""

    def __init__(self, prefix: str) -> None:
        self.prefix = prefix
        self.nodes: list[onnx.NodeProto] = []
        self.initializers: list[onnx.TensorProto] = []

    def const(self, name: str, value: np.ndarray) -> str:
        full = f"{self.prefix}/{name}"
        self.initializers.append(numpy_helper.from_array(np.asarray(value), full))
        return full

    def op(self, op_type: str, inputs: list[str], outputs: int | list[str] = 1, **attributes: object) -> list[str]:
        index = len(self.nodes)
        if isinstance(outputs, int):
            outputs = [f"{self.prefix}/{op_type}_{index}_out{i}" for i in range(outputs)]
        self.nodes.append(
            helper.make_node(op_type, inputs, outputs, name=f"{self.prefix}/{op_type}_{index}", **attributes)
        )
        return outputs

    def one(self, op_type: str, inputs: list[str], **attributes: object) -> str:
        return self.op(op_type, inputs, 1, **attributes)[0]


def _batch_dim(model: onnx.ModelProto) -> onnx.TensorShapeProto.Dimension:
    return model.graph.output[0].type.tensor_type.shape.dim[0]


def _padded_outputs(model: onnx.ModelProto, kept: int) -> list[onnx.ValueInfoProto]:
    batch = _batch_dim(model)
    batch_value = batch.dim_param if batch.dim_param else batch.dim_value
    shapes = {
        "num_detections": (TensorProto.INT32, [batch_value, 1]),
        "detection_boxes": (TensorProto.FLOAT, [batch_value, kept, 4]),
        "detection_scores": (TensorProto.FLOAT, [batch_value, kept]),
        "detection_classes": (TensorProto.INT32, [batch_value, kept]),
    }
    return [helper.make_tensor_value_info(name, *shapes[name]) for name in PADDED_OUTPUTS]


def _with_tail(model: onnx.ModelProto, tail: _Tail, kept: int) -> onnx.ModelProto:
    names = [output.name for output in model.graph.output]
    if names != list(RAW_OUTPUTS):
        raise EdgeKDError(f"NMS tail: expected graph outputs {list(RAW_OUTPUTS)}, got {names}")
    result = onnx.ModelProto()
    result.CopyFrom(model)
    result.graph.node.extend(tail.nodes)
    result.graph.initializer.extend(tail.initializers)
    del result.graph.output[:]
    result.graph.output.extend(_padded_outputs(model, kept))
    return result


def append_onnx_nms(
    model: onnx.ModelProto, num_candidates: int, num_classes: int, config: PostprocessConfig
) -> onnx.ModelProto:
    """Score threshold, top-k, class-wise NMS and max detections of `Detector.postprocess`, in standard ONNX."""
    if config.score_thresh < 0:
        raise EdgeKDError(f"--nms onnx needs a score threshold >= 0, the checkpoint has {config.score_thresh}")
    topk = min(config.topk_candidates, num_candidates * num_classes)
    kept = min(config.max_detections, topk)
    t = _Tail("nms")
    flat = t.one("Reshape", ["scores", t.const("flat_shape", np.array([0, -1], np.int64))])
    top_scores, top_index = t.op("TopK", [flat, t.const("topk", np.array([topk], np.int64))], 2, axis=1)
    classes_count = t.const("num_classes", np.array(num_classes, np.int64))
    box_index = t.one("Div", [top_index, classes_count])
    labels = t.one("Mod", [top_index, classes_count])
    last_axis = t.const("last_axis", np.array([-1], np.int64))
    candidate_boxes = t.one("GatherND", ["boxes", t.one("Unsqueeze", [box_index, last_axis])], batch_dims=1)
    class_range = t.const("class_range", np.arange(num_classes, dtype=np.int64).reshape(1, 1, num_classes))
    one_hot = t.one(
        "Cast", [t.one("Equal", [t.one("Unsqueeze", [labels, last_axis]), class_range])], to=TensorProto.FLOAT
    )
    per_class = t.one("Mul", [one_hot, t.one("Unsqueeze", [top_scores, last_axis])])
    nms_scores = t.one("Transpose", [per_class], perm=[0, 2, 1])  # (B, K, T), zero outside each row's class
    selected = t.one(
        "NonMaxSuppression",
        [
            candidate_boxes,
            nms_scores,
            t.const("max_per_class", np.array([kept], np.int64)),
            t.const("iou_threshold", np.array([config.nms_thresh], np.float32)),
            t.const("score_threshold", np.array([config.score_thresh], np.float32)),
        ],
        center_point_box=0,
    )
    batch_and_row = t.one("Gather", [selected, t.const("batch_row_columns", np.array([0, 2], np.int64))], axis=1)
    zeros = t.one(
        "ConstantOfShape", [t.one("Shape", [top_scores])], value=helper.make_tensor("", TensorProto.FLOAT, [1], [0.0])
    )
    selected_count = t.one(
        "Slice",
        [t.one("Shape", [selected]), t.const("zero", np.array([0], np.int64)), t.const("one", np.array([1], np.int64))],
    )
    ones = t.one("ConstantOfShape", [selected_count], value=helper.make_tensor("", TensorProto.FLOAT, [1], [1.0]))
    kept_mask = t.one("ScatterND", [zeros, batch_and_row, ones])
    kept_scores = t.one(
        "Where",
        [
            t.one("Greater", [kept_mask, t.const("half", np.array(0.5, np.float32))]),
            top_scores,
            t.const("minus_one", np.array(-1.0, np.float32)),
        ],
    )
    best_scores, best_index = t.op("TopK", [kept_scores, t.const("kept", np.array([kept], np.int64))], 2, axis=1)
    valid = t.one("Greater", [best_scores, t.const("minus_half", np.array(-0.5, np.float32))])
    valid_float = t.one("Cast", [valid], to=TensorProto.FLOAT)
    count = t.one("ReduceSum", [valid_float, t.const("axis_one", np.array([1], np.int64))], keepdims=1)
    t.op("Cast", [count], ["num_detections"], to=TensorProto.INT32)
    t.op("Where", [valid, best_scores, t.const("zero_score", np.array(0.0, np.float32))], ["detection_scores"])
    best_boxes = t.one("GatherND", [candidate_boxes, t.one("Unsqueeze", [best_index, last_axis])], batch_dims=1)
    t.op("Mul", [best_boxes, t.one("Unsqueeze", [valid_float, last_axis])], ["detection_boxes"])
    best_labels = t.one("GatherElements", [labels, best_index], axis=1)
    valid_int = t.one("Cast", [valid], to=TensorProto.INT64)
    t.op("Cast", [t.one("Mul", [best_labels, valid_int])], ["detection_classes"], to=TensorProto.INT32)
    return _with_tail(model, t, kept)


def append_efficient_nms(model: onnx.ModelProto, config: PostprocessConfig) -> onnx.ModelProto:
    """One EfficientNMS_TRT node (class-wise NMS, scores already activated, x1y1x2y2 boxes), for TensorRT.

    The plugin keeps only the top 4096 scores above its threshold before NMS (PyTorch keeps the top
    `topk_candidates`), so at very low score thresholds its detections can differ; the parity report shows it.
    """
    t = _Tail("nms")
    t.op(
        "EfficientNMS_TRT",
        list(RAW_OUTPUTS),
        list(PADDED_OUTPUTS),
        domain=PLUGIN_DOMAIN,
        plugin_version="1",
        background_class=-1,
        max_output_boxes=config.max_detections,
        score_threshold=float(config.score_thresh),
        iou_threshold=float(config.nms_thresh),
        score_activation=0,
        class_agnostic=0,
        box_coding=0,
    )
    result = _with_tail(model, t, config.max_detections)
    if not any(entry.domain == PLUGIN_DOMAIN for entry in result.opset_import):
        result.opset_import.append(helper.make_opsetid(PLUGIN_DOMAIN, 1))
    return result
