"""Teacher/student compatibility checks and the inheriting strategy (Kang et al.; GKD `init_student=True`).

`check_pair` refuses what no KD loss can bridge (other classes, input size or normalisation). `check_losses`
checks, before the first step, what each KD loss of a recipe declares it needs from the pair
(`KDLoss.pair_needs`):

| need | met when | losses |
|---|---|---|
| aligned maps | equal FPN strides | fgfi, ssim, fitnet, bmfi, gkd, global (feature terms) |
| same priors | same family, same priors per location, equal strides | logits, global's soft term |

So feature losses pair RetinaNet and FCOS (both P3-P7) either way, logit comparisons need one family (RetinaNet
has 9 anchors per location, FCOS 1 point: their per-prior logits do not correspond; a Faster R-CNN teacher scores
the student's proposals with its RoI head, which a one-stage detector has not), and Faster R-CNN (P2-P6) pairs
only with Faster R-CNN.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch

from edgekd.distill.losses import LOSSES, KDLoss, PairNeed
from edgekd.distill.losses.base import loss_label, resolve_options
from edgekd.errors import EdgeKDError
from edgekd.models.detector import Detector

_NECK_AND_HEAD_PREFIXES = ("backbone.fpn.", "head_module.", "rpn.", "roi_heads.")


def check_pair(teacher: Detector, student: Detector) -> None:
    """Refuse pairs no KD loss can align: other classes, input size or normalisation (strides: `check_losses`)."""
    t, s = teacher.config, student.config
    if tuple(t.classes) != tuple(s.classes):
        raise EdgeKDError(f"teacher classes {list(t.classes)} differ from the student's {list(s.classes)}")
    if tuple(t.input_size) != tuple(s.input_size):
        raise EdgeKDError(f"teacher input size {t.input_size} differs from the student's {s.input_size} (H, W)")
    if tuple(t.mean) != tuple(s.mean) or tuple(t.std) != tuple(s.std):
        raise EdgeKDError("teacher and student normalise images differently; both must see the same tensor")


def describe(detector: Detector) -> str:
    """A detector's name, family, priors per location and strides, as pairing errors print them."""
    per_location = sorted(set(detector.anchors_per_location()))
    count = "/".join(str(a) for a in per_location)
    kind = "RPN anchor" if detector.family == "fasterrcnn" else "prior"
    plural = "" if per_location == [1] else "s"
    strides = f"{detector.strides[0]}-{detector.strides[-1]}"
    return f"{detector.config.name} ({detector.family}, {count} {kind}{plural} per location, strides {strides})"


def need_met(need: PairNeed, teacher: Detector, student: Detector) -> bool:
    """Whether the pair satisfies one declared need."""
    aligned = tuple(teacher.strides) == tuple(student.strides)
    if need is PairNeed.ALIGNED_MAPS:
        return aligned
    same_head = teacher.family == student.family and teacher.anchors_per_location() == student.anchors_per_location()
    same_head = same_head and teacher.prior_layout() == student.prior_layout()
    return aligned and same_head


def pair_problem(loss: type[KDLoss], config: Mapping, teacher: Detector, student: Detector) -> str | None:
    """Why a loss of class `loss` with resolved options `config` cannot pair these two detectors, or None."""
    for need, reason in loss.pair_needs(config).items():
        if not need_met(need, teacher, student):
            return f"{reason}, so it needs {need.value}"
    return None


def compatible_losses(teacher: Detector, student: Detector) -> list[str]:
    """The registered losses that, with their default options, can distil `teacher` into `student`."""
    return [
        name
        for name, cls in LOSSES.items()
        if pair_problem(cls, resolve_options(name, cls.options, {}), teacher, student) is None
    ]


def check_losses(teacher: Detector, student: Detector, losses: Mapping[str, KDLoss], source: str | None = None) -> None:
    """Refuse, naming the recipe file (`source`), the loss and the reason, any loss that cannot pair these two
    (or whose option `num_classes` is below the detectors' class count)."""
    for name, loss in losses.items():
        num_classes = loss.config.get("num_classes")
        if num_classes is not None and num_classes < student.num_classes:
            raise EdgeKDError(
                f"{loss_label(name, source)}: option 'num_classes' is {num_classes} but teacher and student detect "
                f"{student.num_classes} classes {list(student.config.classes)}; set it to {student.num_classes}"
            )
        problem = pair_problem(type(loss), loss.config, teacher, student)
        if problem is None:
            continue
        usable = compatible_losses(teacher, student)
        advice = f"losses that pair them: {', '.join(usable)}" if usable else "no KD loss pairs them"
        raise EdgeKDError(
            f"{loss_label(name, source)} cannot distil teacher {describe(teacher)} into student "
            f"{describe(student)}: {problem}; {advice}"
        )


@torch.no_grad()
def inherit_from_teacher(teacher: Detector, student: Detector) -> tuple[list[str], int]:
    """Copy the teacher's neck and head weights into the student wherever name and shape match.

    Returns (names of the tensors copied, number of neck/head tensors of the student).
    """
    teacher_state = teacher.state_dict()
    student_state = student.state_dict()
    candidates = [k for k in student_state if k.startswith(_NECK_AND_HEAD_PREFIXES)]
    copied = []
    for key in candidates:
        source = teacher_state.get(key)
        if source is not None and source.shape == student_state[key].shape:
            student_state[key].copy_(source)
            copied.append(key)
    return copied, len(candidates)
