"""Bad-input corpus for KD pairs and KD loss options: `edgekd distill` refuses, before the first training step and
with one line naming the recipe file, the loss and the option or the two detectors, every teacher/student pair a
loss cannot compare and every loss option out of range. Plus unit tests of the per-loss compatibility table, of a
cross-family pair that is allowed (trains a step), of Global KD's soft-term guard and of its per-class PGM sample.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from PIL import Image
from usererror import assert_user_error, run_edgekd

from edgekd.data.records import Dataset, ImageRecord, LabeledObject
from edgekd.data.torch_dataset import DetectionDataset
from edgekd.distill.losses import LOSSES, KDInputs, PairNeed, build_loss
from edgekd.distill.losses.base import EpochContext, resolve_options
from edgekd.distill.losses.global_prototypes import sample_images_per_class
from edgekd.distill.objective import DistillObjective
from edgekd.distill.pairing import compatible_losses
from edgekd.errors import EdgeKDError
from edgekd.models.checkpoint import atomic_torch_save, detector_payload
from edgekd.models.detector import DetectorConfig
from edgekd.models.zoo import build_detector
from edgekd.train.objective import StepInfo

CLASSES = ("Car", "Pedestrian", "Cyclist")
SIZE = (64, 160)
FAMILIES = ("retinanet", "fcos", "fasterrcnn")
FEATURE_LOSSES = ["fgfi", "ssim", "gkd", "bmfi", "fitnet"]


def _model(family: str) -> str:
    return f"{family}_mobilenet_v3_lite"


@pytest.fixture(scope="module")
def teachers(tiny_checkpoint: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Untrained 160x64 teacher checkpoints of each family (RetinaNet: the shared tiny checkpoint)."""
    folder = tmp_path_factory.mktemp("kd_teachers")
    paths = {"retinanet": tiny_checkpoint}
    for family in ("fcos", "fasterrcnn"):
        torch.manual_seed(0)
        detector = build_detector(DetectorConfig(_model(family), CLASSES, SIZE))
        paths[family] = folder / f"{family}.pt"
        atomic_torch_save(detector_payload(detector.eval()), paths[family])
    return paths


def _recipe(folder: Path, losses: dict) -> Path:
    path = folder / "bad_recipe.yaml"
    path.write_text(yaml.safe_dump({"losses": losses}))
    return path


def _distill(capsys, monkeypatch, teacher: Path, student: str, recipe: Path, data: Path, out: Path):
    return run_edgekd(
        capsys, monkeypatch, "distill", "--teacher", teacher, "--student", student, "--recipe", recipe,
        "--data", data, "-o", out, "--epochs", 1, "--batch", 4, "--device", "cpu", "--quiet",
    )  # fmt: skip


# (teacher family, student family, losses, needles besides the recipe file name)
PAIR_CASES = [
    ("retinanet", "fcos", {"logits": {}}, ["loss 'logits'", "prior by prior", "9 priors", "1 prior per", "fgfi"]),
    ("fcos", "retinanet", {"logits": {}}, ["loss 'logits'", "same head family", "fcos_mobilenet_v3_lite"]),
    ("retinanet", "fcos", {"global": {}}, ["loss 'global'", "soft-label term", "soft_weight: 0"]),
    ("fcos", "retinanet", {"global": {"soft_weight": 0.5}}, ["loss 'global'", "soft-label term", "per location"]),
    ("retinanet", "fcos", {"fgfi": {}, "logits": {}}, ["loss 'logits'", "losses that pair them: fgfi"]),
    ("fasterrcnn", "retinanet", {"fgfi": {}}, ["loss 'fgfi'", "strides", "4-64", "8-128", "no KD loss pairs"]),
    ("fasterrcnn", "fcos", {"ssim": {}}, ["loss 'ssim'", "equal FPN strides", "fasterrcnn_mobilenet_v3_lite"]),
    ("retinanet", "fasterrcnn", {"logits": {}}, ["loss 'logits'", "same head family", "3 RPN anchors"]),
    ("fasterrcnn", "retinanet", {"global": {"soft_weight": 0}}, ["loss 'global'", "strides"]),
]


@pytest.mark.parametrize(
    ("teacher_family", "student_family", "losses", "needles"),
    PAIR_CASES,
    ids=[f"{t}-{s}-{'+'.join(losses)}" for t, s, losses, _ in PAIR_CASES],
)
def test_incompatible_pair_is_refused_before_training(
    capsys, monkeypatch, tmp_path, tiny_kitti, teachers, teacher_family, student_family, losses, needles
):
    recipe = _recipe(tmp_path, losses)
    out = tmp_path / "out"
    outcome = _distill(capsys, monkeypatch, teachers[teacher_family], _model(student_family), recipe, tiny_kitti, out)
    assert_user_error(outcome, str(recipe), *needles, out=out)


# (losses, needles besides the recipe file name)
OPTION_CASES = [
    ({"fgfi": {"psi": 1.0}}, ["loss 'fgfi'", "'psi'", "(0, 1)", "1.0"]),
    ({"fgfi": {"psi": 0}}, ["loss 'fgfi'", "'psi'", "(0, 1)"]),
    ({"fgfi": {"weight": "0.01"}}, ["loss 'fgfi'", "'weight'", "must be float", "str"]),
    ({"fgfi": {"weight": True}}, ["loss 'fgfi'", "'weight'", "must be float", "bool"]),
    ({"fgfi": {"warmup_steps": -1}}, ["loss 'fgfi'", "'warmup_steps'", ">= 0"]),
    ({"fitnet": {"weight": -0.5}}, ["loss 'fitnet'", "'weight'", ">= 0", "-0.5"]),
    ({"fitnet": {"levels": [5]}}, ["loss 'fitnet'", "'levels'", "0..4"]),
    ({"logits": {"temperature": 0}}, ["loss 'logits'", "'temperature'", "> 0"]),
    ({"logits": {"temperature": -2.0}}, ["loss 'logits'", "'temperature'", "> 0"]),
    ({"logits": {"iou_threshold": 1.5}}, ["loss 'logits'", "'iou_threshold'", "(0, 1]"]),
    ({"ssim": {"sigma": float("nan")}}, ["loss 'ssim'", "'sigma'", "finite"]),
    ({"ssim": {"window": 4}}, ["loss 'ssim'", "'window'", "odd"]),
    ({"gkd": {"weight": float("inf")}}, ["loss 'gkd'", "'weight'", "finite"]),
    ({"bmfi": {"temp": 0.0}}, ["loss 'bmfi'", "'temp'", "> 0"]),
    ({"global": {"density_quantile": 1.0}}, ["loss 'global'", "'density_quantile'", "[0, 1)"]),
    ({"global": {"pgm_max_samples": 0}}, ["loss 'global'", "'pgm_max_samples'", "> 0"]),
    ({"global": {"num_classes": 2}}, ["loss 'global'", "'num_classes'", "3 classes"]),
    ({"global": {"temperature": -1}}, ["loss 'global'", "'temperature'", "> 0"]),
]


@pytest.mark.parametrize(
    ("losses", "needles"),
    OPTION_CASES,
    ids=[f"{next(iter(c))}-{next(iter(next(iter(c.values()))))}" for c, _ in OPTION_CASES],
)
def test_loss_option_out_of_range_is_refused_before_training(
    capsys, monkeypatch, tmp_path, tiny_kitti, teachers, losses, needles
):
    recipe = _recipe(tmp_path, losses)
    out = tmp_path / "out"
    outcome = _distill(capsys, monkeypatch, teachers["retinanet"], _model("retinanet"), recipe, tiny_kitti, out)
    assert_user_error(outcome, str(recipe), *needles, out=out)


@pytest.fixture(scope="module")
def detectors() -> dict[str, torch.nn.Module]:
    torch.manual_seed(0)
    return {family: build_detector(DetectorConfig(_model(family), CLASSES, SIZE)) for family in FAMILIES}


def test_compatibility_table_with_default_options(detectors):
    same_family = sorted(LOSSES)
    expected = {
        ("retinanet", "fcos"): FEATURE_LOSSES,  # equal strides, different priors per location (9 vs 1)
        ("fcos", "retinanet"): FEATURE_LOSSES,
    }
    for teacher in FAMILIES:
        for student in FAMILIES:
            # Faster R-CNN (P2-P6) pairs with no one-stage family (P3-P7)
            want = same_family if teacher == student else expected.get((teacher, student), [])
            assert sorted(compatible_losses(detectors[teacher], detectors[student])) == sorted(want), (teacher, student)


def test_each_loss_declares_what_it_needs_from_the_pair():
    def needs(name, **options):
        return set(LOSSES[name].pair_needs(resolve_options(name, LOSSES[name].options, options)))

    for name in FEATURE_LOSSES:
        assert needs(name) == {PairNeed.ALIGNED_MAPS}
    assert needs("logits") == {PairNeed.SAME_PRIORS}
    assert needs("global") == {PairNeed.ALIGNED_MAPS, PairNeed.SAME_PRIORS}
    assert needs("global", soft_weight=0.0) == {PairNeed.ALIGNED_MAPS}


def test_feature_losses_across_families_train_one_step(detectors):
    teacher = build_detector(DetectorConfig(_model("retinanet"), CLASSES, SIZE))
    torch.manual_seed(1)
    student = build_detector(DetectorConfig(_model("fcos"), CLASSES, SIZE))
    losses = {"fgfi": {"weight": 1.0}, "fitnet": {}, "global": {"soft_weight": 0.0}}
    objective = DistillObjective(student, teacher, losses, source="cross.yaml").train()
    before = {k: v.clone() for k, v in student.state_dict().items()}
    optimizer = torch.optim.SGD(objective.parameters(), lr=0.01)
    images = torch.rand(2, 3, *SIZE) * 255
    targets = [
        {"boxes": torch.tensor([[20.0, 8.0, 84.0, 56.0]]), "labels": torch.tensor([0])},
        {"boxes": torch.tensor([[90.0, 10.0, 130.0, 60.0]]), "labels": torch.tensor([1])},
    ]
    total, parts = objective(images, targets, StepInfo(step=0, epoch=0, max_epochs=1))
    total.backward()
    optimizer.step()
    assert torch.isfinite(total)
    assert parts["fgfi/positives"] > 0 and parts["loss_fgfi"] > 0 and parts["loss_fitnet"] > 0
    assert parts["global/soft"] == 0.0
    assert all(p.grad is None for p in teacher.parameters())
    changed = [k for k, v in student.state_dict().items() if not torch.equal(v, before[k])]
    assert any(k.startswith("backbone.fpn.") for k in changed)


def test_global_soft_term_refuses_logits_of_different_prior_counts():
    loss = build_loss("global", {"num_classes": 3}, [2], [2])
    feats = [torch.zeros(1, 2, 4, 4)]
    box = torch.tensor([[0.0, 0.0, 16.0, 16.0]])
    inputs = KDInputs(feats, feats, [8], (32, 32), [box], [torch.tensor([0])], [], [])
    inputs.student_logits = [torch.zeros(9, 3)]  # nine anchors per location ...
    inputs.teacher_logits = [torch.zeros(1, 3)]  # ... against one point
    inputs.logit_boxes = [box.repeat(9, 1)]
    with pytest.raises(EdgeKDError, match=r"loss 'global': image 0 student logits \(9, 3\), teacher logits \(1, 3\)"):
        loss(inputs)


def test_pgm_samples_images_per_class_not_the_first_images():
    image_labels = [torch.tensor([0])] * 5 + [torch.tensor([1]), torch.tensor([0, 1, 1])]
    chosen = sample_images_per_class(image_labels, 3, 3, seed=0)
    assert chosen[1].tolist() == [5, 6]  # every holder when there are at most 3
    assert chosen[2].tolist() == []
    holders_0 = {0, 1, 2, 3, 4, 6}
    assert len(chosen[0]) == 3 and set(chosen[0].tolist()) <= holders_0
    assert chosen[0].tolist() == sorted(chosen[0].tolist())
    again = sample_images_per_class(image_labels, 3, 3, seed=0)
    assert all(torch.equal(a, b) for a, b in zip(chosen, again))
    draws = {tuple(sample_images_per_class(image_labels, 3, 3, seed=s)[0].tolist()) for s in range(20)}
    assert len(draws) > 1  # the seed matters: a random sample, not a fixed prefix


def test_pgm_reads_every_class_when_the_first_images_lack_some(tmp_path):
    """Six images; the first four hold only Cars: with pgm_max_samples 2 the first-N sample saw no Pedestrian or
    Cyclist. Now each class gets up to 2 images holding it: Car 2 instances, Pedestrian 2, Cyclist 1."""
    records = []
    for index in range(6):
        path = tmp_path / f"{index}.png"
        Image.fromarray(np.full((64, 160, 3), 40 * index, dtype=np.uint8)).save(path)
        objects = [LabeledObject("Car", (10.0, 5.0, 60.0, 55.0))] if index < 4 else []
        if index >= 4:
            objects.append(LabeledObject("Pedestrian", (70.0, 4.0, 110.0, 60.0)))
        if index == 5:
            objects.append(LabeledObject("Cyclist", (112.0, 2.0, 158.0, 50.0)))
        records.append(ImageRecord(str(index), path, 160, 64, objects))
    dataset = Dataset(tmp_path, "train", CLASSES, records, "kitti")
    torch.manual_seed(0)
    teacher = build_detector(DetectorConfig(_model("retinanet"), CLASSES, SIZE))
    student = build_detector(DetectorConfig(_model("retinanet"), CLASSES, SIZE))
    losses = {"global": {"pgm_max_samples": 2, "pgm_min_size": 4.0, "num_prototypes": 2}}
    objective = DistillObjective(student, teacher, losses, DetectionDataset(dataset, SIZE))
    context = EpochContext(student, teacher, DetectionDataset(dataset, SIZE))
    labels, student_feats, teacher_feats = objective.losses["global"].instance_features(context)
    assert torch.bincount(labels, minlength=3).tolist() == [2, 2, 1]
    assert all(f.shape == (5, student.out_channels) for f in student_feats + teacher_feats)
    again, _, _ = objective.losses["global"].instance_features(context)
    assert torch.equal(labels, again)
    objective.on_epoch_start(0)
    assert objective.losses["global"].proto_count.min() > 0  # prototypes for every class at every level
