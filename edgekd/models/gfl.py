"""GFL, Generalized Focal Loss (Li et al., NeurIPS 2020), through the detector adapter: the worked example of a
detector family added to edgekd (docs/detector-adapter.md section 3, docs/gfl.md for the equations).

- Head: two towers of 4 shared 3x3 conv + GroupNorm + ReLU (classification, regression) over P3-P7; `gfl_cls`
  predicts the joint classification-quality score per class (sigmoid), `gfl_reg` a discretised distribution over
  0..reg_max (16) of each box side's distance to the location, in strides, scaled per level by a learnable scalar.
- Assignment: ATSS (Zhang et al., CVPR 2020) on one square anchor of side 8 x stride per location.
- Losses: quality focal loss (eq. 5 of the paper) on the IoU of the decoded box with its GT, distribution focal loss
  (eq. 6) over reg_max + 1 bins and GIoU loss, weights 1, 0.25, 2 (the paper's settings).
"""

from __future__ import annotations

from functools import partial

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torchvision.models.detection.anchor_utils import AnchorGenerator
from torchvision.ops import Conv2dNormActivation, box_iou, clip_boxes_to_image, generalized_box_iou_loss

from edgekd.models.detector import DetectorConfig, Targets
from edgekd.models.one_stage import OneStageDetector

REG_MAX = 16
ANCHOR_SCALE = 8  # anchor side = ANCHOR_SCALE x stride (ATSS, GFL)
ATSS_TOPK = 9
QFL_BETA = 2.0
LOSS_WEIGHTS = {"loss_qfl": 1.0, "loss_dfl": 0.25, "loss_giou": 2.0}


def quality_focal_loss(logits: Tensor, quality: Tensor, beta: float = QFL_BETA) -> Tensor:
    """Quality focal loss, GFL eq. 5, elementwise: QFL(s) = -|y - s|^beta ((1 - y) log(1 - s) + y log(s)) with
    s = sigmoid(logits) and soft target y in [0, 1] (the IoU at a positive's class, 0 elsewhere): binary cross
    entropy with soft targets, modulated as torchvision's `sigmoid_focal_loss` modulates it."""
    scores = logits.sigmoid()
    cross_entropy = F.binary_cross_entropy_with_logits(logits, quality, reduction="none")
    return cross_entropy * (quality - scores).abs().pow(beta)


def distribution_focal_loss(logits: Tensor, target: Tensor) -> Tensor:
    """Distribution focal loss, GFL eq. 6, per row: DFL(S_i, S_i+1) = -((y_i+1 - y) log S_i + (y - y_i) log S_i+1),
    with S = softmax(logits) over the bins 0..n-1 and y_i <= y < y_i+1 = y_i + 1 the bins around target y."""
    left = target.floor().long()
    right_weight = target - left.float()
    log_probs = F.log_softmax(logits, dim=-1)
    left_log = log_probs.gather(-1, left.unsqueeze(-1)).squeeze(-1)
    right_log = log_probs.gather(-1, (left + 1).unsqueeze(-1)).squeeze(-1)
    return -((1 - right_weight) * left_log + right_weight * right_log)


def atss_assign(anchors: Tensor, level_sizes: list[int], gt_boxes: Tensor, topk: int = ATSS_TOPK) -> Tensor:
    """ATSS (Zhang et al., CVPR 2020, Algorithm 1): per GT, the `topk` anchors per level whose centres are closest
    to the GT centre are candidates; those with IoU >= mean + std of the candidates' IoUs and centre inside the GT
    are positives; an anchor positive for several GTs goes to the one of highest IoU. Returns per anchor the GT
    index, or -1 (background)."""
    count = anchors.shape[0]
    if gt_boxes.numel() == 0:
        return torch.full((count,), -1, dtype=torch.int64, device=anchors.device)
    ious = box_iou(anchors, gt_boxes)  # (N, G)
    anchor_centres = (anchors[:, :2] + anchors[:, 2:]) / 2
    gt_centres = (gt_boxes[:, :2] + gt_boxes[:, 2:]) / 2
    distances = torch.cdist(anchor_centres, gt_centres)  # (N, G)
    candidates, start = [], 0
    for size in level_sizes:
        nearest = distances[start : start + size].topk(min(topk, size), dim=0, largest=False).indices
        candidates.append(nearest + start)
        start += size
    candidates = torch.cat(candidates)  # (C, G)
    candidate_ious = ious.gather(0, candidates)
    threshold = candidate_ious.mean(0) + candidate_ious.std(0)
    centres = anchor_centres[candidates]  # (C, G, 2)
    inside = torch.cat([centres - gt_boxes[:, :2], gt_boxes[:, 2:] - centres], dim=-1).amin(-1) > 0.01
    positive = (candidate_ious >= threshold) & inside
    overlaps = torch.full_like(ious, -1.0)
    gt_index = torch.arange(gt_boxes.shape[0], device=anchors.device).expand_as(candidates)
    overlaps[candidates[positive], gt_index[positive]] = candidate_ious[positive]
    best, assigned = overlaps.max(1)
    return torch.where(best >= 0, assigned, torch.full_like(assigned, -1))


class _Scale(nn.Module):
    """A learnable scalar multiplying one level's regression output."""

    def __init__(self) -> None:
        super().__init__()
        self.scale = nn.Parameter(torch.ones(()))

    def forward(self, x: Tensor) -> Tensor:
        return x * self.scale


class GFLHead(nn.Module):
    """Shared 4-conv GroupNorm towers and the two GFL output convs over every level."""

    def __init__(self, channels: int, num_classes: int, levels: int, convs: int = 4) -> None:
        super().__init__()
        groups = min(32, channels // 4)
        block = partial(Conv2dNormActivation, channels, channels, 3, norm_layer=partial(nn.GroupNorm, groups))
        self.cls_convs = nn.Sequential(*[block() for _ in range(convs)])
        self.reg_convs = nn.Sequential(*[block() for _ in range(convs)])
        self.gfl_cls = nn.Conv2d(channels, num_classes, 3, padding=1)
        self.gfl_reg = nn.Conv2d(channels, 4 * (REG_MAX + 1), 3, padding=1)
        self.scales = nn.ModuleList([_Scale() for _ in range(levels)])
        for layer in self.modules():
            if isinstance(layer, nn.Conv2d):
                nn.init.normal_(layer.weight, std=0.01)
                if layer.bias is not None:
                    nn.init.zeros_(layer.bias)
        nn.init.constant_(self.gfl_cls.bias, -4.595)  # prior probability 0.01, as RetinaNet

    def forward(self, features: list[Tensor]) -> dict[str, Tensor]:
        scores, distributions = [], []
        for feature, scale in zip(features, self.scales):
            batch, _, height, width = feature.shape
            cls = self.gfl_cls(self.cls_convs(feature))
            reg = scale(self.gfl_reg(self.reg_convs(feature)))
            scores.append(cls.permute(0, 2, 3, 1).reshape(batch, height * width, -1))
            distributions.append(reg.permute(0, 2, 3, 1).reshape(batch, height * width, 4, REG_MAX + 1))
        return {"cls_logits": torch.cat(scores, 1), "bbox_distribution": torch.cat(distributions, 1)}


class GFLDetector(OneStageDetector):
    """GFL (Li et al., NeurIPS 2020), see the module docstring; priors (for FGFI and ATSS) are the anchors."""

    family = "gfl"

    def __init__(self, backbone: nn.Module, config: DetectorConfig) -> None:
        super().__init__(backbone, config)
        sizes = tuple((ANCHOR_SCALE * s,) for s in self.strides)
        self.anchor_generator = AnchorGenerator(sizes, ((1.0,),) * len(sizes))
        self.head_module = GFLHead(backbone.out_channels, self.num_classes, len(self.strides))
        self.register_buffer("project", torch.arange(REG_MAX + 1, dtype=torch.float32), persistent=False)

    def class_rows(self) -> dict[str, tuple[int, int, int]]:
        return {"head_module.gfl_cls.weight": (1, 1, 0), "head_module.gfl_cls.bias": (1, 1, 0)}

    def head(self, features: list[Tensor]) -> dict:
        return self.head_module(features)

    def _anchor_strides(self, features: list[Tensor]) -> Tensor:
        sizes = [f.shape[2] * f.shape[3] for f in features]
        strides = torch.tensor(self.strides, dtype=torch.float32, device=features[0].device)
        return strides.repeat_interleave(torch.tensor(sizes, device=features[0].device))

    def _boxes(self, distribution: Tensor, centres: Tensor, strides: Tensor) -> Tensor:
        """Boxes from side distances: the expectation of each side's softmax distribution, times the stride."""
        distances = (distribution.softmax(-1) * self.project).sum(-1) * strides.unsqueeze(-1)
        return torch.cat([centres - distances[..., :2], centres + distances[..., 2:]], dim=-1)

    def loss(self, head_out: dict, features: list[Tensor], targets: Targets) -> dict[str, Tensor]:
        anchors = self._anchors(features)[0]
        level_sizes = self._level_sizes(features)
        centres = (anchors[:, :2] + anchors[:, 2:]) / 2
        strides = self._anchor_strides(features)
        logits, distributions = head_out["cls_logits"], head_out["bbox_distribution"]
        quality = torch.zeros_like(logits)
        positives, boxes = [], []
        for index, target in enumerate(targets):
            assigned = atss_assign(anchors, level_sizes, target["boxes"], ATSS_TOPK)
            anchor_index = torch.nonzero(assigned >= 0).squeeze(1)
            positives.append((torch.full_like(anchor_index, index), anchor_index))
            boxes.append((target["boxes"][assigned[anchor_index]], target["labels"][assigned[anchor_index]]))
        image_index = torch.cat([p[0] for p in positives])
        anchor_index = torch.cat([p[1] for p in positives])
        gt_boxes = torch.cat([b[0] for b in boxes]).to(logits.dtype)
        gt_labels = torch.cat([b[1] for b in boxes])
        count = anchor_index.numel()
        if count == 0:
            zero = distributions.sum() * 0
            qfl = quality_focal_loss(logits, quality).sum()
            return {"loss_qfl": qfl, "loss_dfl": zero, "loss_giou": zero}
        pos_distribution = distributions[image_index, anchor_index]
        pos_centres, pos_strides = centres[anchor_index], strides[anchor_index]
        predicted = self._boxes(pos_distribution, pos_centres, pos_strides)
        ious = box_iou(predicted.detach(), gt_boxes).diagonal().clamp(min=0)
        quality[image_index, anchor_index, gt_labels] = ious.to(quality.dtype)
        qfl = quality_focal_loss(logits, quality).sum() / count
        weight = logits.detach().sigmoid()[image_index, anchor_index].amax(-1)
        total_weight = weight.sum().clamp(min=1e-6)
        giou = (generalized_box_iou_loss(predicted, gt_boxes, reduction="none") * weight).sum() / total_weight
        sides = torch.cat([pos_centres - gt_boxes[:, :2], gt_boxes[:, 2:] - pos_centres], dim=-1)
        side_target = (sides / pos_strides.unsqueeze(-1)).clamp(0, REG_MAX - 0.01)
        dfl = distribution_focal_loss(pos_distribution.reshape(-1, REG_MAX + 1), side_target.reshape(-1))
        dfl = (dfl.view(-1, 4).mean(-1) * weight).sum() / total_weight
        return {
            "loss_qfl": LOSS_WEIGHTS["loss_qfl"] * qfl,
            "loss_dfl": LOSS_WEIGHTS["loss_dfl"] * dfl,
            "loss_giou": LOSS_WEIGHTS["loss_giou"] * giou,
        }

    def priors(self, features: list[Tensor]) -> list[Tensor]:
        return list(self._anchors(features)[0].split(self._level_sizes(features)))

    def decode(self, head_out: dict, features: list[Tensor]) -> tuple[Tensor, Tensor]:
        anchors = self._anchors(features)[0]
        centres = ((anchors[:, :2] + anchors[:, 2:]) / 2).unsqueeze(0)
        boxes = self._boxes(head_out["bbox_distribution"], centres, self._anchor_strides(features).unsqueeze(0))
        return clip_boxes_to_image(boxes, self.config.input_size), head_out["cls_logits"].sigmoid()

    def class_logits(self, head_out: dict) -> Tensor:
        """Per-location logits of the joint classification-quality scores (B, N, K), for logit distillation."""
        return head_out["cls_logits"]
