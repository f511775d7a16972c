"""Backbone + FPN builders shared by the three detector families.

Every backbone returns the same strides for a given family (P3-P7 for one-stage, P2-P6 for Faster R-CNN), so any
teacher/student pair of a family aligns cell for cell; only the channel count differs (KD adapters bridge it).
Backbones use trainable BatchNorm when they train from scratch (the default: no hub downloads), where frozen BN
statistics would be meaningless. With pretrained weights (`BackboneSettings.frozen_bn`) they follow torchvision's
practice: FrozenBatchNorm2d and only the last `trainable_layers` stages train.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn
from torchvision.models import mobilenet_v3_large, mobilenet_v3_small, resnet18, resnet50
from torchvision.models.detection.backbone_utils import BackboneWithFPN
from torchvision.ops.feature_pyramid_network import ExtraFPNBlock, LastLevelMaxPool, LastLevelP6P7
from torchvision.ops.misc import FrozenBatchNorm2d

from edgekd.errors import EdgeKDError


@dataclass(frozen=True)
class _BackboneSpec:
    """A torchvision classifier used as a detector backbone: its builder, whether its stages are the children of
    `features` (MobileNetV3) or of the model itself (ResNet), the stage module names and channels for strides 4, 8,
    16, 32, and how many stages `trainable_layers` may count (torchvision's limit for the family)."""

    builder: Callable[..., nn.Module]
    in_features: bool
    stages: tuple[str, ...]
    channels: tuple[int, ...]
    max_trainable: int


# MobileNetV3 stage indices: the blocks ending at each stride (Howard et al. 2019, Tables 1 and 2); "mobilenet_v3" is
# MobileNetV3-Large.
_BACKBONES = {
    "resnet50": _BackboneSpec(resnet50, False, ("layer1", "layer2", "layer3", "layer4"), (256, 512, 1024, 2048), 5),
    "resnet18": _BackboneSpec(resnet18, False, ("layer1", "layer2", "layer3", "layer4"), (64, 128, 256, 512), 5),
    "mobilenet_v3": _BackboneSpec(mobilenet_v3_large, True, ("3", "6", "12", "16"), (24, 40, 112, 960), 6),
    "mobilenet_v3_small": _BackboneSpec(mobilenet_v3_small, True, ("1", "3", "8", "12"), (16, 24, 48, 576), 6),
}
BACKBONES = tuple(_BACKBONES)
MAX_TRAINABLE_LAYERS = {name: spec.max_trainable for name, spec in _BACKBONES.items()}
DEFAULT_TRAINABLE_LAYERS = 3  # torchvision's default for its pretrained detectors


@dataclass(frozen=True)
class BackboneSettings:
    """How a backbone is built: `frozen_bn` FrozenBatchNorm2d and only the last `trainable_layers` stages train
    (torchvision's rule for pretrained detectors); `weights` local ImageNet classifier weights to load."""

    frozen_bn: bool = False
    trainable_layers: int | None = None
    weights: Path | None = None


def _spec(backbone: str) -> _BackboneSpec:
    if backbone not in _BACKBONES:
        raise EdgeKDError(f"unknown backbone '{backbone}'; choose one of {', '.join(BACKBONES)}")
    return _BACKBONES[backbone]


def classifier_builder(backbone: str) -> Callable[..., nn.Module]:
    """The torchvision classifier builder of `backbone` (torchvision's `get_model_weights` takes it too)."""
    return _spec(backbone).builder


def classifier_model(backbone: str, frozen_bn: bool = False) -> nn.Module:
    """The torchvision classifier (random weights), with FrozenBatchNorm2d when `frozen_bn`."""
    norm = {"norm_layer": FrozenBatchNorm2d} if frozen_bn else {}
    return _spec(backbone).builder(weights=None, **norm)


def _classifier(backbone: str, frozen_bn: bool) -> tuple[nn.Module, nn.Module, tuple[str, ...], tuple[int, ...]]:
    """The torchvision classifier, the module whose children form the stages, stage names and channels."""
    spec = _spec(backbone)
    model = classifier_model(backbone, frozen_bn)
    return model, model.features if spec.in_features else model, spec.stages, spec.channels


def freeze_layers(classifier: nn.Module, backbone: str, trainable: int) -> None:
    """Stop gradients to all but the last `trainable` stages, by torchvision's rule
    (`backbone_utils._resnet_fpn_extractor`, `_mobilenet_extractor`): ResNet counts layer4..layer1 then conv1 (+bn1
    at 5); MobileNetV3 counts its stages (blocks that reduce resolution) from the end, 0 freezes every layer."""
    if _spec(backbone).in_features:
        features = classifier.features
        stages = [0] + [i for i, b in enumerate(features) if getattr(b, "_is_cn", False)] + [len(features) - 1]
        frozen = features[: len(features) if trainable == 0 else stages[len(stages) - trainable]]
        for parameter in frozen.parameters():
            parameter.requires_grad_(False)
        return
    layers = ("layer4", "layer3", "layer2", "layer1", "conv1")[:trainable] + (("bn1",) if trainable == 5 else ())
    for name, parameter in classifier.named_parameters():
        if not name.startswith(layers):
            parameter.requires_grad_(False)


def load_pretrained_backbone(classifier: nn.Module, path: Path) -> None:
    """Load local ImageNet weights (a torchvision classifier state_dict) into `classifier`.

    Only the classification layer may be missing or unexpected; anything else means the wrong file.
    """
    if not path.is_file():
        raise EdgeKDError(f"--pretrained-backbone: no such file: {path}")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # torch raises several types for corrupt or foreign files
        raise EdgeKDError(f"--pretrained-backbone: cannot read {path}: {error}") from error
    if isinstance(state, dict) and "state_dict" in state:
        state = state["state_dict"]
    result = classifier.load_state_dict(state, strict=False)
    head_prefixes = ("fc.", "classifier.")
    bad = [k for k in [*result.missing_keys, *result.unexpected_keys] if not k.startswith(head_prefixes)]
    if bad:
        raise EdgeKDError(
            f"--pretrained-backbone: {path} does not match the backbone; mismatched keys: {', '.join(bad[:5])}"
        )


def _track_batch_statistics(module: nn.Module) -> None:
    """BN momentum 0.1 everywhere: torchvision's MobileNetV3 uses 0.01, tuned for long ImageNet schedules, whose
    running statistics lag far behind the weights in a short from-scratch detection run."""
    for layer in module.modules():
        if isinstance(layer, nn.BatchNorm2d):
            layer.momentum = 0.1


def build_fpn_backbone(
    backbone: str,
    out_channels: int,
    first_stage: int,
    extra_blocks: ExtraFPNBlock,
    settings: BackboneSettings = BackboneSettings(),
) -> BackboneWithFPN:
    """Backbone stages from `first_stage` (0 = stride 4, 1 = stride 8) to stride 32, an FPN and extra levels."""
    classifier, body, names, channels = _classifier(backbone, settings.frozen_bn)
    if settings.frozen_bn:
        trainable = settings.trainable_layers
        freeze_layers(classifier, backbone, DEFAULT_TRAINABLE_LAYERS if trainable is None else trainable)
    else:
        _track_batch_statistics(classifier)
    if settings.weights is not None:
        load_pretrained_backbone(classifier, settings.weights)
    return_layers = {name: str(i) for i, name in enumerate(names[first_stage:])}
    return BackboneWithFPN(body, return_layers, list(channels[first_stage:]), out_channels, extra_blocks)


def one_stage_backbone(backbone: str, out_channels: int, settings: BackboneSettings) -> BackboneWithFPN:
    """P3-P7 (strides 8-128), as torchvision's RetinaNet and FCOS use."""
    return build_fpn_backbone(backbone, out_channels, 1, LastLevelP6P7(out_channels, out_channels), settings)


def two_stage_backbone(backbone: str, out_channels: int, settings: BackboneSettings) -> BackboneWithFPN:
    """P2-P6 (strides 4-64), as torchvision's Faster R-CNN FPN uses."""
    return build_fpn_backbone(backbone, out_channels, 0, LastLevelMaxPool(), settings)
