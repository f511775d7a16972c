"""`edgekd show`: the outcome of each box follows the KITTI evaluator (hand-worked case, and the evaluator's own
counts on a tiny model's predictions), the PNG carries the outcome colours, `--worst` picks the images with the
most misses + false positives, the .onnx path runs without torch, and bad options are one-line errors."""

from __future__ import annotations

import math
import re
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from usererror import assert_user_error, run_edgekd

from edgekd.data.kitti import write_label_file
from edgekd.data.loader import load_dataset
from edgekd.data.records import LabeledObject
from edgekd.evaluate import detections_to_objects
from edgekd.evaluate.kitti import DIFFICULTIES, MIN_OVERLAP, _clean, _image_arrays, _match, match_image
from edgekd.evaluate.visualize import OUTCOME_COLOURS, judge_images, render_outcomes
from edgekd.models.checkpoint import atomic_torch_save, detector_payload
from edgekd.models.detector import DetectorConfig
from edgekd.models.inference import predict_dataset
from edgekd.models.zoo import build_detector

ROOT = Path(__file__).resolve().parents[1]
CLASSES = ("Car", "Pedestrian", "Cyclist")
SCORE = 0.4
SUMMARY = re.compile(r"(\d+) images, (\d+) true positives, (\d+) false positives, (\d+) missed")


def _obj(kind: str, box, score=None, occluded=0, truncated=0.0) -> LabeledObject:
    return LabeledObject(kind, tuple(float(v) for v in box), truncated=truncated, occluded=occluded, score=score)


def test_match_image_hand_worked():
    """Moderate: counted GT needs height > 25 px, occlusion <= 1, truncation <= 0.3; Car matches at IoU > 0.7."""
    gt = [
        _obj("Car", (0, 0, 100, 50)),  # matched exactly
        _obj("Car", (200, 0, 300, 50)),  # matched at IoU 95/105
        _obj("Van", (400, 0, 500, 50)),  # neighbouring class of Car
        _obj("DontCare", (600, 0, 700, 50)),
        _obj("Car", (800, 0, 900, 20)),  # 20 px high: not counted at moderate
        _obj("Truck", (1000, 0, 1100, 50)),  # not evaluated
        _obj("Car", (1500, 0, 1600, 50)),  # nothing near it: missed
    ]
    dets = [
        _obj("Car", (0, 0, 100, 50), 0.9),
        _obj("Car", (205, 0, 305, 50), 0.8),
        _obj("Car", (400, 0, 500, 50), 0.8),  # on the Van
        _obj("Car", (600, 0, 700, 50), 0.7),  # on DontCare
        _obj("Car", (1200, 0, 1300, 50), 0.6),  # nothing there
        _obj("Car", (1400, 0, 1410, 10), 0.6),  # 10 px high: too small to count
        _obj("Pedestrian", (0, 0, 100, 50), 0.5),  # no pedestrian there
        _obj("Car", (0, 0, 100, 48), 0.6),  # duplicate of the first: the exact one takes the Car
    ]
    match = match_image(gt, dets, CLASSES, "moderate")
    assert [o.kind for o in match.detections] == ["tp", "tp", "ignored", "ignored", "fp", "ignored", "fp", "fp"]
    assert [o.kind for o in match.ground_truth] == ["tp", "tp", "ignored", "ignored", "ignored", "ignored", "missed"]
    reasons = [o.reason for o in match.ground_truth]
    assert "neighbouring class" in reasons[2] and reasons[3] == "DontCare" and "height" in reasons[4]
    assert "DontCare" in match.detections[3].reason and "height" in match.detections[5].reason
    assert (match.count("tp"), match.count("fp"), match.count("missed")) == (2, 3, 1)
    # at hard the 20 px car still does not count (> 25 px), at easy (> 40 px) nothing changes for the 50 px cars
    assert match_image(gt, dets, CLASSES, "easy").count("tp") == 2


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory) -> Path:
    """An untrained tiny RetinaNet whose class bias puts every prior near score 0.3-0.5: many boxes to judge."""
    torch.manual_seed(0)
    detector = build_detector(DetectorConfig("retinanet_mobilenet_v3_lite", CLASSES, (64, 160)))
    with torch.no_grad():
        for name, parameter in detector.named_parameters():
            if name.endswith("cls_logits.bias"):
                parameter.fill_(math.log(0.3 / 0.7))
    path = tmp_path_factory.mktemp("show_model") / "best.pt"
    atomic_torch_save(detector_payload(detector.eval()), path)
    return path


@pytest.fixture(scope="module")
def planted(tiny_kitti, tiny_model, tmp_path_factory) -> Path:
    """tiny_kitti with labels planted on the tiny model's own validation predictions, so that every outcome
    occurs: two predictions per image become ground truth (true positives), a shifted copy of a third a Car the
    model misses, one more a DontCare region and one a Van."""
    root = tmp_path_factory.mktemp("planted")
    for part in ("image_2", "calib", "ImageSets", "label_2"):
        shutil.copytree(tiny_kitti / part, root / part)
    detector = build_detector(DetectorConfig.from_dict(torch.load(tiny_model, weights_only=True)["config"]))
    detector.load_state_dict(torch.load(tiny_model, weights_only=True)["model"])
    dataset = load_dataset(root, "val", classes=CLASSES)
    predictions = predict_dataset(detector, dataset)
    for record in dataset.records:
        objects = detections_to_objects(predictions[record.image_id], CLASSES)
        tall = [o for o in objects if o.score >= SCORE and o.height > 30]
        planted_objects = [_obj(o.type, o.bbox) for o in tall[:2]]
        x0, y0, x1, y1 = tall[2].bbox
        planted_objects.append(_obj("Car", (x0 + 0.4 * (x1 - x0), y0, min(x1 + 0.4 * (x1 - x0), 319), y1)))
        planted_objects.append(_obj("DontCare", tall[3].bbox))
        planted_objects.append(_obj("Van", tall[4].bbox))
        write_label_file(root / "label_2" / f"{record.image_id}.txt", record.objects + planted_objects)
    return root


def _evaluator_counts(root: Path, model: Path, difficulty: str = "moderate") -> dict[str, tuple[int, int, int]]:
    """(TP, FP, FN) per image at score >= SCORE, computed as the evaluator's second pass counts a row of its
    precision table (kitti._evaluate_class): cleaned data, `_match`, FP = active unassigned counted detections off
    DontCare, FN = counted ground truth minus TP."""
    payload = torch.load(model, weights_only=True)
    detector = build_detector(DetectorConfig.from_dict(payload["config"]))
    detector.load_state_dict(payload["model"])
    dataset = load_dataset(root, "val", classes=CLASSES)
    predictions = predict_dataset(detector, dataset)
    d = DIFFICULTIES.index(difficulty)
    counts = {}
    for record in dataset.records:
        dets = [o for o in detections_to_objects(predictions[record.image_id], CLASSES) if o.score >= SCORE]
        img = _image_arrays(record.image_id, record.objects, dets)
        tp = fp = n_gt = 0
        for cls in CLASSES:
            thr = MIN_OVERLAP[cls]
            keep, ignored_gt, ignored_det = _clean(img, cls.lower())
            active = np.ones((1, len(dets)), dtype=bool)
            row_gt, row_det = ignored_gt[d : d + 1], ignored_det[d : d + 1]
            tp_det, assigned = _match(img.iou[:, keep], row_gt, row_det, active, img.det_scores, thr, True)
            tp += int((tp_det >= 0).sum())
            fp += int((active & ~assigned & (row_det == 0) & ~(img.dontcare_overlap > thr)[None]).sum())
            n_gt += int((row_gt == 0).sum())
        counts[record.image_id] = (tp, fp, n_gt - tp)
    return counts


def _box_colours(png: Path, sheet, judged) -> dict[str, int]:
    """Per outcome kind, how many drawn boxes have that kind's colour at the middle of their left edge."""
    pixels = np.asarray(Image.open(png).convert("RGB"))
    panels = {(p.image_id, p.side): p for p in sheet.panels}
    found = dict.fromkeys(OUTCOME_COLOURS, 0)
    for image in judged:
        for side, objects, outcomes in (
            ("truth", image.record.objects, image.match.ground_truth),
            ("predictions", image.detections, image.match.detections),
        ):
            panel = panels[(image.record.image_id, side)]
            for obj, outcome in zip(objects, outcomes, strict=True):
                x, y = panel.to_sheet(obj.bbox[0], (obj.bbox[1] + obj.bbox[3]) / 2)
                if tuple(pixels[int(round(y)), int(round(x))]) == OUTCOME_COLOURS[outcome.kind]:
                    found[outcome.kind] += 1
    return found


def test_show_counts_and_colours_equal_the_evaluators(planted, tiny_model, tmp_path, capsys, monkeypatch):
    out = tmp_path / "preds.png"
    outcome = run_edgekd(
        capsys, monkeypatch, "show", tiny_model, "--data", planted, "--score", SCORE, "--device", "cpu", "-o", out
    )
    assert outcome.code == 0, outcome.stderr + outcome.stdout
    expected = _evaluator_counts(planted, tiny_model)
    totals = tuple(sum(c[i] for c in expected.values()) for i in range(3))
    assert all(totals), totals  # the planted labels give true positives, false positives and misses
    assert SUMMARY.search(outcome.stdout).groups() == tuple(str(v) for v in (len(expected), *totals))

    dataset = load_dataset(planted, "val", classes=CLASSES)
    payload = torch.load(tiny_model, weights_only=True)
    detector = build_detector(DetectorConfig.from_dict(payload["config"]))
    detector.load_state_dict(payload["model"])
    judged = judge_images(dataset, predict_dataset(detector, dataset), SCORE)
    for image in judged:
        counts = tuple(image.match.count(kind) for kind in ("tp", "fp", "missed"))
        assert counts == expected[image.record.image_id]
    sheet = render_outcomes(judged, "moderate", SCORE)
    assert np.array_equal(np.asarray(Image.open(out).convert("RGB")), np.asarray(sheet.image))
    found = _box_colours(out, sheet, judged)
    assert all(found[kind] >= 1 for kind in OUTCOME_COLOURS), found


def test_worst_picks_the_most_misses_and_false_positives(planted, tiny_model, tmp_path, capsys, monkeypatch):
    out = tmp_path / "worst.png"
    outcome = run_edgekd(
        capsys, monkeypatch, "show", tiny_model, "--data", planted, "--score", SCORE, "--worst", "2",
        "--device", "cpu", "-o", out,
    )  # fmt: skip
    assert outcome.code == 0, outcome.stderr + outcome.stdout
    expected = _evaluator_counts(planted, tiny_model)
    order = sorted(expected, key=lambda image_id: -(expected[image_id][1] + expected[image_id][2]))[:2]
    dataset = load_dataset(planted, "val", classes=CLASSES)
    payload = torch.load(tiny_model, weights_only=True)
    detector = build_detector(DetectorConfig.from_dict(payload["config"]))
    detector.load_state_dict(payload["model"])
    judged = {j.record.image_id: j for j in judge_images(dataset, predict_dataset(detector, dataset), SCORE)}
    sheet = render_outcomes([judged[image_id] for image_id in order], "moderate", SCORE)
    assert np.array_equal(np.asarray(Image.open(out).convert("RGB")), np.asarray(sheet.image))
    assert SUMMARY.search(outcome.stdout).group(1) == "2"


def test_show_of_an_onnx_model_runs_without_torch(planted, tiny_model, tmp_path, capsys, monkeypatch):
    exported = tmp_path / "export"
    outcome = run_edgekd(capsys, monkeypatch, "export", tiny_model, "-o", exported, "--quiet")
    assert outcome.code == 0, outcome.stderr + outcome.stdout
    out = tmp_path / "onnx.png"
    script = textwrap.dedent(
        f"""
        import importlib.abc, sys

        class BlockTorch(importlib.abc.MetaPathFinder):
            def find_spec(self, name, path=None, target=None):
                if name.split(".")[0] in ("torch", "torchvision"):
                    raise ImportError("torch is blocked: " + name)
                return None

        sys.meta_path.insert(0, BlockTorch())
        sys.argv = ["edgekd", "show", {str(exported / "model.onnx")!r}, "--data", {str(planted)!r},
                    "--score", "{SCORE}", "-o", {str(out)!r}]
        from edgekd.cli import main
        main()
        """
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    expected = _evaluator_counts(planted, tiny_model)
    totals = tuple(sum(c[i] for c in expected.values()) for i in range(3))
    shown = tuple(int(v) for v in SUMMARY.search(done.stdout).groups()[1:])
    # ONNX Runtime and PyTorch may differ in the last bits: a box at an IoU or score boundary may flip
    assert sum(abs(a - b) for a, b in zip(shown, totals, strict=True)) <= 2, (shown, totals)
    assert Image.open(out).format == "PNG"


def _bad(name: str, extra: tuple, needles: list[str]):
    return pytest.param(extra, needles, id=name)


@pytest.mark.parametrize(
    ("extra", "needles"),
    [
        _bad("n-and-worst", ("--n", "2", "--worst", "3"), ["--n 2 and --worst 3", "give one"]),
        _bad("n-zero", ("--n", "0"), ["--n 0", "at least 1"]),
        _bad("worst-negative", ("--worst", "-1"), ["--worst -1", "at least 1"]),
        _bad("score-above-1", ("--score", "1.5"), ["--score 1.5", "[0, 1]"]),
        _bad("score-nan", ("--score", "nan"), ["--score nan", "[0, 1]"]),
        _bad("difficulty", ("--difficulty", "medium"), ["--difficulty 'medium'", "easy, moderate, hard"]),
        _bad("jpg", ("-o", "OUT/preds.jpg"), ["-o", "preds.jpg", ".png"]),
        _bad("output-folder", ("-o", "OUT"), ["-o", "is a folder"]),
        _bad("output-under-file", ("-o", "OUT/file/preds.png"), ["-o", "which is a file"]),
        _bad("split", ("--split", "nosuch"), ["nosuch"]),
        _bad("model-suffix", ("MODEL.txt",), [".txt", "expected a .pt"]),
        _bad("model-missing", ("missing.onnx",), ["missing.onnx", "not found"]),
    ],
)
def test_bad_show_options_are_one_error(extra, needles, tiny_kitti, tiny_checkpoint, tmp_path, capsys, monkeypatch):
    out = tmp_path / "out"
    out.mkdir()
    (out / "file").write_text("x")
    before = sorted(p for p in out.rglob("*") if p.is_file())
    model: Path | str = tiny_checkpoint
    args = []
    for value in extra:
        if value == "MODEL.txt":
            model = tmp_path / "model.txt"
            model.write_text("x")
        elif value == "missing.onnx":
            model = tmp_path / "missing.onnx"
        else:
            args.append(value.replace("OUT", str(out)))
    if "-o" not in args:
        args += ["-o", str(out / "preds.png")]
    outcome = run_edgekd(capsys, monkeypatch, "show", model, "--data", tiny_kitti, "--device", "cpu", *args)
    assert_user_error(outcome, *needles, out=out, before=before)
