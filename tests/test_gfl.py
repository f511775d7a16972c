"""GFL (Li et al., NeurIPS 2020), the family added through the adapter contract: its losses and ATSS assignment on
hand-computed cases, a falling loss, distillation with every KD loss, and ONNX parity."""

from __future__ import annotations

import math

import numpy as np
import onnx
import onnxruntime
import pytest
import torch

from edgekd.distill.losses import LOSSES
from edgekd.export.nms import append_efficient_nms, append_onnx_nms
from edgekd.export.onnx import export_raw_graph
from edgekd.models.checkpoint import atomic_torch_save, detector_payload
from edgekd.models.detector import DetectorConfig
from edgekd.models.gfl import atss_assign, distribution_focal_loss, quality_focal_loss
from edgekd.models.zoo import ZOO, build_detector
from edgekd.runtime.metadata import BatchSpec
from edgekd.runtime.postprocess import PostprocessConfig
from tests.usererror import run_edgekd

CLASSES = ("Car", "Pedestrian", "Cyclist")
SIZE = (64, 160)


def test_zoo_holds_the_gfl_teacher_and_students():
    for name in ("gfl_resnet50", "gfl_resnet18", "gfl_resnet18_lite", "gfl_mobilenet_v3", "gfl_mobilenet_v3_lite"):
        assert ZOO[name].family == "gfl"


def test_quality_focal_loss_by_hand():
    # s = sigmoid(0) = 0.5, y = 0.8: -(0.2 log 0.5 + 0.8 log 0.5) * |0.8 - 0.5|^2 = 0.09 log 2
    # s = 0.25, y = 0: -log(0.75) * 0.25^2
    logits = torch.tensor([0.0, math.log(0.25 / 0.75)])
    quality = torch.tensor([0.8, 0.0])
    expected = torch.tensor([0.09 * math.log(2), -math.log(0.75) * 0.0625])
    assert torch.allclose(quality_focal_loss(logits, quality), expected, atol=1e-6)


def test_distribution_focal_loss_by_hand():
    # bins 0, 1, 2 with probabilities 0.1, 0.6, 0.3; y = 1.3 lies between bins 1 and 2:
    # -((2 - 1.3) log 0.6 + (1.3 - 1) log 0.3)
    logits = torch.log(torch.tensor([[0.1, 0.6, 0.3]]))
    expected = -(0.7 * math.log(0.6) + 0.3 * math.log(0.3))
    assert distribution_focal_loss(logits, torch.tensor([1.3])).item() == pytest.approx(expected, abs=1e-6)


def test_atss_assignment_on_a_hand_built_case():
    # four 10x10 anchors in a row (centres x = 5, 15, 25, 35); GT a = [0, 0, 12, 10] (centre x 6), GT b mirrored at
    # the right end (centre x 34). top-3 by centre distance for a: anchors 0, 1, 2 with IoU 100/120, 20/200, 0:
    # mean 0.311, std 0.455, threshold 0.766: only anchor 0 (centre inside a) is positive; b likewise takes anchor 3.
    anchors = torch.tensor([[0.0, 0, 10, 10], [10, 0, 20, 10], [20, 0, 30, 10], [30, 0, 40, 10]])
    gt = torch.tensor([[0.0, 0, 12, 10], [28, 0, 40, 10]])
    assert atss_assign(anchors, [4], gt, topk=3).tolist() == [0, -1, -1, 1]
    assert atss_assign(anchors, [4], torch.zeros(0, 4), topk=3).tolist() == [-1, -1, -1, -1]


def test_atss_gives_an_anchor_positive_for_two_gts_to_the_higher_iou():
    # anchors [0, 0, 10, 10], [10, 0, 20, 10] and a far one; top-3 takes all three for each GT.
    # GT 0 = [0, 0, 10, 12]: IoUs 100/120, 0, 0 -> mean 0.278, std 0.481, threshold 0.759 < 0.833: anchor 0 positive
    # GT 1 = [0, 0, 10, 11]: IoUs 100/110, 0, 0 -> mean 0.303, std 0.525, threshold 0.828 < 0.909: anchor 0 positive
    # anchor 0 goes to GT 1, whose IoU is higher
    anchors = torch.tensor([[0.0, 0, 10, 10], [10, 0, 20, 10], [50, 50, 60, 60]])
    gt = torch.tensor([[0.0, 0, 10, 12], [0, 0, 10, 11]])
    assert atss_assign(anchors, [3], gt, topk=3).tolist() == [1, -1, -1]


def test_loss_falls_on_a_tiny_run():
    torch.manual_seed(0)
    detector = build_detector(DetectorConfig("gfl_mobilenet_v3_lite", CLASSES, SIZE))
    images = torch.rand(2, 3, *SIZE) * 255
    targets = [
        {"boxes": torch.tensor([[10.0, 20.0, 60.0, 50.0], [100.0, 10.0, 116.0, 60.0]]), "labels": torch.tensor([0, 1])},
        {"boxes": torch.tensor([[30.0, 8.0, 90.0, 56.0]]), "labels": torch.tensor([2])},
    ]
    optimizer = torch.optim.AdamW(detector.parameters(), 2e-3)
    totals = []
    for _ in range(20):
        features = detector.features(detector.preprocess(images))
        losses = detector.loss(detector.head(features), features, targets)
        total = sum(losses.values())
        optimizer.zero_grad()
        total.backward()
        optimizer.step()
        totals.append(float(total.detach()))
    assert set(losses) == {"loss_qfl", "loss_dfl", "loss_giou"}
    assert totals[-1] < 0.5 * totals[0]


def test_onnx_parity_and_nms_tails():
    torch.manual_seed(0)
    detector = build_detector(DetectorConfig("gfl_mobilenet_v3_lite", CLASSES, SIZE)).eval()
    torch.nn.init.constant_(detector.head_module.gfl_cls.bias, -1.0)  # scores above the 0.05 threshold
    raw, count = export_raw_graph(detector, BatchSpec.static(2), 17)
    images = (torch.rand(2, 3, *SIZE) * 255).numpy()
    session = onnxruntime.InferenceSession(raw.SerializeToString(), providers=["CPUExecutionProvider"])
    boxes, scores = session.run(None, {session.get_inputs()[0].name: images})
    with torch.no_grad():
        expected_boxes, expected_scores = detector.raw(torch.from_numpy(images))
    assert count == expected_boxes.shape[1]
    assert np.abs(boxes - expected_boxes.numpy()).max() < 1e-3
    assert np.abs(scores - expected_scores.numpy()).max() < 1e-5
    post = PostprocessConfig(0.05, 0.5, 100, 1000)
    for model in (append_onnx_nms(raw, count, len(CLASSES), post), append_efficient_nms(raw, post)):
        onnx.checker.check_model(model)


@pytest.fixture(scope="module")
def gfl_teacher(tmp_path_factory) -> str:
    torch.manual_seed(0)
    detector = build_detector(DetectorConfig("gfl_resnet18_lite", CLASSES, SIZE))
    path = tmp_path_factory.mktemp("gfl") / "teacher.pt"
    atomic_torch_save(detector_payload(detector.eval()), path)
    return str(path)


def test_distill_gfl_pair_with_every_kd_loss(gfl_teacher, tiny_kitti, tmp_path, capsys, monkeypatch):
    recipe = tmp_path / "recipe.yaml"
    losses = "".join(f"  {name}: {{}}\n" for name in LOSSES)
    recipe.write_text(f"losses:\n{losses}schedule: {{epochs: 1, batch: 4}}\n", encoding="utf-8")
    out = tmp_path / "student"
    outcome = run_edgekd(
        capsys, monkeypatch, "distill", "--teacher", gfl_teacher, "--student", "gfl_mobilenet_v3_lite",
        "--recipe", recipe, "--data", tiny_kitti, "-o", out, "--device", "cpu", "--quiet",
    )  # fmt: skip
    assert outcome.code == 0, outcome.stderr + outcome.stdout
    metrics = (out / "metrics.csv").read_text(encoding="utf-8").splitlines()[0]
    for name in LOSSES:
        assert f"loss_{name}" in metrics
