"""The inheriting strategy: teacher neck and head weights copied into the student wherever name and shape match."""

from __future__ import annotations

import torch

from edgekd.distill.pairing import inherit_from_teacher
from edgekd.models.detector import DetectorConfig
from edgekd.models.zoo import build_detector

CLASSES = ("Car", "Pedestrian", "Cyclist")
SIZE = (64, 160)


def _pair(teacher_name: str, student_name: str):
    torch.manual_seed(0)
    teacher = build_detector(DetectorConfig(teacher_name, CLASSES, SIZE))
    torch.manual_seed(1)
    return teacher, build_detector(DetectorConfig(student_name, CLASSES, SIZE))


def test_equal_width_pair_inherits_head_and_fpn_outputs_but_not_the_backbone_specific_projections():
    teacher, student = _pair("retinanet_resnet18_lite", "retinanet_mobilenet_v3_lite")
    before = {k: v.clone() for k, v in student.state_dict().items()}
    copied, total = inherit_from_teacher(teacher, student)
    after, source = student.state_dict(), teacher.state_dict()
    head = [k for k in after if k.startswith("head_module.")]
    assert head and all(torch.equal(after[k], source[k]) for k in head)
    # the lateral 1x1 convolutions read backbone channels (ResNet-18 vs MobileNetV3): different shapes, kept
    kept = [k for k in after if k.startswith("backbone.fpn.") and not torch.equal(after[k], source.get(k, after[k]))]
    assert kept and all("inner_blocks" in k and source[k].shape != after[k].shape for k in kept)
    body = [k for k in after if k.startswith("backbone.body.")]
    assert all(torch.equal(after[k], before[k]) for k in body)
    assert len(copied) == total - len(kept) and set(head) <= set(copied)


def test_a_full_width_teacher_gives_a_lite_student_only_its_output_biases():
    teacher, student = _pair("retinanet_resnet18", "retinanet_mobilenet_v3_lite")
    before = {k: v.clone() for k, v in student.state_dict().items()}
    copied, total = inherit_from_teacher(teacher, student)
    # width 256 vs 64: only the final predictors' biases (anchors x classes, anchors x 4) have equal shapes
    assert sorted(copied) == [
        "head_module.classification_head.cls_logits.bias",
        "head_module.regression_head.bbox_reg.bias",
    ]
    assert total > len(copied)
    after, source = student.state_dict(), teacher.state_dict()
    assert all(torch.equal(after[k], source[k]) for k in copied)
    assert all(torch.equal(v, before[k]) for k, v in after.items() if k not in copied)
