"""Global-knowledge KD: the Robust Distilling Module (RDM) driven by PGM prototypes.

Tang, Zhang, Cheng, Lu, Xu, Niu, He, "Distilling Object Detectors With Global Knowledge", ECCV 2022,
arXiv:2210.09022. Equation numbers not available (paper body not retrieved); the definitions are the official
code's (hikvision-research/DAVAR-Lab-ML, `kd_one_stage_strategy.py`, `kd_loss.py`), restated in docs/kd/global.md
eqs. (7)-(13). Prototypes (PGM, `global_prototypes.py`) are held here as buffers, per class and level, P^S and P^T.

Per instance i (class c, level l = `assign_levels`), from un-adapted student and teacher features pooled in
its box (`instance_features`), the detached robust weight (noisy knowledge filtered by the teacher-student
discrepancy of the instance's representation w.r.t. the prototypes):

    r_i = max(0, 1 - | max_k cos(f^S_i, P^S_{c,l,k}) - max_k cos(f^T_i, P^T_{c,l,k}) |)   (1 while no prototypes)

(the clamp at 0 is edgekd's: cosines lie in [-1, 1], so the reference's r can turn negative and would then
reward the student for moving away from the teacher).

Each level's weight map W holds r_i on the instance cells [floor(x1/s), floor(x2/s)) x [floor(y1/s),
floor(y2/s)) (overwrite; a degenerate box marks one cell with the max), and with a 3x3 conv adapter:

    L_fg,l = sum W (S' - T)^2 / max(1, 2 C sum W);  L_bg,l = sum [no instance](S' - T)^2 / max(1, 2 C sum[..])
    L = kappa_e (fg_weight mean_l L_fg,l + bg_weight mean_l L_bg,l) + soft_weight L_soft,
    kappa_e = max(0, 1 - epoch / max_epochs) (attenuation, 0-based epoch),
    L_soft = mean_i r_i T^2 mean_k KL_k(teacher || student)  over GT-matched logit boxes (IoU >= 0.5).

Instances are the GT boxes (`instances="gt"`, one-stage) or the GT-matched `logit_boxes` with their GT's
label (`instances="proposals"`, two-stage positive proposals). The soft term is used only when the trainer
passes logits; a batch without GT has no instance, so L_fg and L_soft are 0 while L_bg covers the whole map.
Levels are averaged (the two-stage reference). Level assignment: `canonical` defaults to 4 x the finest
stride, so a box goes to the level whose anchors match its size (torchvision RetinaNet: anchor 4 x stride at
octave scale 1, i.e. sqrt(wh) in [32, 64) -> P3, [64, 128) -> P4, ...); the reference's 56 px with P2 as
level 0 sends every box under 112 px to level 0, which at edgekd's small input sizes is nearly every object.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import torch
import torch.nn.functional as F
from torch import Tensor

from edgekd.data.records import KITTI_CLASSES
from edgekd.distill.losses.base import (
    WEIGHT_HELP,
    EpochContext,
    KDInputs,
    Option,
    PairNeed,
    fraction_below_one,
    non_negative,
    positive,
    require,
    unit_interval,
)
from edgekd.distill.losses.common import (
    ADAPTER_INITS,
    ADAPTER_KINDS,
    FEATURE_NORM_OPTION,
    AdaptedFeatureLoss,
    match_to_gt,
)
from edgekd.distill.losses.global_prototypes import (
    assign_levels,
    batch_instance_features,
    generate_prototypes,
    instance_features,
    pgm_candidates,
    sample_images_per_class,
)
from edgekd.distill.losses.logits import distill_kl
from edgekd.errors import EdgeKDError

if TYPE_CHECKING:
    from edgekd.data.torch_dataset import DetectionDataset


def candidate_labels(source: DetectionDataset, index: int, min_size: float) -> Tensor:
    """Labels of image `index`'s prototype candidates (`pgm_candidates` on its boxes in network pixels, as
    `source[index]` scales them), read from the records without decoding the image."""
    record = source.dataset.records[index]
    boxes, labels = record.targets(source.dataset.classes)
    height, width = source.input_size
    scale = torch.tensor([width / record.width, height / record.height], dtype=torch.float32).repeat(2)
    return torch.from_numpy(labels)[pgm_candidates(torch.from_numpy(boxes) * scale, min_size)]


def _per_level(batches: list[list[Tensor]], channels: int, num_levels: int, device: torch.device) -> list[Tensor]:
    """Per-batch, per-level instance features joined per level; (0, channels) per level when there were none."""
    if not batches:
        return [torch.zeros(0, channels, device=device) for _ in range(num_levels)]
    return [torch.cat(level) for level in zip(*batches)]


def robust_weight(fs: Tensor, ft: Tensor, proto_s: Tensor, proto_t: Tensor) -> Tensor:
    """r = max(0, 1 - |max_k cos(fs, P^S_k) - max_k cos(ft, P^T_k)|) for (N, Cs)/(N, Ct) features and
    per-instance prototype sets (N, K, Cs)/(N, K, Ct) where absent prototypes are NaN rows -> (N,) detached."""
    best_s = F.cosine_similarity(fs.float()[:, None], proto_s.float(), dim=-1).nan_to_num(-2.0).max(dim=1).values
    best_t = F.cosine_similarity(ft.float()[:, None], proto_t.float(), dim=-1).nan_to_num(-2.0).max(dim=1).values
    return (1.0 - (best_s - best_t).abs()).clamp(min=0.0).detach()


def instance_weight_maps(
    boxes: Sequence[Tensor],
    levels: Sequence[Tensor],
    weights: Sequence[Tensor],
    strides: Sequence[int],
    sizes: Sequence[tuple[int, int]],
) -> tuple[list[Tensor], list[Tensor]]:
    """Per level: weight map (B, H, W) with each instance's weight on its cells, and bool instance coverage."""
    device = weights[0].device if weights else torch.device("cpu")
    maps = [torch.zeros(len(boxes), h, w, device=device) for h, w in sizes]
    cover = [torch.zeros(len(boxes), h, w, dtype=torch.bool, device=device) for h, w in sizes]
    for b, (image_boxes, image_levels, image_weights) in enumerate(zip(boxes, levels, weights, strict=True)):
        rows = zip(image_boxes.tolist(), image_levels.tolist(), image_weights.tolist(), strict=True)
        for (x1, y1, x2, y2), level, weight in rows:
            height, width = sizes[level]
            s = strides[level]
            lx, ly = min(max(int(x1 / s), 0), width - 1), min(max(int(y1 / s), 0), height - 1)
            rx, ry = min(int(x2 / s), width), min(int(y2 / s), height)
            if rx <= lx or ry <= ly:
                maps[level][b, ly, lx] = max(float(maps[level][b, ly, lx]), weight)
                cover[level][b, ly, lx] = True
            else:
                maps[level][b, ly:ry, lx:rx] = weight
                cover[level][b, ly:ry, lx:rx] = True
    return maps, cover


def decoupled_point_losses(
    student: Tensor, teacher: Tensor, weight_map: Tensor, cover: Tensor
) -> tuple[Tensor, Tensor]:
    """Foreground and background feature losses of one level (module docstring; bg weight not applied):
    sum W (S - T)^2 / max(1, 2 C sum W) and sum [not cover] (S - T)^2 / max(1, 2 C sum [not cover])."""
    se = (student.float() - teacher.float()).pow(2).sum(dim=1)  # (B, H, W): W does not depend on the channel
    channels = teacher.shape[1]
    weight_map = weight_map.to(se)
    background = (~cover).to(se)
    fg = (weight_map * se).sum() / (2 * channels * weight_map.sum()).clamp(min=1.0)
    bg = (background * se).sum() / (2 * channels * background.sum()).clamp(min=1.0)
    return fg, bg


class GlobalKDLoss(AdaptedFeatureLoss):
    """RDM loss with prototype buffers (module docstring). Defaults: kd_param [[1, 0], [1], [4, 1]] and
    kd_t 2 of the reference config (fg 1, bg 4, soft 1, T 2), 10 prototypes per class and level.

    `num_classes` defaults to the 3 KITTI classes; a label beyond it is an error naming the option. The
    `pgm_*` options are read by the trainer that schedules prototype generation (`fit_prototypes`).
    """

    name = "global"
    revision = 2  # 2: prototypes from up to pgm_max_samples images per class (1: the first images of the dataset)
    options = {
        "weight": Option(1.0, (float,), non_negative, help=WEIGHT_HELP),
        "num_classes": Option(len(KITTI_CLASSES), (int,), positive, help="number of object classes"),
        "fg_weight": Option(1.0, (float,), non_negative),
        "bg_weight": Option(4.0, (float,), non_negative),
        "soft_weight": Option(1.0, (float,), non_negative),
        "temperature": Option(2.0, (float,), positive),
        "attenuation": Option(True, (bool,), help="multiply feature terms by 1 - epoch/max_epochs"),
        "canonical": Option(None, (float,), positive, nullable=True, help="level-0 box size (default 4*stride0)"),
        "instances": Option("gt", (str,), choices=("gt", "proposals")),
        "iou_threshold": Option(0.5, (float,), unit_interval, help="logit box <-> GT match for the soft term"),
        "num_prototypes": Option(10, (int,), positive),
        "pgm_alpha": Option(10.0, (float,), non_negative),
        "density_bandwidth": Option(0.1, (float,), positive),
        "density_quantile": Option(0.4, (float,), fraction_below_one, help="density cut: keep rho above this quantile"),
        "pgm_every": Option(1, (int,), positive, help="regenerate prototypes every this many epochs"),
        "pgm_min_size": Option(30.0, (float,), non_negative, help="candidate boxes wider and taller than this"),
        "pgm_max_samples": Option(800, (int,), positive, help="images per class used by the PGM"),
        "adapter": Option("conv3x3", (str,), choices=ADAPTER_KINDS),
        "adapter_init": Option("default", (str,), choices=ADAPTER_INITS),
        "feature_norm": FEATURE_NORM_OPTION,
    }

    def __init__(self, student_channels: Sequence[int], teacher_channels: Sequence[int], **options: Any) -> None:
        super().__init__(student_channels, teacher_channels, **options)
        cfg = self.config
        self.num_classes: int = cfg["num_classes"]
        k = cfg["num_prototypes"]
        for level, (cs, ct) in enumerate(zip(self.student_channels, self.teacher_channels, strict=True)):
            self.register_buffer(f"proto_s_{level}", torch.zeros(self.num_classes, k, cs))
            self.register_buffer(f"proto_t_{level}", torch.zeros(self.num_classes, k, ct))
        self.register_buffer("proto_count", torch.zeros(self.num_classes, len(self.student_channels), dtype=torch.long))
        self._teacher_instances: list[Tensor] | None = None

    def on_epoch_start(self, epoch: int, context: EpochContext) -> None:
        """The Prototype Generation Module runs every `pgm_every` epochs (Tang et al., ECCV 2022), on the training
        images of `context` (nothing happens without them)."""
        if context.train_images is None or epoch % self.config["pgm_every"] != 0:
            return
        self.fit_prototypes(*self.instance_features(context))

    @torch.no_grad()
    def instance_features(self, context: EpochContext) -> tuple[Tensor, list[Tensor], list[Tensor]]:
        """Labels and per-level student / teacher features of the prototype candidates: GT boxes larger than
        `pgm_min_size` on the un-augmented training images of `context`, for each class from up to
        `pgm_max_samples` images holding such a box of that class, drawn with a fixed seed
        (`sample_images_per_class`), so every epoch reads the same instances and the frozen teacher's features
        are computed once and cached."""
        cfg = self.config
        student, teacher, source = context.student, context.teacher, context.train_images
        candidates = [candidate_labels(source, index, cfg["pgm_min_size"]) for index in range(len(source))]
        per_class = sample_images_per_class(candidates, self.num_classes, cfg["pgm_max_samples"])
        wanted: dict[int, list[int]] = {}
        for class_index, images in enumerate(per_class):
            for index in images.tolist():
                wanted.setdefault(index, []).append(class_index)
        order = sorted(wanted)
        was_training = student.training
        student.eval()
        device = next(student.parameters()).device
        labels, student_feats, teacher_feats = [torch.zeros(0, dtype=torch.long)], [], []
        for start in range(0, len(order), 8):
            batch = [(index, source[index]) for index in order[start : start + 8]]
            images = torch.stack([sample[0] for _, sample in batch]).to(device)
            keep = [
                pgm_candidates(sample[1]["boxes"], cfg["pgm_min_size"])
                & torch.isin(sample[1]["labels"], torch.tensor(wanted[index]))
                for index, sample in batch
            ]
            boxes = [sample[1]["boxes"][k].to(device) for (_, sample), k in zip(batch, keep)]
            labels += [sample[1]["labels"][k] for (_, sample), k in zip(batch, keep)]
            x = student.preprocess(images)
            student_feats.append(batch_instance_features(student.features(x), boxes, student.strides))
            if self._teacher_instances is None:
                teacher_feats.append(batch_instance_features(teacher.features(x), boxes, teacher.strides))
        student.train(was_training)
        levels = len(self.student_channels)
        student_levels = _per_level(student_feats, student.out_channels, levels, device)
        if self._teacher_instances is None:
            self._teacher_instances = _per_level(teacher_feats, teacher.out_channels, levels, device)
        return torch.cat(labels).to(device), student_levels, self._teacher_instances

    needs_logits = True  # the soft-label term, and the proposals that are the instances with instances="proposals"

    @classmethod
    def pair_needs(cls, config: Mapping[str, Any]) -> dict[PairNeed, str]:
        """Feature terms need aligned maps; the soft-label term (soft_weight > 0) also needs the same priors."""
        needs = super().pair_needs(config)
        if config["soft_weight"] > 0:
            needs[PairNeed.SAME_PRIORS] = (
                "its soft-label term compares class logits of teacher and student prior by prior "
                "(soft_weight: 0 keeps only its feature terms)"
            )
        return needs

    def set_prototypes(self, class_index: int, level: int, proto_s: Tensor, proto_t: Tensor) -> None:
        """Store the prototypes (k, Cs) / (k, Ct) of one class at one level (k <= num_prototypes; k = 0 clears)."""
        k_max = self.config["num_prototypes"]
        if not 0 <= class_index < self.num_classes or not 0 <= level < len(self.student_channels):
            raise EdgeKDError(f"loss 'global': no prototype slot for class {class_index}, level {level}")
        expected = ((self.student_channels[level],), (self.teacher_channels[level],))
        if proto_s.dim() != 2 or proto_t.dim() != 2 or (proto_s.shape[1:], proto_t.shape[1:]) != expected:
            raise EdgeKDError(
                f"loss 'global': level {level} prototypes must be (k, {expected[0][0]}) and (k, {expected[1][0]}), "
                f"got {tuple(proto_s.shape)} and {tuple(proto_t.shape)}"
            )
        k = proto_s.shape[0]
        if k != proto_t.shape[0] or k > k_max:
            raise EdgeKDError(
                f"loss 'global': {k} student and {proto_t.shape[0]} teacher prototypes; need equal counts "
                f"<= num_prototypes ({k_max})"
            )
        store_s, store_t = getattr(self, f"proto_s_{level}"), getattr(self, f"proto_t_{level}")
        store_s[class_index].zero_()
        store_t[class_index].zero_()
        store_s[class_index, :k] = proto_s.detach().to(store_s)
        store_t[class_index, :k] = proto_t.detach().to(store_t)
        self.proto_count[class_index, level] = k

    def fit_prototypes(self, labels: Tensor, feats_s: Sequence[Tensor], feats_t: Sequence[Tensor]) -> Tensor:
        """PGM: regenerate every class's prototypes at every level from candidate instances.

        `labels` (N,); `feats_s[l]` (N, Cs_l), `feats_t[l]` (N, Ct_l): the instances' un-adapted student and
        teacher features at level l (`batch_instance_features`). Returns the prototype counts (classes, levels).
        """
        cfg = self.config
        if len(feats_s) != len(self.student_channels) or len(feats_t) != len(self.teacher_channels):
            raise EdgeKDError(
                f"loss 'global': fit_prototypes needs features for all {len(self.student_channels)} levels"
            )
        for class_index in range(self.num_classes):
            rows = labels == class_index
            for level, (fs, ft) in enumerate(zip(feats_s, feats_t, strict=True)):
                proto_s, proto_t = generate_prototypes(
                    fs[rows],
                    ft[rows],
                    k=cfg["num_prototypes"],
                    alpha=cfg["pgm_alpha"],
                    bandwidth=cfg["density_bandwidth"],
                    quantile=cfg["density_quantile"],
                )
                self.set_prototypes(class_index, level, proto_s, proto_t)
        return self.proto_count.clone()

    def _prototype_sets(self, level: int, labels: Tensor, student: bool) -> Tensor:
        """(N, K, C) prototypes of each instance's class at `level`, absent slots as NaN rows."""
        store = getattr(self, f"proto_{'s' if student else 't'}_{level}")[labels]
        valid = torch.arange(store.shape[1], device=labels.device)[None] < self.proto_count[labels, level][:, None]
        return store.masked_fill(~valid[..., None], float("nan"))

    def _instances(self, inputs: KDInputs) -> tuple[list[Tensor], list[Tensor], list[Tensor]]:
        """Per image: instance boxes, labels and (for the soft term) the matched logit-box indices."""
        boxes, labels, logit_index = [], [], []
        for b, (gt_b, lab_b) in enumerate(zip(inputs.gt_boxes, inputs.gt_labels, strict=True)):
            if lab_b.numel() and (int(lab_b.min()) < 0 or int(lab_b.max()) >= self.num_classes):
                raise EdgeKDError(
                    f"loss 'global': image {b} has labels outside 0..{self.num_classes - 1}; "
                    "set option 'num_classes' to the dataset's class count"
                )
            if self.config["instances"] == "gt":
                boxes.append(gt_b.float())
                labels.append(lab_b.long())
                continue
            proposals = require(inputs.logit_boxes, self.name, "logit_boxes", "instances='proposals'")[b]
            positive_idx, gt_idx = match_to_gt(proposals, gt_b, self.config["iou_threshold"])
            boxes.append(proposals[positive_idx].float())
            labels.append(lab_b.long()[gt_idx])
            logit_index.append(positive_idx)
        return boxes, labels, logit_index

    def compute(self, inputs: KDInputs) -> tuple[Tensor, dict[str, Tensor]]:
        cfg = self.config
        num_levels = len(self.student_channels)
        canonical = cfg["canonical"] if cfg["canonical"] is not None else 4.0 * inputs.strides[0]
        boxes, labels, _ = self._instances(inputs)
        levels = [assign_levels(b, num_levels, canonical) for b in boxes]
        weights = [
            self._robust_weights(inputs, b, bx, lab, lv)
            for b, (bx, lab, lv) in enumerate(zip(boxes, labels, levels, strict=True))
        ]
        sizes = [(int(t.shape[-2]), int(t.shape[-1])) for t in inputs.teacher_feats]
        maps, cover = instance_weight_maps(boxes, levels, weights, inputs.strides, sizes)
        fg_levels, bg_levels = [], []
        for adapter, level in zip(self.adapters, self.levels, strict=True):
            adapted, teacher = self.scaled_pair(adapter(inputs.student_feats[level]), inputs.teacher_feats[level])
            fg_level, bg_level = decoupled_point_losses(adapted, teacher, maps[level], cover[level])
            fg_levels.append(fg_level)
            bg_levels.append(bg_level)
        fg, bg = torch.stack(fg_levels).mean(), torch.stack(bg_levels).mean()
        kappa = max(0.0, 1.0 - inputs.epoch / max(inputs.max_epochs, 1)) if cfg["attenuation"] else 1.0
        soft = self._soft_term(inputs, weights)
        total = kappa * (cfg["fg_weight"] * fg + cfg["bg_weight"] * bg) + cfg["soft_weight"] * soft
        robust = torch.cat(weights) if weights else fg.new_zeros(0)
        mean_r = robust.mean() if robust.numel() else fg.new_ones(())
        return total, {"fg": fg, "bg": bg, "soft": soft, "kappa": torch.tensor(kappa), "robust_mean": mean_r}

    def _robust_weights(self, inputs: KDInputs, b: int, boxes: Tensor, labels: Tensor, levels: Tensor) -> Tensor:
        """Detached r per instance of image b (1 where its class has no prototypes at its level)."""
        device = self.proto_count.device
        labels, levels = labels.to(device), levels.to(device)
        weights = torch.ones(boxes.shape[0], device=device)
        for level in levels.unique().tolist():
            rows = torch.nonzero(levels == level).flatten()
            has = self.proto_count[labels[rows], level] > 0
            if not bool(has.any()):
                continue
            stride = inputs.strides[level]
            fs = instance_features(inputs.student_feats[level][b].detach(), boxes[rows], stride)
            ft = instance_features(inputs.teacher_feats[level][b], boxes[rows], stride)
            protos_s = self._prototype_sets(level, labels[rows], student=True)
            protos_t = self._prototype_sets(level, labels[rows], student=False)
            weights[rows] = torch.where(has, robust_weight(fs, ft, protos_s, protos_t).to(device), 1.0)
        return weights

    def _soft_term(self, inputs: KDInputs, weights: list[Tensor]) -> Tensor:
        """mean_i r_i T^2 mean_k KL over GT-matched logit boxes; 0 without logits or matches, or when soft_weight
        is 0 (then nothing is computed). Teacher and student logits must describe the same boxes."""
        zero = inputs.student_feats[0].new_zeros((), dtype=torch.float32)
        cfg = self.config
        missing = inputs.student_logits is None or inputs.teacher_logits is None or inputs.logit_boxes is None
        if missing or cfg["soft_weight"] == 0:
            return zero
        logits = zip(inputs.student_logits, inputs.teacher_logits, inputs.logit_boxes, strict=True)
        terms = []
        for b, (s, t, bx) in enumerate(logits):
            if s.shape != t.shape or s.shape[0] != bx.shape[0]:
                raise EdgeKDError(
                    f"loss 'global': image {b} student logits {tuple(s.shape)}, teacher logits {tuple(t.shape)} "
                    f"and logit_boxes {tuple(bx.shape)} must describe the same boxes (the soft-label term needs "
                    "teacher and student heads with the same priors per location; soft_weight: 0 turns it off)"
                )
            positive_idx, gt_idx = match_to_gt(bx, inputs.gt_boxes[b], cfg["iou_threshold"])
            if positive_idx.numel() == 0:
                continue
            # instances="gt": r of the matched GT; "proposals": the instances are these very boxes, in order.
            r = weights[b][gt_idx] if cfg["instances"] == "gt" else weights[b]
            kl = distill_kl(s[positive_idx], t[positive_idx], cfg["temperature"], inputs.logit_activation, "mean")
            terms.append(r.to(kl.device) * kl)
        return torch.cat(terms).mean() if terms else zero
