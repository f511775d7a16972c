"""The contract between the distillation trainer and every KD loss: `KDInputs` in, (scalar, logged parts) out.

A loss is an `nn.Module` built from the student's and teacher's per-level neck channels and a dict of options
(validated here: an unknown or mistyped option raises `EdgeKDError` naming the loss, the option and what is
allowed). Subclasses declare their options in `options` and implement `compute`; `KDLoss.forward` checks the
inputs, detaches every teacher tensor (the teacher never receives gradient, whatever the caller passed), applies
the loss weight and turns the logged parts into floats with a single device sync (the trainer prefixes them
with the loss name).
"""

from __future__ import annotations

import enum
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any, ClassVar

import torch
from torch import Tensor, nn

from edgekd.errors import EdgeKDError

if TYPE_CHECKING:
    from edgekd.data.torch_dataset import DetectionDataset
    from edgekd.models.detector import Detector


@dataclass
class KDInputs:
    """What the trainer hands every loss for one batch (network-input coordinates throughout)."""

    student_feats: list[Tensor]  # per FPN level (B, Cs, H_l, W_l), ordered by stride, WITH grad
    teacher_feats: list[Tensor]  # per level (B, Ct, H_l, W_l); detached again inside the losses
    strides: list[int]  # per level
    image_size: tuple[int, int]  # network input (H, W)
    gt_boxes: list[Tensor]  # per image (N_i, 4) xyxy in network-input pixels (N_i may be 0)
    gt_labels: list[Tensor]  # per image (N_i,) int64 in 0..K-1
    priors: list[Tensor]  # per level (H_l*W_l*A_l, 4) xyxy, row-major over (h, w, a)
    anchors_per_location: list[int]  # A_l per level (1 for anchor-free heads with virtual priors)
    teacher_feature_grads: list[Tensor] | None = None  # d(teacher det. loss)/d(teacher feats), per level (gkd)
    student_logits: list[Tensor] | None = None  # per image (P_i, K') class logits of the student ...
    teacher_logits: list[Tensor] | None = None  # ... and of the teacher on the same boxes
    logit_boxes: list[Tensor] | None = None  # per image (P_i, 4) the boxes those logits belong to
    logit_activation: str = "sigmoid"  # "sigmoid" (one-stage, per class) | "softmax" (two-stage, with bg)
    step: int = 0  # global training iteration (warm-ups)
    epoch: int = 0  # 0-based epoch (attenuation)
    max_epochs: int = 1

    @property
    def batch_size(self) -> int:
        return int(self.student_feats[0].shape[0])

    @property
    def num_gt(self) -> int:
        return sum(int(b.shape[0]) for b in self.gt_boxes)


@dataclass(frozen=True)
class EpochContext:
    """What `KDLoss.on_epoch_start` may use: the student, the frozen teacher, and the un-augmented training images
    at the student's input size (None when the trainer has none to offer)."""

    student: Detector
    teacher: Detector
    train_images: DetectionDataset | None = None


class PairNeed(enum.Enum):
    """What a KD loss needs the teacher and the student to share; the value says it in words."""

    ALIGNED_MAPS = "equal FPN strides"
    SAME_PRIORS = "the same head family with the same priors per location"


OptionCheck = Callable[[Any], "str | None"]


@dataclass(frozen=True)
class Option:
    """One user-settable option of a loss: default, accepted types, and an optional value check.

    `check` returns None when the value is fine, else a phrase saying what is expected ("must be > 0").
    An int is accepted (and converted) where a float is expected; a bool is never accepted as a number.
    """

    default: Any
    types: tuple[type, ...]
    check: OptionCheck | None = None
    choices: tuple[Any, ...] | None = None
    nullable: bool = False
    help: str = ""


def non_negative(value: float) -> str | None:
    return None if value >= 0 else "must be >= 0"


def positive(value: float) -> str | None:
    return None if value > 0 else "must be > 0"


def unit_interval(value: float) -> str | None:
    return None if 0 < value <= 1 else "must be in (0, 1]"


def open_unit_interval(value: float) -> str | None:
    return None if 0 < value < 1 else "must be in (0, 1) (strictly between 0 and 1)"


def fraction_below_one(value: float) -> str | None:
    return None if 0 <= value < 1 else "must be in [0, 1)"


def odd_positive(value: int) -> str | None:
    return None if value >= 1 and value % 2 == 1 else "must be an odd integer >= 1"


def int_list(value: list) -> str | None:
    ok = all(isinstance(v, int) and not isinstance(v, bool) for v in value) and len(value) > 0
    return None if ok else "must be a non-empty list of integers"


WEIGHT_HELP = "multiplies the whole loss"
LEVELS_OPTION = Option(None, (list,), int_list, nullable=True, help="FPN level indices to distil (default all)")


def _type_ok(value: Any, types: tuple[type, ...]) -> bool:
    if isinstance(value, bool):
        return bool in types
    if float in types and isinstance(value, int):
        return True
    return isinstance(value, types)


def loss_label(loss_name: str, source: str | None = None) -> str:
    """How errors name a loss: "loss 'fgfi'", prefixed with the recipe file (`source`) when known."""
    return f"{source}: loss '{loss_name}'" if source else f"loss '{loss_name}'"


def resolve_options(
    loss_name: str, spec: Mapping[str, Option], given: Mapping[str, Any], source: str | None = None
) -> dict[str, Any]:
    """Defaults overlaid with `given`, each value type- and range-checked; raises EdgeKDError on any mistake,
    naming `source` (the recipe file, when known), the loss and the option."""
    allowed = ", ".join(sorted(spec))
    where = loss_label(loss_name, source)
    resolved: dict[str, Any] = {}
    for key in given:
        if key not in spec:
            raise EdgeKDError(f"{where}: unknown option '{key}' (allowed: {allowed})")
    for key, option in spec.items():
        value = given.get(key, option.default)
        if value is None and option.nullable:
            resolved[key] = None
            continue
        if isinstance(value, tuple) and list in option.types:
            value = list(value)
        if not _type_ok(value, option.types):
            names = " or ".join(t.__name__ for t in option.types) + (" or null" if option.nullable else "")
            raise EdgeKDError(f"{where}: option '{key}' must be {names}, got {type(value).__name__} {value!r}")
        if float in option.types and isinstance(value, int) and not isinstance(value, bool):
            value = float(value)
        if isinstance(value, float) and not math.isfinite(value):
            raise EdgeKDError(f"{where}: option '{key}' must be finite, got {value!r}")
        if option.choices is not None and value not in option.choices:
            raise EdgeKDError(f"{where}: option '{key}' must be one of {list(option.choices)}, got {value!r}")
        problem = option.check(value) if option.check is not None else None
        if problem is not None:
            raise EdgeKDError(f"{where}: option '{key}' {problem}, got {value!r}")
        resolved[key] = value
    return resolved


class KDLoss(nn.Module):
    """Base class of every KD loss (see the module docstring for the contract).

    Subclasses set `name` and `options` (which must contain `weight`) and implement
    `compute(inputs) -> (unweighted scalar, {part: scalar tensor})`. `levels` (if declared) selects FPN levels.
    `revision` counts changes of the loss's numbers: bump it with any fix that changes what the loss computes, so
    stored benchmark results of the earlier code are not reused (benchmarks/kd_cells.py hashes it).

    A loss declares what the trainer must provide beyond the neck maps, GT and priors (docs/kd/README.md section 2):
    `needs_teacher_feature_grads` (KDInputs.teacher_feature_grads), `needs_logits` (KDInputs.student_logits,
    teacher_logits, logit_boxes, logit_activation), and `on_epoch_start`, called before every epoch.
    """

    name: ClassVar[str]
    options: ClassVar[dict[str, Option]]
    revision: ClassVar[int] = 1
    needs_teacher_feature_grads: ClassVar[bool] = False
    needs_logits: ClassVar[bool] = False

    def __init__(
        self, student_channels: Sequence[int], teacher_channels: Sequence[int], options: Mapping[str, Any]
    ) -> None:
        super().__init__()
        self.student_channels = _check_channels(self.name, "student_channels", student_channels)
        self.teacher_channels = _check_channels(self.name, "teacher_channels", teacher_channels)
        if len(self.student_channels) != len(self.teacher_channels):
            raise EdgeKDError(
                f"loss '{self.name}': student has {len(self.student_channels)} neck levels, "
                f"teacher has {len(self.teacher_channels)}; they must match level for level"
            )
        self.config: dict[str, Any] = resolve_options(self.name, self.options, options)
        self.weight: float = self.config["weight"]
        num_levels = len(self.student_channels)
        levels = self.config.get("levels")
        if levels is None:
            levels = list(range(num_levels))
        bad = [lv for lv in levels if not 0 <= lv < num_levels]
        if bad or len(set(levels)) != len(levels):
            raise EdgeKDError(
                f"loss '{self.name}': option 'levels' must be distinct indices in 0..{num_levels - 1}, got {levels}"
            )
        self.levels: tuple[int, ...] = tuple(sorted(levels))

    @classmethod
    def pair_needs(cls, config: Mapping[str, Any]) -> dict[PairNeed, str]:
        """What this loss, with resolved options `config`, needs the teacher/student pair to share, each with the
        reason (the part of the loss that needs it). Feature losses compare neck maps cell by cell."""
        return {PairNeed.ALIGNED_MAPS: "it compares teacher and student neck maps cell by cell"}

    def on_epoch_start(self, epoch: int, context: EpochContext) -> None:
        """Refresh state that depends on the whole training set before epoch `epoch` (0-based); nothing by default."""

    def compute(self, inputs: KDInputs) -> tuple[Tensor, dict[str, Tensor]]:
        raise NotImplementedError

    def forward(self, inputs: KDInputs) -> tuple[Tensor, dict[str, float]]:
        """Weighted scalar loss and its unweighted logged parts (part name -> float, not prefixed)."""
        self.check_inputs(inputs)
        raw, parts = self.compute(detach_teacher(inputs))
        return raw * self.weight, to_floats(parts)

    def check_inputs(self, inputs: KDInputs) -> None:
        """Shapes agree with the channels this loss was built for and between teacher and student."""
        n = len(self.student_channels)
        counts = {
            "student_feats": len(inputs.student_feats),
            "teacher_feats": len(inputs.teacher_feats),
            "strides": len(inputs.strides),
        }
        for what, count in counts.items():
            if count != n:
                raise EdgeKDError(f"loss '{self.name}': built for {n} neck levels but got {count} {what}")
        batch = inputs.batch_size
        for level, (s, t) in enumerate(zip(inputs.student_feats, inputs.teacher_feats, strict=True)):
            if s.dim() != 4 or t.dim() != 4:
                raise EdgeKDError(f"loss '{self.name}': level {level} features must be (B, C, H, W)")
            if s.shape[1] != self.student_channels[level] or t.shape[1] != self.teacher_channels[level]:
                raise EdgeKDError(
                    f"loss '{self.name}': level {level} has student/teacher channels {s.shape[1]}/{t.shape[1]}, "
                    f"built for {self.student_channels[level]}/{self.teacher_channels[level]}"
                )
            if s.shape[0] != batch or t.shape[0] != batch or s.shape[-2:] != t.shape[-2:]:
                raise EdgeKDError(
                    f"loss '{self.name}': level {level} student {tuple(s.shape)} and teacher {tuple(t.shape)} "
                    "must share batch size and spatial size (same input tensor, same strides)"
                )
        if len(inputs.gt_boxes) != batch or len(inputs.gt_labels) != batch:
            raise EdgeKDError(
                f"loss '{self.name}': gt_boxes/gt_labels must have one entry per image ({batch}), "
                f"got {len(inputs.gt_boxes)}/{len(inputs.gt_labels)}"
            )


def detach_teacher(inputs: KDInputs) -> KDInputs:
    """A copy of `inputs` whose teacher tensors are detached (defensive: the teacher is frozen)."""
    return replace(
        inputs,
        teacher_feats=[t.detach() for t in inputs.teacher_feats],
        teacher_feature_grads=_detach_all(inputs.teacher_feature_grads),
        teacher_logits=_detach_all(inputs.teacher_logits),
    )


def _detach_all(tensors: list[Tensor] | None) -> list[Tensor] | None:
    return None if tensors is None else [t.detach() for t in tensors]


def _check_channels(loss_name: str, what: str, channels: Sequence[int]) -> tuple[int, ...]:
    values = tuple(channels)
    if not values or not all(isinstance(c, int) and not isinstance(c, bool) and c > 0 for c in values):
        raise EdgeKDError(f"loss '{loss_name}': {what} must be a non-empty list of positive ints, got {channels}")
    return values


def to_floats(parts: Mapping[str, Tensor | float]) -> dict[str, float]:
    """Detached scalars -> floats, with one device-to-host copy for all of them."""
    keys = list(parts)
    if not keys:
        return {}
    device = next((v.device for v in parts.values() if isinstance(v, Tensor)), torch.device("cpu"))
    stacked = torch.stack(
        [torch.as_tensor(parts[k], dtype=torch.float32, device=device).detach().float().reshape(()) for k in keys]
    )
    return dict(zip(keys, stacked.cpu().tolist(), strict=True))


def require(inputs_field: Any, loss_name: str, field_name: str, why: str) -> Any:
    """`inputs_field` unless it is None, in which case an EdgeKDError says which KDInputs field is missing."""
    if inputs_field is None:
        raise EdgeKDError(f"loss '{loss_name}' needs KDInputs.{field_name} ({why}); the trainer passed None")
    return inputs_field
