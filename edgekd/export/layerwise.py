"""Per-layer comparison of an engine that failed its accuracy gate: which layer diverges first.

`edgekd export CKPT --trt --layerwise`: when the TensorRT engine fails its gate (`edgekd.export.run`), ONNX
Runtime on the FP32 ONNX and TensorRT on the engine's source ONNX are both run with every tensor marked as an
output (Polygraphy: `ModifyOutputs(outputs=MARK_ALL)` on the ONNX side, `ModifyNetworkOutputs` on the TensorRT
side) on the same input, through `polygraphy.comparator.Comparator.run`. The layers are then walked in the ONNX
graph's order (which the ONNX specification requires to be topological) and the first whose output differs beyond
the engine's raw tolerance is named in layerwise.md / layerwise.json beside parity.md. Marking every tensor keeps
TensorRT from fusing layers across them, so the marked engine can differ from the gated one (usually less):
a layer named here is where the divergence starts, its size is indicative.

`compare_layers` works on any two Polygraphy runners, so it is tested on CPU with two ONNX Runtime runners.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from edgekd.atomic import atomic_write_text
from edgekd.runtime.metadata import BatchSpec

LAYERWISE_MD, LAYERWISE_JSON = "layerwise.md", "layerwise.json"
POLYGRAPHY_HINT = "per-layer comparison skipped: Polygraphy is not installed (pip install polygraphy)"
MARKING_CAVEAT = (
    "every tensor is marked as an output, which keeps TensorRT from fusing layers across them: the marked engine "
    "may differ less than the gated one; the first divergent layer is where the difference starts"
)


def polygraphy_available() -> bool:
    try:
        import polygraphy  # noqa: F401
    except ImportError:
        return False
    return True


@dataclass
class LayerDifference:
    """One ONNX node's output tensor: the largest absolute difference of the candidate from the reference, or
    None with `note` when it cannot be compared (missing from the candidate, other shape)."""

    node: str
    op_type: str
    tensor: str
    max_abs_diff: float | None
    within: bool
    note: str | None = None


@dataclass
class LayerwiseReport:
    """The per-layer comparison: `layers` in graph order; `first_divergence` the first outside `tolerance`."""

    reference: str
    candidate: str
    tolerance: float
    inputs: str
    layers: list[LayerDifference] = field(default_factory=list)
    caveat: str | None = None

    @property
    def first_divergence(self) -> LayerDifference | None:
        return next((layer for layer in self.layers if not layer.within), None)

    def summary(self) -> str:
        """One line: the first divergent layer, or that none is."""
        first = self.first_divergence
        if first is None:
            return f"no layer differs beyond {self.tolerance:g} between {self.reference} and {self.candidate}"
        size = f"max |diff| {first.max_abs_diff:.3g}" if first.max_abs_diff is not None else first.note
        return (
            f"first divergent layer: {first.node} ({first.op_type}, output {first.tensor}): {size} "
            f"(tolerance {self.tolerance:g})"
        )

    def to_dict(self) -> dict:
        first = self.first_divergence
        return {**asdict(self), "first_divergence": asdict(first) if first is not None else None}

    def markdown(self) -> str:
        lines = [
            f"# Per-layer comparison: {self.reference} vs {self.candidate}",
            "",
            f"Input: {self.inputs}. Tolerance: max |diff| {self.tolerance:g} per tensor. {self.summary()}.",
        ]
        if self.caveat:
            lines += ["", f"Note: {self.caveat}."]
        lines += ["", "| # | node | op | output | max abs diff | within |", "|---|---|---|---|---|---|"]
        for index, layer in enumerate(self.layers, 1):
            size = f"{layer.max_abs_diff:.3g}" if layer.max_abs_diff is not None else layer.note
            lines.append(
                f"| {index} | {layer.node} | {layer.op_type} | {layer.tensor} | {size} | "
                f"{'yes' if layer.within else '**no**'} |"
            )
        return "\n".join(lines) + "\n"


def _difference(reference: np.ndarray, candidate: np.ndarray) -> tuple[float | None, str | None]:
    """Max |candidate - reference| (booleans and integers as numbers), or None and why when shapes differ."""
    if reference.shape != candidate.shape:
        return None, f"shape {candidate.shape} vs {reference.shape}"
    if reference.size == 0:
        return 0.0, None
    return float(np.max(np.abs(candidate.astype(np.float64) - reference.astype(np.float64)))), None


def compare_layers(
    model: object,
    reference: object,
    candidate: object,
    feed: Mapping[str, np.ndarray],
    tolerance: float,
    inputs: str,
    caveat: str | None = None,
) -> LayerwiseReport:
    """Run two Polygraphy runners (each on a graph with every tensor marked as an output) on `feed` and compare
    every output of every node of the ONNX `model` in graph order. A tensor the reference has and the candidate
    lacks (folded away by its builder) is listed as not compared and does not count as divergent.

    The comparison is ours rather than `Comparator.compare_accuracy`: what that returns changed between Polygraphy
    releases (AccuracyResult, then AccuracyResults), and the graph-order walk needs only max |diff| per tensor."""
    from polygraphy.comparator import Comparator
    from polygraphy.logger import G_LOGGER

    with G_LOGGER.verbosity(G_LOGGER.ERROR):
        results = Comparator.run([reference, candidate], data_loader=[dict(feed)])
    (reference_name, [expected]), (candidate_name, [actual]) = results
    marked, produced = set(expected.keys()), set(actual.keys())
    report = LayerwiseReport(reference_name, candidate_name, tolerance, inputs, caveat=caveat)
    for node in model.graph.node:
        for tensor in node.output:
            if tensor not in marked:
                continue
            if tensor not in produced:
                report.layers.append(LayerDifference(node.name, node.op_type, tensor, None, True, "not produced"))
                continue
            size, note = _difference(np.asarray(expected[tensor]), np.asarray(actual[tensor]))
            within = size is not None and size <= tolerance
            report.layers.append(LayerDifference(node.name, node.op_type, tensor, size, within, note))
    return report


def onnxrt_runner(model: object, name: str) -> object:
    """ONNX Runtime (CPU) on `model` (an onnx.ModelProto) with every tensor marked as an output."""
    from polygraphy import constants
    from polygraphy.backend.onnx import BytesFromOnnx, ModifyOutputs
    from polygraphy.backend.onnxrt import OnnxrtRunner, SessionFromOnnx

    marked = BytesFromOnnx(ModifyOutputs(model, outputs=constants.MARK_ALL, copy=True))
    return OnnxrtRunner(SessionFromOnnx(marked, providers=["CPUExecutionProvider"]), name=name)


def tensorrt_runner(
    source: Path,
    strongly_typed: bool,
    fp16: bool,
    batch: BatchSpec,
    input_name: str,
    input_size: Sequence[int],
    workspace_mib: int,
    name: str,
) -> object:
    """TensorRT on `source` with every tensor marked as an output, built as `edgekd.export.tensorrt.build_engine`
    builds the gated engine: strongly typed from the FP16 ONNX (TensorRT >= 11), or the FP16 builder flag; TF32
    off; the workspace limit; the batch profile."""
    import tensorrt as trt
    from polygraphy import constants
    from polygraphy.backend.trt import (
        CreateConfig,
        EngineFromNetwork,
        ModifyNetworkOutputs,
        NetworkFromOnnxPath,
        Profile,
        TrtRunner,
    )

    network = (
        NetworkFromOnnxPath(str(source), strongly_typed=True) if strongly_typed else NetworkFromOnnxPath(str(source))
    )
    marked = ModifyNetworkOutputs(network, outputs=constants.MARK_ALL)
    height, width = input_size
    profile = Profile().add(
        input_name, (batch.min, 3, height, width), (batch.opt, 3, height, width), (batch.max, 3, height, width)
    )
    config = CreateConfig(
        tf32=False,
        fp16=fp16 and not strongly_typed,
        profiles=[profile],
        memory_pool_limits={trt.MemoryPoolType.WORKSPACE: workspace_mib << 20},
    )
    return TrtRunner(EngineFromNetwork(marked, config=config), name=name)


def write_layerwise(report: LayerwiseReport, out_dir: Path) -> None:
    """layerwise.md and layerwise.json in `out_dir`."""
    atomic_write_text(out_dir / LAYERWISE_JSON, json.dumps(report.to_dict(), indent=2) + "\n")
    atomic_write_text(out_dir / LAYERWISE_MD, report.markdown())
