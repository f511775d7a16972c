"""Starting from torchvision's COCO detectors offline: torchvision's own model with random weights is saved at the
hub-cache path under torchvision's file name, loaded with `--pretrained coco`, and compared with torchvision."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
from torchvision.models import detection, resnet18
from torchvision.ops import FrozenBatchNorm2d, clip_boxes_to_image

from edgekd.models.detector import DetectorConfig
from edgekd.models.pretrained import PretrainedOptions, build_pretrained_detector
from edgekd.models.torchvision_zoo import TORCHVISION_MODELS
from tests.usererror import assert_user_error, run_edgekd

SIZE = (64, 128)
KITTI = ("Car", "Pedestrian", "Cyclist", "Misc")
COCO_ROWS = {"Car": 3, "Pedestrian": 1, "Cyclist": 2}  # torchvision's category indices of car, person, bicycle
ENTRIES = [
    "fasterrcnn_resnet50_fpn",
    "retinanet_resnet50_fpn_v2",
    "fcos_resnet50_fpn",
    "fasterrcnn_mobilenet_v3_large_320_fpn",
]


def _cached_torchvision(name: str, hub: Path) -> torch.nn.Module:
    """torchvision's model with random weights (BN buffers randomised too), saved where `coco` looks for it."""
    torch.manual_seed(1)
    model = getattr(detection, name)(weights=None, weights_backbone=None).eval()
    state = model.state_dict()
    for key, value in state.items():
        if key.endswith("running_var"):
            value.uniform_(0.5, 2.0)
        elif key.endswith("running_mean"):
            value.normal_(0.0, 0.1)
    url = TORCHVISION_MODELS[name].coco_weights().url
    path = hub / "checkpoints" / url.rsplit("/", 1)[1]
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(state, path)
    return _frozen_batch_norm(model)


def _frozen_batch_norm(module: torch.nn.Module) -> torch.nn.Module:
    """`module` with each BatchNorm2d replaced by an equal FrozenBatchNorm2d, as torchvision's pretrained detectors
    are built (same numbers in eval mode; the same op order as edgekd's, so float rounding agrees too)."""
    for name, child in module.named_children():
        if isinstance(child, torch.nn.BatchNorm2d):
            frozen = FrozenBatchNorm2d(child.num_features, child.eps)
            frozen.load_state_dict({k: v for k, v in child.state_dict().items() if k != "num_batches_tracked"})
            setattr(module, name, frozen)
        else:
            _frozen_batch_norm(child)
    return module


def _class_keys(name: str) -> dict[str, str]:
    """torchvision key -> edgekd key of the class-specific tensors."""
    if name.startswith("fasterrcnn"):
        keys = [
            f"roi_heads.box_predictor.{layer}.{kind}"
            for layer in ("cls_score", "bbox_pred")
            for kind in ("weight", "bias")
        ]
        return {k: k for k in keys}
    return {
        f"head.classification_head.cls_logits.{kind}": f"head_module.classification_head.cls_logits.{kind}"
        for kind in ("weight", "bias")
    }


def _coco_classes() -> tuple[str, ...]:
    categories = TORCHVISION_MODELS["retinanet_resnet50_fpn_v2"].coco_weights().meta["categories"]
    return tuple(c for c in categories if c not in ("__background__", "N/A"))


@pytest.fixture
def hub(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    return tmp_path / "torch" / "hub"


@pytest.mark.parametrize("name", ENTRIES)
def test_coco_weights_load_unchanged_with_mapped_class_rows(name, hub):
    tv = _cached_torchvision(name, hub)
    lines = []
    detector = build_pretrained_detector(DetectorConfig(name, KITTI, SIZE), PretrainedOptions("coco"), lines.append)
    assert "Car <- car, Pedestrian <- person, Cyclist <- bicycle" in lines[1]
    assert "re-initialised (no counterpart): Misc" in lines[2]
    theirs = {k: v for k, v in tv.state_dict().items() if not k.endswith("num_batches_tracked")}
    mine = detector.state_dict()
    class_keys = _class_keys(name)
    for key, value in theirs.items():
        if key not in class_keys:
            assert torch.equal(
                mine[key.replace("head.", "head_module.", 1) if key.startswith("head.") else key], value
            ), key
    two_stage = name.startswith("fasterrcnn")
    anchors = 1 if two_stage else tv.anchor_generator.num_anchors_per_location()[0]
    for their_key, my_key in class_keys.items():
        per = 4 if "bbox_pred" in their_key else 1
        given = theirs[their_key].view(anchors, 91, per, *theirs[their_key].shape[1:])
        started = mine[my_key].view(anchors, len(KITTI) + two_stage, per, *theirs[their_key].shape[1:])
        if two_stage:
            assert torch.equal(started[:, 0], given[:, 0])  # background row
        for index, cls in enumerate(KITTI):
            row = started[:, index + two_stage]
            if cls in COCO_ROWS:
                assert torch.equal(row, given[:, COCO_ROWS[cls]]), (my_key, cls)
            elif my_key.endswith("weight"):  # a fresh row, not the COCO row in its place
                assert not torch.equal(row, given[:, index + two_stage]), (my_key, cls)
    if not two_stage:
        prior = -math.log((1 - 0.01) / 0.01)  # torchvision's focal-loss prior bias of a fresh class row
        bias = mine["head_module.classification_head.cls_logits.bias"].view(anchors, len(KITTI))
        assert torch.allclose(bias[:, KITTI.index("Misc")], torch.full((anchors,), prior))
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in detector.backbone.modules())
    # torchvision's default of 3 trainable stages: ResNet layer2-4; MobileNetV3 from block 7 (its 4th-last stage)
    trainable = {n.split(".")[0] for n, p in detector.backbone.body.named_parameters() if p.requires_grad}
    assert trainable == ({"layer2", "layer3", "layer4"} if "resnet" in name else {str(i) for i in range(7, 17)})


@pytest.mark.parametrize("name", ENTRIES)
@torch.no_grad()
def test_raw_outputs_equal_torchvision_for_the_coco_classes(name, hub):
    tv = _cached_torchvision(name, hub)
    classes = _coco_classes()
    detector = build_pretrained_detector(DetectorConfig(name, classes, SIZE), PretrainedOptions("coco"), lambda _: None)
    detector.eval()
    categories = list(TORCHVISION_MODELS[name].coco_weights().meta["categories"])
    columns = torch.tensor([categories.index(c) for c in classes])
    torch.manual_seed(2)
    x = torch.randn(2, 3, *SIZE)
    features = tv.backbone(x)
    boxes, scores = detector.decode(detector.head(detector.features(x)), detector.features(x))
    images = detection.image_list.ImageList(x, [SIZE] * 2)
    if name.startswith("fasterrcnn"):
        proposals, _ = tv.rpn(images, features)
        logits, deltas = tv.roi_heads.box_predictor(
            tv.roi_heads.box_head(tv.roi_heads.box_roi_pool(features, proposals, [SIZE] * 2))
        )
        expected_boxes = clip_boxes_to_image(tv.roi_heads.box_coder.decode(deltas, proposals), SIZE)
        # softmax over background + the 80 named classes (torchvision's also spans its 10 "N/A" slots)
        expected_scores = logits[:, torch.cat([torch.tensor([0]), columns])].softmax(-1)[:, 1:]
        count = detector.rpn.post_nms_top_n()
        start = 0
        for index, image_proposals in enumerate(proposals):
            rows = image_proposals.shape[0]
            mine_boxes = boxes[index].view(count, len(classes), 4)[:rows]
            mine_scores = scores[index].view(count, len(classes), len(classes))[:rows]
            their_boxes = expected_boxes[start : start + rows][:, columns]
            their_scores = expected_scores[start : start + rows]
            assert torch.allclose(mine_boxes, their_boxes, rtol=1e-4, atol=1e-4)  # pixels: float32 rounding
            assert torch.allclose(mine_scores.amax(-1), their_scores, atol=1e-4)
            start += rows
        return
    head = tv.head(list(features.values()))
    anchors = tv.anchor_generator(images, list(features.values()))
    if name.startswith("retinanet"):
        expected_boxes = torch.stack(
            [tv.box_coder.decode_single(r, a) for r, a in zip(head["bbox_regression"], anchors)]
        )
        expected_scores = head["cls_logits"].sigmoid()
    else:
        expected_boxes = tv.box_coder.decode(head["bbox_regression"], torch.stack(anchors))
        expected_scores = torch.sqrt(head["cls_logits"].sigmoid() * head["bbox_ctrness"].sigmoid())
    assert torch.allclose(boxes, clip_boxes_to_image(expected_boxes, SIZE), rtol=1e-4, atol=1e-4)
    assert torch.allclose(scores, expected_scores[..., columns], atol=1e-4)


def test_class_map_file_maps_rows(hub, tmp_path):
    tv = _cached_torchvision("fcos_resnet50_fpn", hub)
    mapping = tmp_path / "map.yaml"
    mapping.write_text("Misc: motorcycle\nCar: null\n", encoding="utf-8")
    lines = []
    options = PretrainedOptions("coco", class_map=mapping)
    detector = build_pretrained_detector(DetectorConfig("fcos_resnet50_fpn", KITTI, SIZE), options, lines.append)
    assert "Pedestrian <- person, Cyclist <- bicycle, Misc <- motorcycle" in lines[1]
    assert "re-initialised (no counterpart): Car" in lines[2]
    weight = detector.state_dict()["head_module.classification_head.cls_logits.weight"]
    assert torch.equal(weight[3], tv.state_dict()["head.classification_head.cls_logits.weight"][4])  # motorcycle


def test_train_from_coco_with_one_flag(hub, tiny_kitti, tmp_path, capsys, monkeypatch):
    _cached_torchvision("fasterrcnn_mobilenet_v3_large_320_fpn", hub)
    out = tmp_path / "run"
    outcome = run_edgekd(
        capsys, monkeypatch, "train", "fasterrcnn_mobilenet_v3_large_320_fpn", "--pretrained", "coco",
        "--data", tiny_kitti, "-o", out, "--img-size", "160x64", "--epochs", "1", "--batch", "4",
        "--device", "cpu", "--quiet",
    )  # fmt: skip
    assert outcome.code == 0, outcome.stderr
    assert "Car <- car" in outcome.stdout
    payload = torch.load(out / "last.pt", weights_only=True)
    assert payload["config"]["extra"] == {"frozen_bn": True}


def test_missing_coco_file_names_file_url_and_place(hub, tiny_kitti, tmp_path, capsys, monkeypatch):
    out = tmp_path / "run"
    outcome = run_edgekd(
        capsys, monkeypatch, "train", "retinanet_resnet50_fpn_v2", "--pretrained", "coco",
        "--data", tiny_kitti, "-o", out, "--img-size", "160x64", "--device", "cpu", "--quiet",
    )  # fmt: skip
    name = "retinanet_resnet50_fpn_v2_coco-5905b1c5.pth"
    assert_user_error(
        outcome,
        "--pretrained coco",
        name,
        f"https://download.pytorch.org/models/{name}",
        str(hub / "checkpoints"),
        out=out,
    )


def test_distill_student_from_an_edgekd_checkpoint_with_imagenet_free_frozen_bn(
    tiny_checkpoint, tiny_kitti, tmp_path, capsys, monkeypatch
):
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text("losses: {fgfi: {}}\nschedule: {epochs: 1, batch: 4}\n", encoding="utf-8")
    out = tmp_path / "student"
    outcome = run_edgekd(
        capsys, monkeypatch, "distill", "--teacher", tiny_checkpoint, "--student", "retinanet_mobilenet_v3_lite",
        "--recipe", recipe, "--data", tiny_kitti, "-o", out, "--device", "cpu", "--quiet",
        "--student-pretrained", tiny_checkpoint, "--trainable-backbone-layers", "2",
    )  # fmt: skip
    assert outcome.code == 0, outcome.stderr
    payload = torch.load(out / "last.pt", weights_only=True)
    assert payload["config"]["extra"] == {"frozen_bn": True, "trainable_backbone_layers": 2}
    teacher = torch.load(tiny_checkpoint, weights_only=True)["model"]
    frozen = "backbone.body.0.0.weight"  # the stem conv: not among the last 2 stages, so untouched by training
    assert torch.equal(payload["model"][frozen], teacher[frozen])


def _bad_class_map(tmp_path: Path) -> Path:
    path = tmp_path / "map.yaml"
    path.write_text("Tram: train\n", encoding="utf-8")
    return path


def _unknown_coco_class(tmp_path: Path) -> Path:
    path = tmp_path / "map.yaml"
    path.write_text("Car: spaceship\n", encoding="utf-8")
    return path


def _not_weights(tmp_path: Path) -> Path:
    path = tmp_path / "weights.pth"
    path.write_bytes(b"not a torch file")
    return path


def _wrong_architecture(tmp_path: Path) -> Path:
    path = tmp_path / "weights.pth"
    torch.save({"conv.weight": torch.zeros(1)}, path)
    return path


BAD_STARTS = {
    "coco-for-edgekd-zoo": (lambda tmp: ["--pretrained", "coco"], ["--pretrained coco", "fcos_resnet50_fpn"]),
    "missing-file": (lambda tmp: ["--pretrained", tmp / "nope.pth"], ["--pretrained: no such file", "nope.pth"]),
    "not-torch": (lambda tmp: ["--pretrained", _not_weights(tmp)], ["--pretrained: cannot read", "weights.pth"]),
    "other-architecture": (
        lambda tmp: ["--pretrained", _wrong_architecture(tmp)],
        ["is not retinanet_mobilenet_v3_lite's architecture", "lacks backbone."],
    ),
    "layers-from-scratch": (
        lambda tmp: ["--trainable-backbone-layers", "2"],
        ["--trainable-backbone-layers 2", "only with --pretrained"],
    ),
    "layers-too-many": (
        lambda tmp: ["--pretrained-backbone", "imagenet", "--trainable-backbone-layers", "7"],
        ["--trainable-backbone-layers 7", "choose 0 to 6"],
    ),
    "imagenet-missing": (
        lambda tmp: ["--pretrained-backbone", "imagenet"],
        ["--pretrained-backbone imagenet", "mobilenet_v3_large-8738ca79.pth", "https://download.pytorch.org/models/"],
    ),
    "class-map-without-weights": (
        lambda tmp: ["--class-map", _bad_class_map(tmp)],
        ["--class-map applies to --pretrained weights"],
    ),
    "class-map-unknown-class": (
        lambda tmp: ["--pretrained", "coco", "--class-map", _bad_class_map(tmp)],
        ["--class-map", "map.yaml", "'Tram' is not a dataset class"],
    ),
    "class-map-unknown-coco-class": (
        lambda tmp: ["--pretrained", "coco", "--class-map", _unknown_coco_class(tmp)],
        ["--class-map", "'spaceship' is not a class of COCO"],
    ),
    "both-weights": (
        lambda tmp: ["--pretrained", "coco", "--pretrained-backbone", "imagenet"],
        ["--pretrained already holds the backbone", "--pretrained-backbone"],
    ),
}


@pytest.mark.parametrize("case", list(BAD_STARTS))
def test_bad_pretrained_start_is_one_clear_error(case, hub, tiny_kitti, tmp_path, capsys, monkeypatch):
    options, needles = BAD_STARTS[case]
    model = "retinanet_mobilenet_v3_lite"
    if case.startswith("class-map-unknown"):
        model = "fcos_resnet50_fpn"
        _cached_torchvision(model, hub)
    out = tmp_path / "run"
    outcome = run_edgekd(
        capsys, monkeypatch, "train", model, "--data", tiny_kitti, "-o", out, "--img-size", "160x64",
        "--device", "cpu", "--quiet", *options(tmp_path),
    )  # fmt: skip
    assert_user_error(outcome, *needles, out=out)


@pytest.mark.parametrize(
    "extra, needle",
    [
        ({"frozen_bn": "yes"}, "config.extra.frozen_bn 'yes': must be true or false"),
        ({"frozen_bn": True, "trainable_backbone_layers": 9}, "config.extra.trainable_backbone_layers 9"),
    ],
)
def test_checkpoint_with_bad_backbone_settings_is_refused(
    extra, needle, tiny_checkpoint, tiny_kitti, tmp_path, capsys, monkeypatch
):
    payload = torch.load(tiny_checkpoint, weights_only=True)
    payload["config"]["extra"] = extra
    path = tmp_path / "bad.pt"
    torch.save(payload, path)
    outcome = run_edgekd(capsys, monkeypatch, "eval", path, "--data", tiny_kitti, "--device", "cpu")
    assert_user_error(outcome, needle)


def test_imagenet_backbone_from_the_hub_cache(hub):
    torch.manual_seed(3)
    classifier = resnet18()
    path = hub / "checkpoints" / "resnet18-f37072fd.pth"  # torchvision's ResNet18_Weights.IMAGENET1K_V1 file
    path.parent.mkdir(parents=True)
    torch.save(classifier.state_dict(), path)
    options = PretrainedOptions(backbone="imagenet", trainable_layers=5)
    detector = build_pretrained_detector(DetectorConfig("retinanet_resnet18_lite", KITTI, SIZE), options)
    body = detector.backbone.body
    assert torch.equal(body.layer3[0].conv1.weight, classifier.layer3[0].conv1.weight)
    assert torch.equal(body.bn1.running_var, classifier.bn1.running_var)
    assert isinstance(body.bn1, FrozenBatchNorm2d)
    assert all(p.requires_grad for p in body.parameters())
    assert detector.config.extra == {"frozen_bn": True, "trainable_backbone_layers": 5}


def test_imagenet_mobilenet_v3_small_freezes_as_torchvisions_extractor(hub):
    """MobileNetV3-Small from its ImageNet file, 3 trainable stages: the same parameters train as in torchvision's
    own `_mobilenet_extractor` (the rule its detection builders use) given the same classifier."""
    from torchvision.models import mobilenet_v3_small
    from torchvision.models.detection.backbone_utils import _mobilenet_extractor

    torch.manual_seed(4)
    classifier = mobilenet_v3_small(norm_layer=FrozenBatchNorm2d)
    path = hub / "checkpoints" / "mobilenet_v3_small-047dcff4.pth"  # torchvision's IMAGENET1K_V1 file
    path.parent.mkdir(parents=True)
    torch.save(classifier.state_dict(), path)
    options = PretrainedOptions(backbone="imagenet", trainable_layers=3)
    detector = build_pretrained_detector(DetectorConfig("fasterrcnn_mobilenet_v3_small_lite", KITTI, SIZE), options)
    body = detector.backbone.body
    assert torch.equal(body["9"].block[0][0].weight, classifier.features[9].block[0][0].weight)
    reference = _mobilenet_extractor(classifier, False, 3)[0]  # (features, a 1x1 conv)
    trains = {name for name, p in reference.named_parameters() if p.requires_grad}
    assert trains and {name for name, p in body.named_parameters() if p.requires_grad} == trains
