"""INT8 float-fallback search: layer grouping, the search on a model of known per-group AP costs, and
`edgekd export --int8 --int8-ap-budget` end to end on a tiny student with pseudo labels (its own detections), so
that INT8 visibly moves AP."""

from __future__ import annotations

import itertools
import json
from pathlib import Path
from types import SimpleNamespace

import onnx
import pseudo_labels
import pytest
import torch
from pseudo_labels import CLASSES
from typer.testing import CliRunner

from edgekd.cli import app
from edgekd.data.loader import load_dataset
from edgekd.evaluate import evaluate_detections
from edgekd.export.int8_search import LayerGroup, Measured, group_name, layer_groups, search_fallback
from edgekd.models.checkpoint import atomic_torch_save, detector_payload
from edgekd.runtime import predict_artifact
from edgekd.runtime.metadata import read_metadata


@pytest.mark.parametrize(
    ("node", "group"),
    [
        ("/backbone/body/body.3/block/block.1/block.1.0/Conv", "/backbone/body/body.3"),
        ("/backbone/fpn/inner_blocks.0/inner_blocks.0.0/Conv", "/backbone/fpn/inner_blocks.0"),
        ("/backbone/fpn/extra_blocks/p6/Conv", "/backbone/fpn/extra_blocks/p6"),
        (
            "/head_module/classification_head/conv/conv.1/conv.1.0_3/Conv",
            "/head_module/classification_head/conv/conv.1",
        ),
        ("/head_module/regression_head/bbox_reg_2/Conv", "/head_module/regression_head/bbox_reg"),
        ("Conv_7", "Conv_7"),
    ],
)
def test_group_name_is_the_module_scope(node, group):
    assert group_name(node) == group


def test_layer_groups_keep_graph_order_and_share_levels():
    nodes = ["/h/cls_logits_1/Conv", "/b/body.0/x/Conv", "/h/cls_logits/Conv", "/b/body.0/y/Conv"]
    assert layer_groups(nodes) == [
        LayerGroup("/h/cls_logits", ("/h/cls_logits_1/Conv", "/h/cls_logits/Conv")),
        LayerGroup("/b/body.0", ("/b/body.0/x/Conv", "/b/body.0/y/Conv")),
    ]


COSTS = {"a": 0.2, "b": 3.0, "c": 0.05, "d": 1.0, "e": 0.5}
"""AP points each group loses when quantised; losses add up (a model whose answer is known)."""
REFERENCE = {"AP": 50.0, "AP50": 70.0, "kitti_moderate": 40.0}


def _additive(calls: list):
    def measure(kept: tuple[str, ...], timed: bool) -> Measured:
        calls.append(kept)
        lost = sum(cost for name, cost in COSTS.items() if name not in kept)
        return Measured({key: value - lost for key, value in REFERENCE.items()}, 1.0 if timed else None)

    return measure


def _fewest_kept(budget: float) -> int:
    """Smallest number of groups kept in float (any choice) whose quantised rest loses at most `budget`."""
    for count in range(len(COSTS) + 1):
        for kept in itertools.combinations(COSTS, count):
            if sum(cost for name, cost in COSTS.items() if name not in kept) <= budget + 1e-9:
                return count
    raise AssertionError


@pytest.mark.parametrize("budget", [0.0, 0.1, 0.3, 0.8, 2.0, 4.0, 4.75, 100.0])
def test_search_keeps_the_fewest_groups_within_budget(budget):
    groups = [LayerGroup(name, (f"{name}/Conv",)) for name in COSTS]
    calls: list = []
    search = search_fallback(groups, REFERENCE, budget, _additive(calls))
    assert len(search.chosen.kept) == _fewest_kept(budget)
    remaining = sum(cost for name, cost in COSTS.items() if name not in search.chosen.kept)
    assert remaining <= budget + 1e-9
    assert search.chosen.ap_loss == pytest.approx(remaining)
    assert search.kept_nodes == [f"{name}/Conv" for name in search.chosen.kept]
    if budget + 1e-9 >= sum(COSTS.values()):  # plain INT8 is within: no sensitivity runs at all
        assert search.chosen.kept == () and calls == [()]
    else:
        assert [row.group for row in search.sensitivity] == ["b", "d", "e", "a", "c"]


def test_budget_zero_keeps_every_group_that_moves_ap():
    groups = [LayerGroup(name, (name,)) for name in COSTS]
    search = search_fallback(groups, REFERENCE, 0.0, _additive([]))
    assert sorted(search.chosen.kept) == sorted(COSTS)


def test_an_ap_gain_is_not_headroom():
    """|AP change| is what the budget bounds: quantising a group that *raises* AP by 2 points is not within 1."""
    groups = [LayerGroup("up", ("up",)), LayerGroup("flat", ("flat",))]

    def measure(kept: tuple[str, ...], timed: bool) -> Measured:
        gain = 0.0 if "up" in kept else 2.0
        return Measured({key: value + gain for key, value in REFERENCE.items()})

    search = search_fallback(groups, REFERENCE, 1.0, measure)
    assert search.chosen.kept == ("up",)


@pytest.fixture(scope="module")
def student(tiny_kitti, tmp_path_factory):
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("int8_search")
    detector = pseudo_labels.student()
    checkpoint = root / "run" / "best.pt"
    atomic_torch_save(detector_payload(detector), checkpoint)
    data = pseudo_labels.pseudo_labelled(tiny_kitti, root / "pseudo", detector)
    yield SimpleNamespace(root=root, checkpoint=checkpoint, data=data)
    torch.set_num_threads(threads)


def _export(student, budget: str, name: str, *extra: str) -> Path:
    out = student.root / name
    args = ["export", str(student.checkpoint), "-o", str(out), "--data", str(student.data), "--int8"]
    args += ["--calib-images", "12", "--int8-ap-budget", budget, "--threads", "1", "--quiet", *extra]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    return out


def _ap(model: Path, data: Path) -> float:
    val = load_dataset(data, "val", classes=CLASSES)
    return evaluate_detections(val, predict_artifact(model, val, threads=1)).coco.AP


def _float_nodes(model: onnx.ModelProto) -> set[str]:
    """Conv nodes whose weights are float (not the output of a DequantizeLinear): the ones kept in float (their
    input may still pass a Q/DQ pair when its producer is quantised)."""
    dequantized = {out for node in model.graph.node if node.op_type == "DequantizeLinear" for out in node.output}
    return {node.name for node in model.graph.node if node.op_type == "Conv" and node.input[1] not in dequantized}


def test_budget_zero_matches_fp32_ap_and_keeps_what_it_says(student):
    out = _export(student, "0", "zero")
    fp32_ap, int8_ap = _ap(out / "model.onnx", student.data), _ap(out / "model_int8.onnx", student.data)
    assert fp32_ap > 50  # pseudo labels: AP has room to fall
    assert int8_ap == pytest.approx(fp32_ap, abs=1e-9)
    quantization = read_metadata(out / "model_int8.onnx").quantization
    kept = quantization["kept_float_nodes"]
    assert _float_nodes(onnx.load(out / "model_int8.onnx")) == set(kept)
    assert {group_name(node) for node in kept} == set(quantization["kept_float_groups"])
    report = json.loads((out / "parity.json").read_text())["int8_search"]
    steps = report["steps"]
    assert steps[0]["kept_count"] == 0 and steps[0]["ap_loss"] > 0  # plain INT8 loses AP here
    assert steps[0]["AP"] == pytest.approx(fp32_ap - steps[0]["ap_loss"])
    assert all(step["latency_ms"] > 0 for step in steps)
    assert len(report["sensitivity"]) == report["groups"]
    assert (out / "int8_search.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "## INT8 float-fallback search" in (out / "parity.md").read_text()


def test_huge_budget_keeps_nothing_in_float(student):
    out = _export(student, "1000", "huge")
    quantization = read_metadata(out / "model_int8.onnx").quantization
    assert quantization["kept_float_nodes"] == [] and quantization["kept_float_groups"] == []
    assert _float_nodes(onnx.load(out / "model_int8.onnx")) == set()
    assert json.loads((out / "parity.json").read_text())["int8_search"]["sensitivity"] == []


def test_cpu_target_search_meets_its_budget_with_unsigned_activations(student):
    out = _export(student, "1", "cpu", "--int8-target", "cpu")
    fp32_ap, int8_ap = _ap(out / "model.onnx", student.data), _ap(out / "model_int8.onnx", student.data)
    assert abs(int8_ap - fp32_ap) <= 1 + 1e-9
    meta = read_metadata(out / "model_int8.onnx")
    assert meta.quantization["target"] == "cpu" and "U8S8" in meta.quantization["method"]
    model = onnx.load(out / "model_int8.onnx")
    initializers = {tensor.name: tensor for tensor in model.graph.initializer}
    activation_zero_points = {
        initializers[node.input[2]].data_type
        for node in model.graph.node
        if node.op_type == "QuantizeLinear" and node.input[0] not in initializers
    }
    assert activation_zero_points == {onnx.TensorProto.UINT8}
