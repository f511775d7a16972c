"""Zoo entries that are exactly torchvision's COCO detectors, so torchvision's weights load unchanged.

Each entry is built from torchvision's own parts as its builder in `torchvision.models.detection` builds them:
the same backbone extractor (`_resnet_fpn_extractor`, `_mobilenet_extractor`), FPN levels and extra blocks,
anchors, head norms and RPN/RoI settings. How they differ from edgekd's own zoo (`edgekd/models/zoo.py`, which
uses P3-P7 or P2-P6 for every backbone and KITTI-sized anchors):

- `fasterrcnn_resnet50_fpn`: P2-P6 (strides 4-64), max-pool P6; one anchor size per level, 32-512 (8x the
  stride), 3 aspect ratios.
- `retinanet_resnet50_fpn_v2`: P3-P7 (8-128), P6 from C5 (not P5); anchors 4x the stride, 3 octaves, 3 ratios;
  GroupNorm head, GIoU box loss.
- `fcos_resnet50_fpn`: P3-P7 (8-128), P6 from P5; one point per location (as edgekd's FCOS).
- `fasterrcnn_mobilenet_v3_large_fpn`: two stride-32 maps (outputs of blocks 13 and 16) and a max-pool level,
  strides (32, 32, 64); anchors 32-512 on every level (15 per location).
- `fasterrcnn_mobilenet_v3_large_320_fpn`: as above, 150 RPN proposals at test time.

torchvision builds its pretrained models with FrozenBatchNorm2d and 3 trainable backbone stages; edgekd does the
same whenever weights are pretrained (`BackboneSettings.frozen_bn`), and trains every layer with BatchNorm2d from
scratch (torchvision's `weights=None, weights_backbone=None` model), which differ only in BN buffers.
"""

from __future__ import annotations

from dataclasses import dataclass

from torch import nn
from torchvision.models import get_model_weights
from torchvision.models._api import WeightsEnum
from torchvision.models.detection import retinanet as tv_retinanet
from torchvision.models.detection.anchor_utils import AnchorGenerator
from torchvision.models.detection.backbone_utils import _mobilenet_extractor, _resnet_fpn_extractor
from torchvision.ops.feature_pyramid_network import LastLevelP6P7

from edgekd.models.backbones import (
    DEFAULT_TRAINABLE_LAYERS,
    MAX_TRAINABLE_LAYERS,
    BackboneSettings,
    classifier_model,
    load_pretrained_backbone,
)
from edgekd.models.detector import Detector, DetectorConfig
from edgekd.models.one_stage import FCOSDetector, RetinaNetDetector
from edgekd.models.two_stage import FasterRCNNDetector, FasterRCNNLayout


@dataclass(frozen=True)
class TorchvisionModel:
    """A torchvision COCO detector: its builder name (= the zoo name), family and backbone."""

    builder: str
    family: str
    backbone: str

    def coco_weights(self) -> WeightsEnum:
        """torchvision's COCO weights entry of the builder (file URL, categories)."""
        return get_model_weights(self.builder)["COCO_V1"]


TORCHVISION_MODELS = {
    model.builder: model
    for model in (
        TorchvisionModel("fasterrcnn_resnet50_fpn", "fasterrcnn", "resnet50"),
        TorchvisionModel("retinanet_resnet50_fpn_v2", "retinanet", "resnet50"),
        TorchvisionModel("fcos_resnet50_fpn", "fcos", "resnet50"),
        TorchvisionModel("fasterrcnn_mobilenet_v3_large_fpn", "fasterrcnn", "mobilenet_v3"),
        TorchvisionModel("fasterrcnn_mobilenet_v3_large_320_fpn", "fasterrcnn", "mobilenet_v3"),
    )
}

_MOBILE_LAYOUT = FasterRCNNLayout(
    strides=(32, 32, 64),
    anchor_sizes=((32, 64, 128, 256, 512),) * 3,
    roi_levels=("0", "1"),
    rpn_post_nms_train=2000,
    rpn_post_nms_test=1000,
    rpn_score_thresh=0.05,
    roi_batch=512,
)
_LAYOUTS = {
    "fasterrcnn_resnet50_fpn": FasterRCNNLayout(
        anchor_sizes=((32,), (64,), (128,), (256,), (512,)),
        rpn_post_nms_train=2000,
        rpn_post_nms_test=1000,
        roi_batch=512,
    ),
    "fasterrcnn_mobilenet_v3_large_fpn": _MOBILE_LAYOUT,
    "fasterrcnn_mobilenet_v3_large_320_fpn": FasterRCNNLayout(
        **{**_MOBILE_LAYOUT.__dict__, "rpn_pre_nms_test": 150, "rpn_post_nms_test": 150}
    ),
}


def _backbone(model: TorchvisionModel, settings: BackboneSettings) -> nn.Module:
    """torchvision's backbone + FPN of `model`; all layers train and BN is trainable unless `settings.frozen_bn`."""
    classifier = classifier_model(model.backbone, settings.frozen_bn)
    if settings.weights is not None:
        load_pretrained_backbone(classifier, settings.weights)
    trainable = MAX_TRAINABLE_LAYERS[model.backbone]
    if settings.frozen_bn:
        trainable = DEFAULT_TRAINABLE_LAYERS if settings.trainable_layers is None else settings.trainable_layers
    if model.backbone == "mobilenet_v3":
        return _mobilenet_extractor(classifier, True, trainable)
    if model.family == "fasterrcnn":
        return _resnet_fpn_extractor(classifier, trainable)
    extra = LastLevelP6P7(2048, 256) if model.family == "retinanet" else LastLevelP6P7(256, 256)
    return _resnet_fpn_extractor(classifier, trainable, returned_layers=[2, 3, 4], extra_blocks=extra)


def build_torchvision_detector(model: TorchvisionModel, config: DetectorConfig, settings: BackboneSettings) -> Detector:
    """The adapter over torchvision's architecture `model` for `config.classes` (random weights)."""
    backbone = _backbone(model, settings)
    if model.family == "fasterrcnn":
        return FasterRCNNDetector(backbone, config, _LAYOUTS[model.builder])
    if model.family == "retinanet":
        anchors: AnchorGenerator = tv_retinanet._default_anchorgen()
        return RetinaNetDetector(backbone, config, anchors, box_loss="giou")
    return FCOSDetector(backbone, config)
