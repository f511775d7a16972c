"""Probe what KD did to a Faster R-CNN student's RoI head: class probabilities and refined boxes on the stored cells.

For each finished cell of a two-stage pair (its best.pt under benchmarks/cache, so this runs where the cells were
trained) and for the teacher on the same boxes, on the validation images: the RoI head is run on the student's top
`LOGIT_PROPOSALS_PER_IMAGE` RPN proposals at inference, the ranking whose top boxes logit distillation compares in
training (Hinton et al. 2015; docs/kd/logits.md).
Each proposal is a positive when its best IoU with a GT box is >= 0.5 (the loss's and torchvision's RoI-sampler
threshold), else a negative. Reported per model:
- positives: the share whose argmax is the GT class, and the mean background probability;
- negatives: the mean foreground probability (1 - background), what pushes false positives up the ranking;
- positives' class-specific refined boxes (the GT class's deltas): mean IoU with their GT, and the share >= 0.7
  (KITTI's car threshold).
Logit distillation only ever sees positives; these numbers show what that does to the negatives and to the boxes.
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass, fields
from pathlib import Path
from statistics import fmean

import torch
from torch import Tensor
from torchvision.ops import box_iou

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import write_results  # noqa: E402
from kd_cells import KNOWN_ROWS, PRESETS, Cell, cached_result, data_root, parse_rows  # noqa: E402

from edgekd.data.loader import load_dataset  # noqa: E402
from edgekd.data.torch_dataset import DetectionDataset  # noqa: E402
from edgekd.distill.losses.common import match_to_gt  # noqa: E402
from edgekd.errors import EdgeKDError  # noqa: E402
from edgekd.models.checkpoint import load_detector  # noqa: E402
from edgekd.models.two_stage import LOGIT_PROPOSALS_PER_IMAGE, FasterRCNNDetector  # noqa: E402

POSITIVE_IOU = 0.5
TIGHT_IOU = 0.7
TEACHER_RATES = ("gt_class_argmax", "background_on_positives", "foreground_on_negatives")
COLUMNS = [  # the markdown table's columns after method and seeds: (model, rate, format)
    ("student", "positives_per_image", ".1f"),
    *(("student", key, ".3f") for key in (*TEACHER_RATES, "refined_iou", "refined_tight")),
    *(("teacher", key, ".3f") for key in (*TEACHER_RATES, "refined_iou")),
]


@dataclass
class ProbeCounts:
    """Sums over proposals; `rates` turns them into the reported shares and means."""

    positives: int = 0
    negatives: int = 0
    gt_class_argmax: int = 0
    background_on_positives: float = 0.0
    foreground_on_negatives: float = 0.0
    refined_iou: float = 0.0
    refined_tight: int = 0

    def add(self, other: ProbeCounts) -> None:
        for field in fields(self):
            setattr(self, field.name, getattr(self, field.name) + getattr(other, field.name))

    def rates(self, images: int) -> dict[str, float]:
        pos, neg = max(self.positives, 1), max(self.negatives, 1)
        return {
            "positives_per_image": self.positives / images,
            "gt_class_argmax": self.gt_class_argmax / pos,
            "background_on_positives": self.background_on_positives / pos,
            "foreground_on_negatives": self.foreground_on_negatives / neg,
            "refined_iou": self.refined_iou / pos,
            "refined_tight": self.refined_tight / pos,
        }


def probe_boxes(logits: Tensor, refined: Tensor, proposals: Tensor, gt_boxes: Tensor, gt_labels: Tensor) -> ProbeCounts:
    """Counts for one image. `logits` (P, K+1) with background at index 0; `refined` (P, K+1, 4) each class's
    refined box; `proposals` (P, 4) and `gt_boxes` (G, 4) xyxy; `gt_labels` (G,) in 0..K-1. Positives are matched
    as the logits loss matches them (`match_to_gt`)."""
    probabilities = logits.float().softmax(-1)
    rows, matched_gt = match_to_gt(proposals, gt_boxes, POSITIVE_IOU)
    negative = torch.ones(proposals.shape[0], dtype=torch.bool)
    negative[rows] = False
    classes = gt_labels[matched_gt] + 1
    refined_iou = box_iou(refined[rows, classes].float(), gt_boxes.float())[torch.arange(len(rows)), matched_gt]
    return ProbeCounts(
        positives=len(rows),
        negatives=int(negative.sum()),
        gt_class_argmax=int((probabilities[rows].argmax(-1) == classes).sum()),
        background_on_positives=float(probabilities[rows, 0].sum()),
        foreground_on_negatives=float((1 - probabilities[negative, 0]).sum()),
        refined_iou=float(refined_iou.sum()),
        refined_tight=int((refined_iou >= TIGHT_IOU).sum()),
    )


def roi_probe(detector: FasterRCNNDetector, features: list[Tensor], proposals: Tensor) -> tuple[Tensor, Tensor]:
    """Class logits (P, K+1) and every class's refined box (P, K+1, 4) of a Faster R-CNN's RoI head."""
    logits, deltas = detector.roi_outputs(features, [proposals])
    refined = detector.roi_heads.box_coder.decode(deltas, [proposals])
    return logits, refined.reshape(proposals.shape[0], -1, 4)


@torch.no_grad()
def probe_cells(paths: list[Path], teacher: FasterRCNNDetector, images: DetectionDataset) -> list[tuple[dict, dict]]:
    """Per student checkpoint: its rates and the teacher's on its proposals over `images` (the teacher's features
    computed once per image for all students; pairs share `preprocess`)."""
    students = []
    for path in paths:
        student, _ = load_detector(path)
        if not isinstance(student, FasterRCNNDetector):
            raise EdgeKDError(f"{path}: the probe reads a Faster R-CNN RoI head, this is a {student.family}")
        students.append(student.eval())
    counts = [(ProbeCounts(), ProbeCounts()) for _ in students]
    for index in range(len(images)):
        image, target, _, _ = images[index]
        x = teacher.preprocess(image[None])
        teacher_feats = teacher.features(x)
        for student, (student_counts, teacher_counts) in zip(students, counts):
            student_feats = student.features(x)
            proposals = student.proposals(student.head(student_feats))[0][:LOGIT_PROPOSALS_PER_IMAGE]
            for tally, model, feats in (
                (student_counts, student, student_feats),
                (teacher_counts, teacher, teacher_feats),
            ):
                logits, refined = roi_probe(model, feats, proposals)
                tally.add(probe_boxes(logits, refined, proposals, target["boxes"], target["labels"]))
    return [(s.rates(len(images)), t.rates(len(images))) for s, t in counts]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", choices=sorted(PRESETS), required=True)
    parser.add_argument("--pair", required=True, help="a two-stage pair of the preset")
    parser.add_argument("--methods", required=True, help="comma list of: " + ", ".join(KNOWN_ROWS))
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument(
        "--split", choices=("train", "val", "test"), default="val", help="the images probed (val: nothing read on test)"
    )
    parser.add_argument("--tag", default="", help="results go to kd_logit_probe_<preset>_<tag>.*")
    args = parser.parse_args()
    pairs, methods = parse_rows(parser, args.preset, args.pair, args.methods)
    if len(pairs) != 1:
        parser.error(f"--pair: one pair, got {args.pair!r}")
    teacher_path = Cell(args.preset, pairs[0], "teacher").directory() / "best.pt"
    if not teacher_path.is_file():
        parser.error(f"no teacher checkpoint {teacher_path}: train the pair's cells first (kd_table.py)")
    teacher, _ = load_detector(teacher_path)
    if not isinstance(teacher, FasterRCNNDetector):
        parser.error(f"--pair {pairs[0]}: the probe reads Faster R-CNN RoI heads, its teacher is a {teacher.family}")
    teacher.eval()
    dataset = load_dataset(data_root(args.preset), args.split)
    images = DetectionDataset(dataset, tuple(teacher.config.input_size))
    cells = []
    for method in methods:
        for seed in range(args.seeds):
            cell = Cell(args.preset, pairs[0], "student", method, seed)
            if cached_result(cell) is None:  # not finished (or not chosen yet): its best.pt may still change
                continue
            if not (cell.directory() / "best.pt").is_file():
                parser.error(
                    f"{method} seed {seed} is stored but its checkpoint {cell.directory()} is not on this machine"
                )
            cells.append(cell)
    probed = probe_cells([cell.directory() / "best.pt" for cell in cells], teacher, images) if cells else []
    rows = [
        {"method": cell.method, "seed": cell.seed, "cell": cell.directory().name, "student": student, "teacher": rates}
        for cell, (student, rates) in zip(cells, probed)
    ]
    if not rows:
        parser.error("no stored student checkpoints of these methods and seeds")
    lines = [
        f"# RoI-head probe: {args.preset} preset, pair {pairs[0]}, {args.split} split ({len(images)} images)",
        "",
        f"Each student's top proposals (as logit distillation reads them); positive: best GT IoU >= {POSITIVE_IOU}. "
        "'argmax' = share of positives classed as their GT class; 'bg / pos' = mean background probability on "
        "positives; 'fg / neg' = mean foreground probability on negatives; refined IoU = the GT class's refined box "
        f"against its GT (mean, and share >= {TIGHT_IOU}). Teacher columns: the teacher's RoI head on the same "
        "proposals. Mean over seeds.",
        "",
        "| method | seeds | positives / image | argmax | bg / pos | fg / neg | refined IoU | IoU >= 0.7 | "
        "teacher argmax | teacher bg / pos | teacher fg / neg | teacher refined IoU |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for method in dict.fromkeys(row["method"] for row in rows):
        group = [row for row in rows if row["method"] == method]
        cells = [(f"{fmean(row[model][key] for row in group):{spec}}") for model, key, spec in COLUMNS]
        lines.append(f"| {method} | {len(group)} | " + " | ".join(cells) + " |")
    payload = {"preset": args.preset, "pair": pairs[0], "split": args.split, "rows": rows}
    stem = f"kd_logit_probe_{args.preset}" + (f"_{args.tag}" if args.tag else "")
    write_results(stem, payload, "\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
