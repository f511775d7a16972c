"""Backbone + FPN builders shared by the three detector families.

Every backbone returns the same strides for a given family (P3-P7 for one-stage, P2-P6 for Faster R-CNN), so any
teacher/student pair of a family aligns cell for cell; only the channel count differs (KD adapters bridge it).
Backbones use trainable BatchNorm: edgekd trains from scratch by default (no hub downloads), where frozen BN
statistics would be meaningless.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn
from torchvision.models import mobilenet_v3_large, resnet18, resnet50
from torchvision.models.detection.backbone_utils import BackboneWithFPN
from torchvision.ops.feature_pyramid_network import ExtraFPNBlock, LastLevelMaxPool, LastLevelP6P7

from edgekd.errors import EdgeKDError

# (stage module names in the classifier, channels of each stage) for strides 4, 8, 16, 32.
_RESNET_STAGES = {
    "resnet50": (("layer1", "layer2", "layer3", "layer4"), (256, 512, 1024, 2048)),
    "resnet18": (("layer1", "layer2", "layer3", "layer4"), (64, 128, 256, 512)),
}
# MobileNetV3-Large `features` indices whose outputs have strides 4, 8, 16, 32 (and their channels).
_MOBILENET_STAGES = (("3", "6", "12", "16"), (24, 40, 112, 960))

BACKBONES = ("resnet50", "resnet18", "mobilenet_v3")


def _classifier(backbone: str) -> tuple[nn.Module, nn.Module, tuple[str, ...], tuple[int, ...]]:
    """The torchvision classifier, the module whose children form the stages, stage names and channels."""
    if backbone == "resnet50":
        model = resnet50(weights=None)
        return model, model, *_RESNET_STAGES[backbone]
    if backbone == "resnet18":
        model = resnet18(weights=None)
        return model, model, *_RESNET_STAGES[backbone]
    if backbone == "mobilenet_v3":
        model = mobilenet_v3_large(weights=None)
        return model, model.features, *_MOBILENET_STAGES
    raise EdgeKDError(f"unknown backbone '{backbone}'; choose one of {', '.join(BACKBONES)}")


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
    pretrained_backbone: Path | None = None,
) -> BackboneWithFPN:
    """Backbone stages from `first_stage` (0 = stride 4, 1 = stride 8) to stride 32, an FPN and extra levels."""
    classifier, body, names, channels = _classifier(backbone)
    _track_batch_statistics(classifier)
    if pretrained_backbone is not None:
        load_pretrained_backbone(classifier, pretrained_backbone)
    return_layers = {name: str(i) for i, name in enumerate(names[first_stage:])}
    return BackboneWithFPN(body, return_layers, list(channels[first_stage:]), out_channels, extra_blocks)


def one_stage_backbone(backbone: str, out_channels: int, pretrained: Path | None) -> BackboneWithFPN:
    """P3-P7 (strides 8-128), as torchvision's RetinaNet and FCOS use."""
    return build_fpn_backbone(backbone, out_channels, 1, LastLevelP6P7(out_channels, out_channels), pretrained)


def two_stage_backbone(backbone: str, out_channels: int, pretrained: Path | None) -> BackboneWithFPN:
    """P2-P6 (strides 4-64), as torchvision's Faster R-CNN FPN uses."""
    return build_fpn_backbone(backbone, out_channels, 0, LastLevelMaxPool(), pretrained)
