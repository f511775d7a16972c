"""The model zoo: `<family>_<backbone>[_lite]` -> a Detector, plus torchvision's COCO architectures under
torchvision's builder names (`edgekd/models/torchvision_zoo.py`), whose COCO weights load unchanged.

`_lite` variants are width-reduced students for CPU-sized runs: FPN, head and RoI-head width 64 instead of 256.
`config.extra` may hold "frozen_bn" (bool) and "trainable_backbone_layers" (int), set for pretrained weights
(`edgekd.models.pretrained`), so a checkpoint rebuilds the same modules.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from edgekd.errors import EdgeKDError
from edgekd.models.backbones import (
    BACKBONES,
    MAX_TRAINABLE_LAYERS,
    BackboneSettings,
    one_stage_backbone,
    two_stage_backbone,
)
from edgekd.models.detector import Detector, DetectorConfig
from edgekd.models.gfl import GFLDetector
from edgekd.models.one_stage import FCOSDetector, OneStageDetector, RetinaNetDetector
from edgekd.models.torchvision_zoo import TORCHVISION_MODELS, TorchvisionModel, build_torchvision_detector
from edgekd.models.two_stage import FasterRCNNDetector, FasterRCNNLayout

ONE_STAGE: dict[str, type[OneStageDetector]] = {
    "retinanet": RetinaNetDetector,
    "fcos": FCOSDetector,
    "gfl": GFLDetector,
}
"""One-stage families (P3-P7 backbones): family name -> adapter class taking (backbone, config)."""
FAMILIES = (*ONE_STAGE, "fasterrcnn")
_FULL_WIDTH, _LITE_WIDTH = 256, 64


@dataclass(frozen=True)
class ModelSpec:
    """What a zoo name means."""

    name: str
    family: str
    backbone: str
    width: int
    torchvision: TorchvisionModel | None = None  # set for torchvision's COCO architectures

    @property
    def role(self) -> str:
        return "teacher" if self.backbone == "resnet50" else "student"


def _zoo() -> dict[str, ModelSpec]:
    specs = {}
    for family in FAMILIES:
        for backbone in BACKBONES:
            specs[f"{family}_{backbone}"] = ModelSpec(f"{family}_{backbone}", family, backbone, _FULL_WIDTH)
            if backbone != "resnet50":
                name = f"{family}_{backbone}_lite"
                specs[name] = ModelSpec(name, family, backbone, _LITE_WIDTH)
    for name, model in TORCHVISION_MODELS.items():
        specs[name] = ModelSpec(name, model.family, model.backbone, _FULL_WIDTH, model)
    return specs


ZOO: dict[str, ModelSpec] = _zoo()


def model_spec(name: str) -> ModelSpec:
    if name not in ZOO:
        raise EdgeKDError(f"unknown model '{name}'; `edgekd models` lists the zoo: {', '.join(ZOO)}")
    return ZOO[name]


def backbone_settings(config: DetectorConfig, spec: ModelSpec, weights: Path | None = None) -> BackboneSettings:
    """BN and trainable stages from `config.extra` ("frozen_bn", "trainable_backbone_layers"), checked."""
    frozen = config.extra.get("frozen_bn", False)
    if not isinstance(frozen, bool):
        raise EdgeKDError(f"{config.name}: config.extra.frozen_bn {frozen!r}: must be true or false")
    trainable = config.extra.get("trainable_backbone_layers")
    most = MAX_TRAINABLE_LAYERS[spec.backbone]
    if trainable is not None and (
        isinstance(trainable, bool) or not isinstance(trainable, int) or not 0 <= trainable <= most
    ):
        raise EdgeKDError(
            f"{config.name}: config.extra.trainable_backbone_layers {trainable!r}: {spec.backbone} has {most} "
            f"stages; must be a whole number from 0 to {most}"
        )
    return BackboneSettings(frozen, trainable, weights)


def build_detector(config: DetectorConfig, pretrained_backbone: Path | None = None) -> Detector:
    """Build the zoo model `config.name` (random init unless local ImageNet backbone weights are given)."""
    spec = model_spec(config.name)
    height, width = config.input_size
    if height % 32 or width % 32:
        raise EdgeKDError(f"--img-size {width}x{height}: width and height must be multiples of 32")
    settings = backbone_settings(config, spec, pretrained_backbone)
    if spec.torchvision is not None:
        return build_torchvision_detector(spec.torchvision, config, settings)
    if spec.family == "fasterrcnn":
        backbone = two_stage_backbone(spec.backbone, spec.width, settings)
        representation = 1024 if spec.width == _FULL_WIDTH else 256
        return FasterRCNNDetector(backbone, config, FasterRCNNLayout(representation=representation))
    backbone = one_stage_backbone(spec.backbone, spec.width, settings)
    return ONE_STAGE[spec.family](backbone, config)
