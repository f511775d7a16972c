"""RetinaNet and FCOS adapters over torchvision's heads, box coders and loss code.

Anchors are sized for KITTI-like scenes, where most objects are small: RetinaNet's base anchor is 2x the stride
(torchvision's COCO default is 4x), with three octave scales and aspect ratios (h/w) 0.5, 1, 2.
"""

from __future__ import annotations

from functools import partial

import torch
from torch import Tensor, nn
from torchvision.models.detection import _utils as det_utils
from torchvision.models.detection.anchor_utils import AnchorGenerator
from torchvision.models.detection.fcos import FCOS, FCOSHead
from torchvision.models.detection.image_list import ImageList
from torchvision.models.detection.retinanet import RetinaNetHead
from torchvision.ops import box_iou, clip_boxes_to_image

from edgekd.models.detector import Detector, DetectorConfig, PairedLogits, Targets

ONE_STAGE_STRIDES = (8, 16, 32, 64, 128)


class OneStageDetector(Detector):
    """Shared parts of dense one-stage detectors: anchors, flattening and decoding."""

    strides = ONE_STAGE_STRIDES
    anchor_generator: AnchorGenerator
    torchvision_prefixes = {"head.": "head_module."}

    def class_rows(self) -> dict[str, tuple[int, int, int]]:
        """The classification conv: one block of K rows per anchor of a location."""
        groups = self.anchors_per_location()[0]
        prefix = "head_module.classification_head.cls_logits."
        return {prefix + "weight": (groups, 1, 0), prefix + "bias": (groups, 1, 0)}

    def _anchors(self, features: list[Tensor]) -> list[Tensor]:
        height, width = self.config.input_size
        batch = features[0].shape[0]
        image_list = ImageList(features[0].new_empty(batch, 3, height, width), [(height, width)] * batch)
        return self.anchor_generator(image_list, features)

    def _level_sizes(self, features: list[Tensor]) -> list[int]:
        return [f.shape[2] * f.shape[3] * a for f, a in zip(features, self.anchors_per_location())]

    def anchors_per_location(self) -> list[int]:
        return self.anchor_generator.num_anchors_per_location()

    def prior_layout(self) -> tuple:
        return self.anchor_generator.sizes, self.anchor_generator.aspect_ratios

    def class_logits(self, head_out: dict) -> Tensor:
        """Per-prior class logits (B, N, K) (sigmoid activation), for logit distillation."""
        return head_out["cls_logits"]

    def paired_logits(
        self, head_out: dict, features: list[Tensor], teacher: Detector, teacher_features: list[Tensor]
    ) -> PairedLogits:
        """Per-prior class logits of student and teacher on all of this detector's priors (sigmoid activation)."""
        with torch.no_grad():
            teacher_logits = teacher.class_logits(teacher.head(teacher_features))
        priors = torch.cat(self.priors(features))
        student_logits = list(self.class_logits(head_out).unbind(0))
        return PairedLogits(student_logits, list(teacher_logits.unbind(0)), [priors] * len(student_logits), "sigmoid")


class RetinaNetDetector(OneStageDetector):
    """RetinaNet (Lin et al., ICCV 2017) with a GroupNorm head (trains from scratch; torchvision's v2 head).

    `anchor_generator` None: edgekd's KITTI anchors (module docstring); torchvision's COCO model passes its own
    (4x the stride) and `box_loss` "giou" (its v2 regression loss; "l1" otherwise).
    """

    family = "retinanet"

    def __init__(
        self,
        backbone: nn.Module,
        config: DetectorConfig,
        anchor_generator: AnchorGenerator | None = None,
        box_loss: str = "l1",
    ) -> None:
        super().__init__(backbone, config)
        if anchor_generator is None:
            sizes = tuple(tuple(int(2 * s * 2 ** (i / 3)) for i in range(3)) for s in self.strides)
            anchor_generator = AnchorGenerator(sizes, ((0.5, 1.0, 2.0),) * len(sizes))
        self.anchor_generator = anchor_generator
        num_anchors = self.anchor_generator.num_anchors_per_location()[0]
        groups = min(32, backbone.out_channels // 4)
        self.head_module = RetinaNetHead(
            backbone.out_channels, num_anchors, self.num_classes, norm_layer=partial(nn.GroupNorm, groups)
        )
        self.head_module.regression_head._loss_type = box_loss
        self.box_coder = self.head_module.regression_head.box_coder
        self.proposal_matcher = det_utils.Matcher(0.5, 0.4, allow_low_quality_matches=True)

    def head(self, features: list[Tensor]) -> dict:
        return self.head_module(features)

    def loss(self, head_out: dict, features: list[Tensor], targets: Targets) -> dict[str, Tensor]:
        anchors = self._anchors(features)
        matched = []
        for anchors_per_image, target in zip(anchors, targets):
            if target["boxes"].numel() == 0:
                matched.append(anchors_per_image.new_full((anchors_per_image.shape[0],), -1, dtype=torch.int64))
                continue
            matched.append(self.proposal_matcher(box_iou(target["boxes"], anchors_per_image)))
        losses = self.head_module.compute_loss(targets, head_out, anchors, matched)
        return {"loss_cls": losses["classification"], "loss_box": losses["bbox_regression"]}

    def priors(self, features: list[Tensor]) -> list[Tensor]:
        return list(self._anchors(features)[0].split(self._level_sizes(features)))

    def decode(self, head_out: dict, features: list[Tensor]) -> tuple[Tensor, Tensor]:
        anchors = self._anchors(features)[0]
        regression = head_out["bbox_regression"]
        batch, count = regression.shape[:2]
        flat_anchors = anchors.unsqueeze(0).expand(batch, -1, -1).reshape(-1, 4)
        boxes = self.box_coder.decode_single(regression.reshape(-1, 4), flat_anchors).view(batch, count, 4)
        return clip_boxes_to_image(boxes, self.config.input_size), head_out["cls_logits"].sigmoid()


class FCOSDetector(OneStageDetector):
    """FCOS (Tian et al., ICCV 2019), anchor-free; KD priors are virtual squares of side 8 x stride."""

    family = "fcos"

    def __init__(self, backbone: nn.Module, config: DetectorConfig) -> None:
        super().__init__(backbone, config)
        self.anchor_generator = AnchorGenerator(tuple((s,) for s in self.strides), ((1.0,),) * len(self.strides))
        self.head_module = FCOSHead(backbone.out_channels, 1, self.num_classes, num_convs=4)
        # torchvision zeroes the distance regression's bias under its ReLU; trained from scratch with AdamW the ReLU
        # dies (every distance 0, GIoU loss stuck at 1, AP 0). Each distance starts at one prior size instead (1.0:
        # distances are in units of the level's prior, normalize_by_size); pretrained weights replace it.
        nn.init.constant_(self.head_module.regression_head.bbox_reg.bias, 1.0)
        self.box_coder = det_utils.BoxLinearCoder(normalize_by_size=True)
        self.center_sampling_radius = 1.5

    def head(self, features: list[Tensor]) -> dict:
        return self.head_module(features)

    def loss(self, head_out: dict, features: list[Tensor], targets: Targets) -> dict[str, Tensor]:
        anchors = self._anchors(features)
        # torchvision's FCOS.compute_loss does the centre-sampling assignment; it reads self.head and
        # self.center_sampling_radius, which this adapter provides under the same meaning.
        losses = FCOS.compute_loss(_FCOSLossView(self), targets, head_out, anchors, self._level_sizes(features))
        return {
            "loss_cls": losses["classification"],
            "loss_box": losses["bbox_regression"],
            "loss_ctr": losses["bbox_ctrness"],
        }

    def priors(self, features: list[Tensor]) -> list[Tensor]:
        points = self._anchors(features)[0].split(self._level_sizes(features))
        squares = []
        for level_points, stride in zip(points, self.strides):
            centres = (level_points[:, :2] + level_points[:, 2:]) / 2
            half = 4.0 * stride
            squares.append(torch.cat([centres - half, centres + half], dim=1))
        return squares

    def decode(self, head_out: dict, features: list[Tensor]) -> tuple[Tensor, Tensor]:
        anchors = self._anchors(features)[0]
        boxes = self.box_coder.decode(head_out["bbox_regression"], anchors.unsqueeze(0))
        boxes = clip_boxes_to_image(boxes, self.config.input_size)
        scores = torch.sqrt(head_out["cls_logits"].sigmoid() * head_out["bbox_ctrness"].sigmoid())
        return boxes, scores


class _FCOSLossView:
    """The two attributes torchvision's FCOS.compute_loss reads, taken from our adapter."""

    def __init__(self, detector: FCOSDetector) -> None:
        self.head = detector.head_module
        self.center_sampling_radius = detector.center_sampling_radius
