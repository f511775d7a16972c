"""Parameters and GFLOPs of an ONNX graph, without torch (for .onnx artifacts on a device without it).

Counted like `edgekd.models.complexity.gflops` (torch's FlopCounterMode): only convolutions and matrix products,
a multiply-add is 2 FLOPs, biases and element-wise ops are free. Parameters are the weight and bias tensors of
those layers (batch-norm is folded into the convolutions at export, so this is a little below the checkpoint's
count). Shapes come from ONNX shape inference with the batch fixed to 1; a layer whose shape stays unknown makes
GFLOPs unknown (None) rather than wrong.
"""

from __future__ import annotations

import contextlib
import copy
from pathlib import Path

import numpy as np

WEIGHT_OPS = ("Conv", "ConvTranspose", "Gemm", "MatMul")
_PASS_THROUGH = ("DequantizeLinear", "QuantizeLinear", "Identity", "Cast", "Transpose", "Reshape")


def _shapes(model) -> tuple[dict[str, list[int | None]], int]:
    """Static shapes of every value after shape inference, and the batch they hold: a static batch as exported,
    a dynamic one fixed to 1."""
    import onnx

    model = copy.deepcopy(model)
    batch_dim = model.graph.input[0].type.tensor_type.shape.dim[0]
    if not batch_dim.HasField("dim_value") or batch_dim.dim_value < 1:
        batch_dim.Clear()
        batch_dim.dim_value = 1
    batch = batch_dim.dim_value
    del model.graph.value_info[:]  # stored shapes keep the symbolic batch: infer them again
    # onnx raises InferenceError (and others for custom ops): shapes then stay unknown and GFLOPs None
    with contextlib.suppress(Exception):
        model = onnx.shape_inference.infer_shapes(model, data_prop=True)
    shapes: dict[str, list[int | None]] = {}
    graph = model.graph
    for value in (*graph.input, *graph.value_info, *graph.output):
        dims = value.type.tensor_type.shape.dim
        shapes[value.name] = [d.dim_value if d.HasField("dim_value") else None for d in dims]
    for tensor in graph.initializer:
        shapes[tensor.name] = list(tensor.dims)
    return shapes, batch


def _flops(node, shapes: dict[str, list[int | None]]) -> int | None:
    """FLOPs of one weight layer, or None when a needed shape is unknown."""
    inputs = [shapes.get(name) for name in node.input[:2]]
    output = shapes.get(node.output[0])
    if any(s is None or None in s for s in (*inputs, output)):
        return None
    data, weight = inputs
    if node.op_type == "Conv":  # weight (Cout, Cin/groups, k...), output (N, Cout, spatial...)
        return 2 * int(np.prod(output)) * int(np.prod(weight[1:]))
    if node.op_type == "ConvTranspose":  # weight (Cin, Cout/groups, k...): each input pixel scatters a kernel
        return 2 * int(np.prod(data)) * int(np.prod(weight[1:]))
    if node.op_type == "Gemm":
        trans_a = next((a.i for a in node.attribute if a.name == "transA"), 0)
        inner = data[0] if trans_a else data[-1]
        return 2 * int(np.prod(output)) * inner
    return 2 * int(np.prod(output)) * data[-1]  # MatMul: (..., M, K) x (..., K, N)


def _weight_initializers(graph) -> set[str]:
    """Initializers feeding the weight/bias inputs of weight layers, through quantisation and reshaping nodes."""
    producers = {output: node for node in graph.node for output in node.output}
    initializers = {tensor.name for tensor in graph.initializer}
    found: set[str] = set()
    for node in graph.node:
        if node.op_type not in WEIGHT_OPS:
            continue
        for name in node.input[1:3]:
            while name and name not in initializers and name in producers:
                producer = producers[name]
                if producer.op_type not in _PASS_THROUGH or not producer.input:
                    break
                name = producer.input[0]
            if name in initializers:
                found.add(name)
    return found


def onnx_complexity(path: str | Path) -> tuple[int | None, float | None]:
    """(parameters, GFLOPs per image) of an ONNX model; (None, None) where onnx is not installed."""
    try:
        import onnx
    except ImportError:
        return None, None
    model = onnx.load(str(path))
    weights = _weight_initializers(model.graph)
    params = sum(int(np.prod(t.dims)) for t in model.graph.initializer if t.name in weights)
    shapes, batch = _shapes(model)
    total = 0
    for node in model.graph.node:
        if node.op_type in WEIGHT_OPS:
            flops = _flops(node, shapes)
            if flops is None:
                return params, None
            total += flops
    return params, total / batch / 1e9
