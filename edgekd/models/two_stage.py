"""Faster R-CNN (Ren et al., NeurIPS 2015) with FPN, as an adapter over torchvision's RPN and RoI heads.

`raw` pads the proposals of every image to a fixed count so its outputs have static shapes: each proposal
yields one candidate per class (its class-specific box and that class's softmax score), i.e. N = R * K candidates.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass

import torch
from torch import Tensor, nn
from torchvision.models.detection.anchor_utils import AnchorGenerator
from torchvision.models.detection.faster_rcnn import FastRCNNPredictor, TwoMLPHead
from torchvision.models.detection.image_list import ImageList
from torchvision.models.detection.roi_heads import RoIHeads, fastrcnn_loss
from torchvision.models.detection.rpn import RegionProposalNetwork, RPNHead, concat_box_prediction_layers
from torchvision.ops import MultiScaleRoIAlign, clip_boxes_to_image

from edgekd.models.detector import Detector, DetectorConfig, PairedLogits, Targets

TWO_STAGE_STRIDES = (4, 8, 16, 32, 64)
LOGIT_PROPOSALS_PER_IMAGE = 128  # proposals per image whose class logits logit distillation compares


@dataclass(frozen=True)
class FasterRCNNLayout:
    """Levels, anchors and sampling sizes of a Faster R-CNN. The default is edgekd's own (P2-P6, one anchor size
    of 4x the stride per level, P2-P5 into RoIAlign); torchvision's COCO models use their own
    (`edgekd/models/torchvision_zoo.py`)."""

    strides: tuple[int, ...] = TWO_STAGE_STRIDES
    anchor_sizes: tuple[tuple[int, ...], ...] = tuple((4 * s,) for s in TWO_STAGE_STRIDES)
    roi_levels: tuple[str, ...] = ("0", "1", "2", "3")  # neck levels (by index) that feed RoIAlign
    representation: int = 1024
    rpn_pre_nms_test: int = 1000
    rpn_post_nms_train: int = 1000
    rpn_post_nms_test: int = 300
    rpn_score_thresh: float = 0.0
    roi_batch: int = 256


class FasterRCNNDetector(Detector):
    """Two-stage detector; internally class 0 is background, externally labels are 0..K-1 as elsewhere."""

    family = "fasterrcnn"
    strides = TWO_STAGE_STRIDES

    def __init__(
        self, backbone: nn.Module, config: DetectorConfig, layout: FasterRCNNLayout = FasterRCNNLayout()
    ) -> None:
        super().__init__(backbone, config)
        self.strides = layout.strides
        channels = backbone.out_channels
        anchors = AnchorGenerator(layout.anchor_sizes, ((0.5, 1.0, 2.0),) * len(layout.anchor_sizes))
        self.rpn = RegionProposalNetwork(
            anchors,
            RPNHead(channels, anchors.num_anchors_per_location()[0]),
            fg_iou_thresh=0.7,
            bg_iou_thresh=0.3,
            batch_size_per_image=256,
            positive_fraction=0.5,
            pre_nms_top_n={"training": 2000, "testing": layout.rpn_pre_nms_test},
            post_nms_top_n={
                "training": layout.rpn_post_nms_train,
                "testing": config.extra.get("proposals", layout.rpn_post_nms_test),
            },
            nms_thresh=0.7,
            score_thresh=layout.rpn_score_thresh,
        )
        self.roi_heads = RoIHeads(
            MultiScaleRoIAlign(list(layout.roi_levels), output_size=7, sampling_ratio=2),
            TwoMLPHead(channels * 49, layout.representation),
            FastRCNNPredictor(layout.representation, self.num_classes + 1),
            fg_iou_thresh=0.5,
            bg_iou_thresh=0.5,
            batch_size_per_image=layout.roi_batch,
            positive_fraction=0.25,
            bbox_reg_weights=None,
            score_thresh=config.score_thresh,
            nms_thresh=config.nms_thresh,
            detections_per_img=config.max_detections,
        )

    def _image_list(self, features: list[Tensor]) -> ImageList:
        height, width = self.config.input_size
        batch = features[0].shape[0]
        return ImageList(features[0].new_empty(batch, 3, height, width), [(height, width)] * batch)

    def _feature_dict(self, features: list[Tensor]) -> OrderedDict[str, Tensor]:
        return OrderedDict((str(i), f) for i, f in enumerate(features))

    def head(self, features: list[Tensor]) -> dict:
        objectness, deltas = self.rpn.head(features)
        anchors = self.rpn.anchor_generator(self._image_list(features), features)
        level_sizes = [o.shape[1] * o.shape[2] * o.shape[3] for o in objectness]
        objectness, deltas = concat_box_prediction_layers(objectness, deltas)
        return {"objectness": objectness, "deltas": deltas, "anchors": anchors, "level_sizes": level_sizes}

    def proposals(self, head_out: dict) -> list[Tensor]:
        """RPN proposals per image (detached), top-n by `self.training` as in torchvision."""
        anchors = head_out["anchors"]
        boxes = self.rpn.box_coder.decode(head_out["deltas"].detach(), anchors).view(len(anchors), -1, 4)
        shapes = [tuple(self.config.input_size)] * len(anchors)
        proposals, _ = self.rpn.filter_proposals(boxes, head_out["objectness"], shapes, head_out["level_sizes"])
        return proposals

    def roi_outputs(self, features: list[Tensor], boxes: list[Tensor]) -> tuple[Tensor, Tensor]:
        """Class logits (R, K+1) and class-specific box deltas (R, 4(K+1)) of the RoI head on given boxes."""
        shapes = [tuple(self.config.input_size)] * len(boxes)
        pooled = self.roi_heads.box_roi_pool(self._feature_dict(features), boxes, shapes)
        return self.roi_heads.box_predictor(self.roi_heads.box_head(pooled))

    def paired_logits(
        self, head_out: dict, features: list[Tensor], teacher: Detector, teacher_features: list[Tensor]
    ) -> PairedLogits:
        """RoI-head class logits (background + classes, softmax activation) of student and teacher on the student's
        top `LOGIT_PROPOSALS_PER_IMAGE` RPN proposals per image (detached)."""
        proposals = [p[:LOGIT_PROPOSALS_PER_IMAGE].detach() for p in self.proposals(head_out)]
        student_logits = self.roi_outputs(features, proposals)[0]
        with torch.no_grad():
            teacher_logits = teacher.roi_outputs(teacher_features, proposals)[0]
        sizes = [p.shape[0] for p in proposals]
        return PairedLogits(list(student_logits.split(sizes)), list(teacher_logits.split(sizes)), proposals, "softmax")

    def sample_proposals(self, head_out: dict, targets: Targets) -> tuple[list[Tensor], list[Tensor], list[Tensor]]:
        """Training proposals (GT added, fg/bg sampled), their labels (0 = background) and box targets."""
        internal = [{"boxes": t["boxes"], "labels": t["labels"] + 1} for t in targets]
        proposals, _, labels, regression_targets = self.roi_heads.select_training_samples(
            self.proposals(head_out), internal
        )
        return proposals, labels, regression_targets

    def loss(self, head_out: dict, features: list[Tensor], targets: Targets) -> dict[str, Tensor]:
        anchors = head_out["anchors"]
        labels, matched_boxes = self.rpn.assign_targets_to_anchors(anchors, targets)
        regression_targets = self.rpn.box_coder.encode(matched_boxes, anchors)
        loss_objectness, loss_rpn_box = self.rpn.compute_loss(
            head_out["objectness"], head_out["deltas"], labels, regression_targets
        )
        proposals, roi_labels, roi_targets = self.sample_proposals(head_out, targets)
        class_logits, box_deltas = self.roi_outputs(features, proposals)
        loss_cls, loss_box = fastrcnn_loss(class_logits, box_deltas, roi_labels, roi_targets)
        return {
            "loss_objectness": loss_objectness,
            "loss_rpn_box": loss_rpn_box,
            "loss_cls": loss_cls,
            "loss_box": loss_box,
        }

    def class_rows(self) -> dict[str, tuple[int, int, int]]:
        """Background is row 0 of the class scores; each class has 4 rows of box deltas."""
        predictor = "roi_heads.box_predictor."
        return {
            predictor + "cls_score.weight": (1, 1, 1),
            predictor + "cls_score.bias": (1, 1, 1),
            predictor + "bbox_pred.weight": (1, 4, 1),
            predictor + "bbox_pred.bias": (1, 4, 1),
        }

    def priors(self, features: list[Tensor]) -> list[Tensor]:
        anchors = self.rpn.anchor_generator(self._image_list(features), features)[0]
        sizes = [f.shape[2] * f.shape[3] * a for f, a in zip(features, self.anchors_per_location())]
        return list(anchors.split(sizes))

    def anchors_per_location(self) -> list[int]:
        return self.rpn.anchor_generator.num_anchors_per_location()

    def prior_layout(self) -> tuple:
        return self.rpn.anchor_generator.sizes, self.rpn.anchor_generator.aspect_ratios

    def decode(self, head_out: dict, features: list[Tensor]) -> tuple[Tensor, Tensor]:
        count = self.rpn.post_nms_top_n()
        padded, valid = [], []
        for boxes in self.proposals(head_out):
            boxes = boxes[:count]
            fill = count - boxes.shape[0]
            padded.append(torch.cat([boxes, boxes.new_zeros(fill, 4)]))
            valid.append(torch.cat([boxes.new_ones(boxes.shape[0]), boxes.new_zeros(fill)]))
        class_logits, box_deltas = self.roi_outputs(features, padded)
        batch = len(padded)
        boxes = self.roi_heads.box_coder.decode(box_deltas, padded)  # (B*R, K+1, 4)
        boxes = clip_boxes_to_image(boxes[:, 1:], self.config.input_size).reshape(batch, -1, 4)
        probabilities = class_logits.softmax(-1)[:, 1:] * torch.stack(valid).reshape(-1, 1)
        one_hot = torch.eye(self.num_classes, device=probabilities.device, dtype=probabilities.dtype)
        scores = (probabilities.unsqueeze(-1) * one_hot).reshape(batch, -1, self.num_classes)
        return boxes, scores
