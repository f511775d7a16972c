"""Teacher/student compatibility checks and the inheriting strategy (Kang et al.; GKD `init_student=True`)."""

from __future__ import annotations

import torch

from edgekd.errors import EdgeKDError
from edgekd.models.detector import Detector

_NECK_AND_HEAD_PREFIXES = ("backbone.fpn.", "head_module.", "rpn.", "roi_heads.")


def check_pair(teacher: Detector, student: Detector) -> None:
    """Refuse pairs KD cannot align: other classes, strides, input size or normalisation."""
    t, s = teacher.config, student.config
    if tuple(t.classes) != tuple(s.classes):
        raise EdgeKDError(f"teacher classes {list(t.classes)} differ from the student's {list(s.classes)}")
    if teacher.strides != student.strides:
        raise EdgeKDError(
            f"teacher {t.name} has FPN strides {teacher.strides} but student {s.name} has {student.strides}; "
            "distil within one family (retinanet/fcos: P3-P7, fasterrcnn: P2-P6)"
        )
    if tuple(t.input_size) != tuple(s.input_size):
        raise EdgeKDError(f"teacher input size {t.input_size} differs from the student's {s.input_size} (H, W)")
    if tuple(t.mean) != tuple(s.mean) or tuple(t.std) != tuple(s.std):
        raise EdgeKDError("teacher and student normalise images differently; both must see the same tensor")


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
