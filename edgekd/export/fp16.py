"""FP16 ONNX (`edgekd export --fp16`): the exported graph converted to half precision, checked on ONNX Runtime like
the FP32 model, and the source of TensorRT >= 11 FP16 engines (strongly typed networks take their precision from
the graph).

The converter is ONNX Runtime's `onnxruntime.transformers.float16`, the maintained fork of onnxconverter-common's
float16 module (same `convert_float_to_float16(keep_io_types, op_block_list, node_block_list)`), shipped with
onnxruntime. onnxconverter-common 1.16 itself fails on edgekd's graphs: its `remove_unnecessary_cast_node` raises
"The downstream node of the second cast node should be graph output" when a blocked node feeds a graph output
(microsoft/onnxconverter-common#307), and with that worked around it writes Cast nodes whose type disagrees with
their value_info around blocked Resize nodes (#326), which ONNX Runtime refuses to load.

What stays FP32:
- the model's inputs and outputs (`keep_io_types`): callers feed and read float32 as for every edgekd model;
- numerically fragile ops wherever they are (FRAGILE_OPS: Exp overflows FP16 above 11, Softmax/Sigmoid/Log
  saturate, NMS/TopK compare close scores) plus the converter's own block list (DEFAULT_OP_BLOCK_LIST);
- the decoding at the graph's top level (nodes outside any module scope: anchor decoding, clipping to the image,
  the NMS tail): box coordinates in network pixels carry 0.25 px steps in FP16 at 320 px, 0.5 px at 640.
Backbone, neck and head convolutions (the bulk of the time) run in FP16.
"""

from __future__ import annotations

import contextlib
import io
import warnings

import onnx

FRAGILE_OPS: tuple[str, ...] = ("Exp", "Log", "Softmax", "Sigmoid", "NonMaxSuppression", "TopK", "RoiAlign")
"""Op types kept in FP32 in an FP16 model (in addition to onnxconverter-common's DEFAULT_OP_BLOCK_LIST)."""

FP16_BOX_TOLERANCE = 0.5
"""Max |box difference| (network pixels) of the FP16 model's raw outputs against PyTorch FP32: FP16 keeps 11
significant bits, so features carry ~1e-3 relative error through the network; 0.5 px is well under what moves a box
across an IoU threshold at KITTI sizes."""
FP16_SCORE_TOLERANCE = 1e-2
"""Max |score difference| of the FP16 model's raw outputs against PyTorch FP32 (scores in [0, 1])."""
FP16_AP_TOLERANCE = 0.5
"""Max |AP difference| in AP points (COCO AP and KITTI Moderate AP|R40) against PyTorch FP32."""


def top_level_nodes(model: onnx.ModelProto) -> list[str]:
    """Names of the nodes outside any module scope (`/Exp`, `/Concat_2`; not `/backbone/...`): the exporter puts the
    detector's own decoding code there, and edgekd's NMS tail has no scope either."""
    return [node.name for node in model.graph.node if node.name.count("/") <= 1]


def convert_fp16(model: onnx.ModelProto) -> tuple[onnx.ModelProto, dict]:
    """The FP16 version of `model` with FP32 inputs/outputs and the fragile parts in FP32; returns it and the
    `quantization`-style description written into its metadata."""
    from onnxruntime.transformers import float16
    from onnxruntime.transformers.onnx_model import OnnxModel

    blocked_ops = sorted(set(float16.DEFAULT_OP_BLOCK_LIST) | set(FRAGILE_OPS))
    blocked_nodes = top_level_nodes(model)
    with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
        warnings.simplefilter("ignore")  # out-of-range initialisers are clamped to FP16; counted below
        converted = float16.convert_float_to_float16(
            model, keep_io_types=True, op_block_list=blocked_ops, node_block_list=blocked_nodes
        )
        sorted_model = OnnxModel(converted)  # the converter appends its Cast nodes at the end of the node list
        sorted_model.topological_sort()
        converted = sorted_model.model
    fp16_initializers = sum(1 for tensor in converted.graph.initializer if tensor.data_type == onnx.TensorProto.FLOAT16)
    info = {
        "method": "onnxruntime.transformers.float16.convert_float_to_float16 (keep_io_types)",
        "fp32_op_types": blocked_ops,
        "fp32_nodes": blocked_nodes,
        "fp16_initializers": fp16_initializers,
        "tolerances": {
            "boxes_px": FP16_BOX_TOLERANCE,
            "scores": FP16_SCORE_TOLERANCE,
            "ap_points": FP16_AP_TOLERANCE,
        },
    }
    return converted, info
