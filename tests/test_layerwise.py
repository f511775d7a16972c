"""The per-layer comparison behind `edgekd export --trt --layerwise` (edgekd.export.layerwise), on CPU: Polygraphy's
ONNX Runtime runner on the tiny export against the same runner on a copy with one convolution's weights shifted
finds exactly that convolution first, and against the unchanged model finds nothing."""

from __future__ import annotations

import json
import sys

import numpy as np
import pytest

pytest.importorskip("polygraphy")

import onnx  # noqa: E402
from onnx import numpy_helper  # noqa: E402

from edgekd.export.layerwise import (  # noqa: E402
    LAYERWISE_JSON,
    LAYERWISE_MD,
    POLYGRAPHY_HINT,
    compare_layers,
    onnxrt_runner,
    polygraphy_available,
    write_layerwise,
)

TOLERANCE = 1e-3  # the FP32 engine bound


@pytest.fixture(scope="module")
def model(tiny_export):
    return onnx.load(str(tiny_export / "model.onnx"))


@pytest.fixture(scope="module")
def feed():
    images = np.random.default_rng(0).uniform(0, 255, size=(1, 3, 64, 160)).astype(np.float32)
    return {"images": images}


def _conv(model, index: int):
    """The index-th Conv node whose weight is an initializer."""
    weights = {tensor.name for tensor in model.graph.initializer}
    return [node for node in model.graph.node if node.op_type == "Conv" and node.input[1] in weights][index]


def _perturbed(model, node):
    """A copy of `model` whose `node` has 0.5 added to every weight."""
    copy = onnx.ModelProto()
    copy.CopyFrom(model)
    weight = next(tensor for tensor in copy.graph.initializer if tensor.name == node.input[1])
    weight.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(weight) + np.float32(0.5), weight.name))
    return copy


@pytest.fixture(scope="module")
def perturbed_report(model, feed):
    target = _conv(model, 8)
    reference, candidate = onnxrt_runner(model, "reference"), onnxrt_runner(_perturbed(model, target), "perturbed")
    return target, compare_layers(model, reference, candidate, feed, TOLERANCE, "random input")


def test_first_divergence_is_the_perturbed_convolution(perturbed_report):
    target, report = perturbed_report
    first = report.first_divergence
    assert (first.node, first.op_type, first.tensor) == (target.name, "Conv", target.output[0])
    assert first.max_abs_diff > TOLERANCE
    before = report.layers[: report.layers.index(first)]
    assert before and all(layer.max_abs_diff == 0.0 for layer in before)  # same graph, same input upstream
    assert report.summary().startswith(f"first divergent layer: {target.name} (Conv, output {target.output[0]})")


def test_layers_follow_the_graph_order(model, perturbed_report):
    _, report = perturbed_report
    order = [tensor for node in model.graph.node if node.op_type != "Constant" for tensor in node.output if tensor]
    assert [layer.tensor for layer in report.layers] == order


def test_identical_models_do_not_diverge(model, feed):
    report = compare_layers(model, onnxrt_runner(model, "a"), onnxrt_runner(model, "b"), feed, TOLERANCE, "random")
    assert report.first_divergence is None
    assert report.layers and all(layer.max_abs_diff == 0.0 and layer.within for layer in report.layers)
    assert report.summary() == "no layer differs beyond 0.001 between a and b"


def test_reports_are_written_beside_parity(perturbed_report, tmp_path):
    target, report = perturbed_report
    write_layerwise(report, tmp_path)
    data = json.loads((tmp_path / LAYERWISE_JSON).read_text())
    assert data["first_divergence"]["node"] == target.name
    assert data["tolerance"] == TOLERANCE and len(data["layers"]) == len(report.layers)
    markdown = (tmp_path / LAYERWISE_MD).read_text()
    assert f"| {target.name} | Conv | {target.output[0]} |" in markdown and "**no**" in markdown


def test_without_polygraphy_the_hint_names_the_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "polygraphy", None)  # `import polygraphy` raises ImportError
    assert not polygraphy_available()
    assert "pip install polygraphy" in POLYGRAPHY_HINT
