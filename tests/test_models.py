"""The detector adapter: every family's tiny student builds, trains, decodes, and round-trips a checkpoint."""

from __future__ import annotations

import pytest
import torch

from edgekd.errors import EdgeKDError
from edgekd.models.checkpoint import atomic_torch_save, detector_payload, load_detector, read_checkpoint
from edgekd.models.complexity import count_parameters, gflops
from edgekd.models.detector import DetectorConfig
from edgekd.models.zoo import ZOO, build_detector

CLASSES = ("Car", "Pedestrian", "Cyclist")
STUDENTS = [
    "retinanet_mobilenet_v3_lite",
    "fcos_mobilenet_v3_lite",
    "fasterrcnn_mobilenet_v3_lite",
    "fasterrcnn_mobilenet_v3_small_lite",
]


def _targets() -> list[dict[str, torch.Tensor]]:
    return [
        {"boxes": torch.tensor([[10.0, 20.0, 60.0, 50.0], [100.0, 10.0, 116.0, 60.0]]), "labels": torch.tensor([0, 1])},
        {"boxes": torch.zeros(0, 4), "labels": torch.zeros(0, dtype=torch.int64)},
    ]


def test_zoo_has_every_family_with_four_backbones_and_lite_students():
    backbones = ("resnet50", "resnet18", "mobilenet_v3", "mobilenet_v3_small")
    lite = ("resnet18_lite", "mobilenet_v3_lite", "mobilenet_v3_small_lite")
    for family in ("retinanet", "fcos", "gfl", "fasterrcnn"):
        for backbone in backbones + lite:
            assert f"{family}_{backbone}" in ZOO
    assert "retinanet_resnet50_lite" not in ZOO


def test_mobilenet_v3_small_stages_are_torchvisions_feature_maps():
    """The small backbone's FPN inputs are torchvision's MobileNetV3-Small blocks at strides 4, 8, 16, 32: the last
    block of each resolution (Howard et al. 2019, Table 2), so the FPN sees 16, 24, 48 and 576 channels."""
    from torchvision.models import mobilenet_v3_small

    torch.manual_seed(0)
    detector = build_detector(DetectorConfig("fasterrcnn_mobilenet_v3_small_lite", CLASSES, (64, 128)))
    reference = mobilenet_v3_small()
    reference.features.load_state_dict(detector.backbone.body.state_dict())
    reference.eval(), detector.eval()
    image = torch.rand(1, 3, 64, 128)
    with torch.no_grad():
        maps, x = [], image
        for block in reference.features:
            x = block(x)
            maps.append(x)
        body = detector.backbone.body(image)
    last_of_each_stride = [max(i for i, m in enumerate(maps) if m.shape[-1] == 128 // s) for s in (4, 8, 16, 32)]
    assert [m.shape[1] for m in body.values()] == [16, 24, 48, 576]
    for got, index in zip(body.values(), last_of_each_stride):
        assert torch.equal(got, maps[index])


@pytest.mark.parametrize("name", STUDENTS)
def test_adapter_contract(name):
    torch.manual_seed(0)
    detector = build_detector(DetectorConfig(name, CLASSES, (64, 128)))
    images = torch.rand(2, 3, 64, 128) * 255
    features = detector.features(detector.preprocess(images))
    assert len(features) == len(detector.strides) == 5
    for feature, stride in zip(features, detector.strides):
        # ceil division: the last levels of a 64-px-high input are 1 cell high
        assert feature.shape[2] == -(-64 // stride) and feature.shape[3] == -(-128 // stride)
    priors = detector.priors(features)
    for prior, feature, per_cell in zip(priors, features, detector.anchors_per_location()):
        assert prior.shape == (feature.shape[2] * feature.shape[3] * per_cell, 4)
    losses = detector.loss(detector.head(features), features, _targets())
    total = sum(losses.values())
    assert torch.isfinite(total)
    total.backward()
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in detector.backbone.parameters())
    detector.eval()
    with torch.no_grad():
        boxes, scores = detector.raw(images)
    assert boxes.shape[:2] == scores.shape[:2] and scores.shape[2] == 3
    assert float(boxes[..., 0::2].min()) >= 0 and float(boxes[..., 0::2].max()) <= 128


def test_fcos_distances_start_at_one_prior_per_side():
    """FCOS regresses ReLU distances in units of the level's prior (side = stride): started at 0, as torchvision
    does, they died under AdamW from scratch (every distance 0, GIoU loss stuck at exactly 1, AP 0 after 2 epochs
    on the CPU preset). Started at one prior, every initial box is alive: about 2 x stride wide and high."""
    torch.manual_seed(0)
    detector = build_detector(DetectorConfig("fcos_mobilenet_v3_lite", CLASSES, (64, 128))).eval()
    with torch.no_grad():
        features = detector.features(detector.preprocess(torch.rand(1, 3, 64, 128) * 255))
        distances = detector.head(features)["bbox_regression"][0]
    assert float(distances.min()) > 0.5 and float(distances.max()) < 1.5
    with torch.no_grad():
        boxes, _ = detector.decode(detector.head(features), features)
    level = features[0].shape[2] * features[0].shape[3]  # stride-8 cells come first
    widths = boxes[0, :level, 2] - boxes[0, :level, 0]
    inner = widths[(boxes[0, :level, 0] > 0) & (boxes[0, :level, 2] < 128)]  # boxes not clipped at the border
    assert float(inner.min()) > 8 and float(inner.max()) < 24


def test_postprocess_maps_boxes_back_to_original_pixels():
    detector = build_detector(DetectorConfig("retinanet_mobilenet_v3_lite", CLASSES, (64, 128))).eval()
    boxes = torch.tensor([[[10.0, 10.0, 30.0, 20.0], [11.0, 10.0, 31.0, 20.0], [50.0, 5.0, 60.0, 60.0]]])
    scores = torch.tensor([[[0.9, 0.0, 0.0], [0.8, 0.0, 0.0], [0.0, 0.6, 0.01]]])
    (result,) = detector.postprocess(boxes, scores, torch.tensor([[0.5, 0.25]]))
    # box 2 overlaps box 1 with IoU 19/21 > 0.5 -> suppressed; 0.01 is under the 0.05 score threshold
    assert result.labels.tolist() == [0, 1]
    assert result.boxes.tolist() == [[20.0, 40.0, 60.0, 80.0], [100.0, 20.0, 120.0, 240.0]]
    assert result.scores.tolist() == pytest.approx([0.9, 0.6])


def test_checkpoint_round_trip_is_weights_only_and_exact(tmp_path):
    torch.manual_seed(1)
    detector = build_detector(DetectorConfig("fcos_mobilenet_v3_lite", CLASSES, (64, 128))).eval()
    path = tmp_path / "model.pt"
    atomic_torch_save(detector_payload(detector, metrics={"AP": 1.0}), path)
    assert [p.name for p in tmp_path.iterdir()] == ["model.pt"]  # no temporary left behind
    loaded, payload = load_detector(path)
    assert payload["config"]["classes"] == list(CLASSES) and payload["metrics"] == {"AP": 1.0}
    images = torch.rand(1, 3, 64, 128) * 255
    with torch.no_grad():
        pairs = list(zip(detector.raw(images), loaded.raw(images)))
    for expected, actual in pairs:
        assert torch.equal(expected, actual)


def test_bad_checkpoints_fail_cleanly(tmp_path):
    with pytest.raises(EdgeKDError, match="not found"):
        read_checkpoint(tmp_path / "missing.pt")
    (tmp_path / "junk.pt").write_text("not a checkpoint")
    with pytest.raises(EdgeKDError, match="cannot read"):
        read_checkpoint(tmp_path / "junk.pt")
    torch.save({"weights": torch.zeros(1)}, tmp_path / "foreign.pt")
    with pytest.raises(EdgeKDError, match="not an edgekd checkpoint"):
        read_checkpoint(tmp_path / "foreign.pt")


def test_unknown_model_and_bad_size_are_clear_errors():
    with pytest.raises(EdgeKDError, match="unknown model 'yolo'"):
        build_detector(DetectorConfig("yolo", CLASSES, (64, 128)))
    with pytest.raises(EdgeKDError, match="multiples of 32"):
        build_detector(DetectorConfig("retinanet_mobilenet_v3_lite", CLASSES, (60, 128)))


def test_lite_student_is_smaller_than_teacher():
    teacher = build_detector(DetectorConfig("retinanet_resnet50", CLASSES, (64, 128)))
    student = build_detector(DetectorConfig("retinanet_mobilenet_v3_lite", CLASSES, (64, 128)))
    assert count_parameters(student) * 5 < count_parameters(teacher)
    assert gflops(student) * 5 < gflops(teacher)
