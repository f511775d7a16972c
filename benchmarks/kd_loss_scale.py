"""KD loss scale at the start of distillation: the teacher's RMS per neck level, and each feature recipe's weighted
loss next to the student's detection loss, with the recipe's `feature_norm` and with `none` (the papers' raw form).

It takes the teacher a kd_table.py/baselines.py preset trained (run one of those first) and one training batch of
that preset's data, with a freshly initialised student: what the first distillation steps see.

    python benchmarks/kd_loss_scale.py --preset cpu
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch
from rich.console import Console

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import write_results  # noqa: E402
from kd_cells import PRESETS, ROWS, Cell, ensure_data  # noqa: E402

from edgekd.data.torch_dataset import DetectionDataset, collate  # noqa: E402
from edgekd.distill.objective import DistillObjective  # noqa: E402
from edgekd.distill.recipe import load_recipe  # noqa: E402
from edgekd.errors import EdgeKDError  # noqa: E402
from edgekd.models.checkpoint import load_detector  # noqa: E402
from edgekd.models.detector import DetectorConfig  # noqa: E402
from edgekd.models.zoo import build_detector  # noqa: E402
from edgekd.pipeline import finished_run  # noqa: E402
from edgekd.train.objective import StepInfo  # noqa: E402

FEATURE_METHODS = ("fgfi", "gkd+bmfi", "fitnet")  # global needs its prototypes (a pass over the data) first


def with_feature_norm(losses: dict[str, dict], norm: str) -> dict[str, dict]:
    return {name: {**options, "feature_norm": norm} for name, options in losses.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", choices=sorted(PRESETS), default="cpu")
    parser.add_argument("--pair", default="one-stage")
    parser.add_argument("--batch", type=int, default=8)
    args = parser.parse_args()
    teacher_cell = Cell(args.preset, args.pair, "teacher")
    checkpoint = teacher_cell.directory() / "best.pt"
    if not finished_run(teacher_cell.directory()):
        raise SystemExit(
            f"no finished teacher at {checkpoint}: run benchmarks/baselines.py --preset {args.preset} first"
        )
    device = PRESETS[args.preset].device
    train, _ = ensure_data(args.preset, Console(quiet=True))
    teacher, _ = load_detector(checkpoint, device)
    samples = DetectionDataset(train, teacher.config.input_size)
    images, targets, _, _ = collate([samples[i] for i in range(args.batch)])
    images, targets = images.to(device), [{k: v.to(device) for k, v in t.items()} for t in targets]
    with torch.no_grad():
        teacher_feats = teacher.features(teacher.preprocess(images))
    level_rms = [float(f.float().pow(2).mean().sqrt()) for f in teacher_feats]
    student_name = PRESETS[args.preset].pairs[args.pair][1]
    rows = []
    for method in FEATURE_METHODS:
        losses = load_recipe(ROWS[method]).losses
        for norm in ("teacher_rms", "none"):
            torch.manual_seed(0)
            config = DetectorConfig(student_name, teacher.config.classes, teacher.config.input_size)
            objective = DistillObjective(build_detector(config), teacher, with_feature_norm(losses, norm)).to(device)
            objective.train()
            try:
                _, parts = objective(images, targets, StepInfo(10**6, 0, 1))
            except EdgeKDError as error:
                raise SystemExit(str(error)) from error
            detection = sum(v for k, v in parts.items() if k.startswith("loss_") and k[5:] not in losses)
            kd = sum(parts[f"loss_{name}"] for name in losses)
            rows.append({"method": method, "feature_norm": norm, "detection": detection, "kd": kd})
    lines = [
        f"# KD loss scale at the first step ({args.preset} preset, {args.pair})",
        "",
        f"Teacher {teacher.config.name} ({checkpoint.parent.name}), fresh {student_name}, one batch of {args.batch} "
        "training images; KD loss = the recipe's weighted loss (warm-ups ignored).",
        "",
        "Teacher neck RMS per level: "
        + ", ".join(f"stride {s}: {v:.1f}" for s, v in zip(teacher.strides, level_rms))
        + ".",
        "",
        "| recipe | feature_norm | detection loss | weighted KD loss | KD / detection |",
        "|---|---|---|---|---|",
    ]
    for row in rows:
        ratio = row["kd"] / row["detection"]
        lines.append(
            f"| {row['method']} | {row['feature_norm']} | {row['detection']:.3f} | {row['kd']:.4g} | {ratio:.3g} |"
        )
    write_results(f"kd_loss_scale_{args.preset}", {"level_rms": level_rms, "rows": rows}, "\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
