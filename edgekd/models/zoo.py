"""The model zoo: `<family>_<backbone>[_lite]` -> a Detector.

`_lite` variants are width-reduced students for CPU-sized runs: FPN, head and RoI-head width 64 instead of 256.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from edgekd.errors import EdgeKDError
from edgekd.models.backbones import BACKBONES, one_stage_backbone, two_stage_backbone
from edgekd.models.detector import Detector, DetectorConfig
from edgekd.models.one_stage import FCOSDetector, RetinaNetDetector
from edgekd.models.two_stage import FasterRCNNDetector

FAMILIES = ("retinanet", "fcos", "fasterrcnn")
_FULL_WIDTH, _LITE_WIDTH = 256, 64


@dataclass(frozen=True)
class ModelSpec:
    """What a zoo name means."""

    name: str
    family: str
    backbone: str
    width: int

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
    return specs


ZOO: dict[str, ModelSpec] = _zoo()


def model_spec(name: str) -> ModelSpec:
    if name not in ZOO:
        raise EdgeKDError(f"unknown model '{name}'; `edgekd models` lists the zoo: {', '.join(ZOO)}")
    return ZOO[name]


def build_detector(config: DetectorConfig, pretrained_backbone: Path | None = None) -> Detector:
    """Build the zoo model `config.name` (random init unless local ImageNet backbone weights are given)."""
    spec = model_spec(config.name)
    height, width = config.input_size
    if height % 32 or width % 32:
        raise EdgeKDError(f"--img-size {width}x{height}: width and height must be multiples of 32")
    if spec.family == "fasterrcnn":
        backbone = two_stage_backbone(spec.backbone, spec.width, pretrained_backbone)
        representation = 1024 if spec.width == _FULL_WIDTH else 256
        return FasterRCNNDetector(backbone, config, representation)
    backbone = one_stage_backbone(spec.backbone, spec.width, pretrained_backbone)
    detector_class = RetinaNetDetector if spec.family == "retinanet" else FCOSDetector
    return detector_class(backbone, config)
