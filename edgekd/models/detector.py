"""The detector adapter (design.md): one small interface every KD loss, trainer and exporter uses.

A `Detector` takes images already resized to its fixed input size, as float RGB in [0, 255], shape (B, 3, H, W).
Teacher and student share `preprocess` (ImageNet mean/std), so their FPN maps align cell for cell.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from dataclasses import asdict, dataclass, field, fields

import numpy as np
import torch
from torch import Tensor, nn
from torchvision.models.detection.backbone_utils import BackboneWithFPN
from torchvision.ops import batched_nms

from edgekd.data.records import Detections
from edgekd.errors import EdgeKDError

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

Targets = list[dict[str, Tensor]]
"""Per image {"boxes": (N, 4) float xyxy in network-input pixels, "labels": (N,) int64 in 0..K-1}."""


@dataclass
class PairedLogits:
    """Class logits of a student and its teacher on the same boxes, per image, for logit distillation."""

    student: list[Tensor]  # per image (P_i, K'), with grad
    teacher: list[Tensor]  # per image (P_i, K'), computed without grad
    boxes: list[Tensor]  # per image (P_i, 4) xyxy in network-input pixels, the boxes the logits belong to
    activation: str  # "sigmoid" (per-class logits, one-stage) | "softmax" (background + classes, two-stage)


@dataclass
class DetectorConfig:
    """Everything needed to rebuild a detector and to pre/post-process for it (stored in checkpoints)."""

    name: str
    classes: tuple[str, ...]
    input_size: tuple[int, int]  # (height, width) of the network input
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD
    score_thresh: float = 0.05
    nms_thresh: float = 0.5
    max_detections: int = 100
    topk_candidates: int = 1000
    extra: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        data = asdict(self)
        data["classes"] = list(self.classes)
        data["input_size"] = list(self.input_size)
        data["mean"], data["std"] = list(self.mean), list(self.std)
        return data

    @classmethod
    def from_dict(cls, data: object, source: str = "checkpoint") -> DetectorConfig:
        """Rebuild a config written by `to_dict`: every key present, none unknown, each value of the right type
        and range; else one EdgeKDError naming `source`, the key and what it must be."""
        if not isinstance(data, dict):
            raise EdgeKDError(f"{source}: config must be a mapping, got {type(data).__name__}")
        expected = [f.name for f in fields(cls)]
        missing = [key for key in expected if key not in data]
        if missing:
            raise EdgeKDError(f"{source}: config lacks key(s) {', '.join(missing)}")
        unknown = [str(key) for key in data if key not in expected]
        if unknown:
            raise EdgeKDError(f"{source}: config has unknown key(s) {', '.join(unknown)}; known: {', '.join(expected)}")
        for key, (valid, wanted) in _CONFIG_CHECKS.items():
            if not valid(data[key]):
                raise EdgeKDError(f"{source}: config.{key} {data[key]!r}: must be {wanted}")
        values = dict(data)
        for key in ("classes", "input_size", "mean", "std"):
            values[key] = tuple(values[key])
        return cls(**values)


def _number(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _whole(value: object, low: int) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= low


def _numbers(value: object, count: int, positive: bool = False) -> bool:
    return (
        isinstance(value, (list, tuple))
        and len(value) == count
        and all(_number(v) and (not positive or v > 0) for v in value)
    )


def _class_list(value: object) -> bool:
    return (
        isinstance(value, (list, tuple))
        and len(value) > 0
        and all(isinstance(name, str) and name for name in value)
        and len(set(value)) == len(value)
    )


_CONFIG_CHECKS = {
    "name": (lambda v: isinstance(v, str) and bool(v), "a zoo model name"),
    "classes": (_class_list, "a non-empty list of distinct class names"),
    "input_size": (
        lambda v: isinstance(v, (list, tuple)) and len(v) == 2 and all(_whole(x, 1) for x in v),
        "[height, width], two positive whole numbers",
    ),
    "mean": (lambda v: _numbers(v, 3), "three finite numbers"),
    "std": (lambda v: _numbers(v, 3, positive=True), "three positive numbers"),
    "score_thresh": (lambda v: _number(v) and 0 <= v <= 1, "a number in [0, 1]"),
    "nms_thresh": (lambda v: _number(v) and 0 <= v <= 1, "a number in [0, 1]"),
    "max_detections": (lambda v: _whole(v, 1), "a whole number >= 1"),
    "topk_candidates": (lambda v: _whole(v, 1), "a whole number >= 1"),
    "extra": (lambda v: isinstance(v, dict), "a mapping"),
}


class Detector(nn.Module, ABC):
    """Adapter over a torchvision detector family; see design.md, "The one abstraction that matters"."""

    family: str = ""
    strides: tuple[int, ...] = ()
    torchvision_prefixes: dict[str, str] = {}
    """How torchvision's state_dict keys of the same architecture map onto this adapter's (prefix -> prefix)."""

    def __init__(self, backbone: BackboneWithFPN, config: DetectorConfig) -> None:
        super().__init__()
        self.backbone = backbone
        self.config = config
        self.register_buffer("pixel_mean", torch.tensor(config.mean).view(1, 3, 1, 1) * 255.0, persistent=False)
        self.register_buffer("pixel_std", torch.tensor(config.std).view(1, 3, 1, 1) * 255.0, persistent=False)

    @property
    def num_classes(self) -> int:
        return len(self.config.classes)

    @property
    def out_channels(self) -> int:
        return self.backbone.out_channels

    def preprocess(self, images: Tensor) -> Tensor:
        """Normalise a (B, 3, H, W) RGB batch in [0, 255] with the detector's mean and std."""
        return (images.float() - self.pixel_mean) / self.pixel_std

    def features(self, x: Tensor) -> list[Tensor]:
        """Neck (FPN) maps ordered by stride (see `strides`)."""
        return list(self.backbone(x).values())

    @abstractmethod
    def head(self, features: list[Tensor]) -> dict:
        """Head outputs computed from given features."""

    @abstractmethod
    def loss(self, head_out: dict, features: list[Tensor], targets: Targets) -> dict[str, Tensor]:
        """Detection losses from given head outputs and features; independent of `self.training`."""

    @abstractmethod
    def priors(self, features: list[Tensor]) -> list[Tensor]:
        """Anchors (or virtual square priors for anchor-free heads) per level, (H*W*A, 4) xyxy, row-major."""

    @abstractmethod
    def anchors_per_location(self) -> list[int]:
        """Number of priors per feature-map cell, per level."""

    def paired_logits(
        self, head_out: dict, features: list[Tensor], teacher: Detector, teacher_features: list[Tensor]
    ) -> PairedLogits:
        """Class logits of this detector (the student: `head_out` of `features`) and of `teacher` (same family,
        evaluated on `teacher_features` without grad) on the same boxes, for logit distillation."""
        raise EdgeKDError(f"{self.config.name}: its {self.family or 'detector'} head offers no class logits to distil")

    @abstractmethod
    def decode(self, head_out: dict, features: list[Tensor]) -> tuple[Tensor, Tensor]:
        """Candidate boxes (B, N, 4) xyxy in network pixels and class scores (B, N, K) in [0, 1]."""

    def prior_layout(self) -> tuple:
        """What fixes the priors besides the strides (anchor sizes and aspect ratios per level): two detectors of
        one family with equal layouts and strides have the same priors (the logit losses' pair need)."""
        return ()

    def class_rows(self) -> dict[str, tuple[int, int, int]]:
        """The class-specific output tensors, by state_dict key: (groups, rows per class slot, first class slot).

        Dimension 0 of such a tensor is groups x slots x rows: per group (e.g. anchor) one block of rows per slot,
        where slot `first + k` holds class k and slots below `first` hold background. `edgekd.models.pretrained`
        re-initialises or maps these rows when weights come from another class set.
        """
        return {}

    def raw(self, images: Tensor) -> tuple[Tensor, Tensor]:
        """Tensor-only, export-friendly forward: images (B, 3, H, W) in [0, 255] -> (boxes, scores)."""
        features = self.features(self.preprocess(images))
        return self.decode(self.head(features), features)

    def forward(self, images: Tensor) -> tuple[Tensor, Tensor]:
        return self.raw(images)

    def postprocess(self, boxes: Tensor, scores: Tensor, scales: Tensor | None = None) -> list[Detections]:
        """Score threshold, top-k, class-wise NMS, max detections; boxes back to original pixels.

        `scales` (B, 2) holds (sx, sy) = network size / original size per image.
        """
        cfg = self.config
        results = []
        for index in range(boxes.shape[0]):
            flat_scores = scores[index].flatten()
            candidates = torch.nonzero(flat_scores > cfg.score_thresh).squeeze(1)
            if candidates.numel() > cfg.topk_candidates:
                top = flat_scores[candidates].topk(cfg.topk_candidates).indices
                candidates = candidates[top]
            box_index = candidates // self.num_classes
            labels = candidates % self.num_classes
            image_boxes = boxes[index][box_index]
            image_scores = flat_scores[candidates]
            keep = batched_nms(image_boxes, image_scores, labels, cfg.nms_thresh)[: cfg.max_detections]
            image_boxes = image_boxes[keep]
            if scales is not None:
                image_boxes = image_boxes / scales[index].repeat(2)
            results.append(
                Detections(
                    image_boxes.detach().cpu().numpy().astype(np.float32),
                    image_scores[keep].detach().cpu().numpy().astype(np.float32),
                    labels[keep].detach().cpu().numpy().astype(np.int64),
                )
            )
        return results

    @torch.no_grad()
    def predict(self, images: Tensor, scales: Tensor | None = None) -> list[Detections]:
        """Inference on a resized batch; see `postprocess` for `scales`."""
        boxes, scores = self.raw(images)
        return self.postprocess(boxes, scores, scales)
