"""Training-step time of the student with each KD loss vs without KD vs the teacher's forward alone.

All timings on the same batch in one run, interleaved round-robin so machine noise hits every variant alike.
The KD overhead is split into the teacher forward (unavoidable for feature KD) and the losses themselves.

    python benchmarks/kd_step_time.py --teacher retinanet_resnet50 --student retinanet_mobilenet_v3_lite
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import write_results  # noqa: E402

from edgekd.distill.objective import DistillObjective  # noqa: E402
from edgekd.models.detector import DetectorConfig  # noqa: E402
from edgekd.models.zoo import build_detector  # noqa: E402
from edgekd.train.objective import DetectionObjective, StepInfo  # noqa: E402

CLASSES = ("Car", "Pedestrian", "Cyclist")
METHODS = {
    "fgfi": {"fgfi": {}},
    "ssim": {"ssim": {}},
    "gkd": {"gkd": {}},
    "bmfi": {"bmfi": {"lambda_": 5e-6}},
    "gkd+bmfi": {"gkd": {}, "bmfi": {"lambda_": 5e-6}},
    "global": {"global": {"pgm_min_size": 8}},
    "fitnet": {"fitnet": {}},
    "logits": {"logits": {}},
}


def batch(size: tuple[int, int], count: int) -> tuple[torch.Tensor, list[dict[str, torch.Tensor]]]:
    """A fixed synthetic batch: random images with 4 boxes each (2 cars, a pedestrian, a cyclist)."""
    generator = torch.Generator().manual_seed(0)
    height, width = size
    images = torch.rand(count, 3, height, width, generator=generator) * 255
    boxes = torch.tensor([[0.10, 0.50, 0.25, 0.80], [0.60, 0.45, 0.70, 0.65], [0.40, 0.40, 0.43, 0.70],
                          [0.80, 0.40, 0.86, 0.75]]) * torch.tensor([width, height, width, height])  # fmt: skip
    targets = [{"boxes": boxes.clone(), "labels": torch.tensor([0, 0, 1, 2])} for _ in range(count)]
    return images, targets


def step_fn(objective: torch.nn.Module, images, targets):
    params = [p for p in objective.parameters() if p.requires_grad]
    optimizer = torch.optim.SGD(params, lr=0.0)  # lr 0: the step is timed, the weights stay as they are

    def step() -> None:
        total, _ = objective(images, targets, StepInfo(step=1000, epoch=0, max_epochs=1))
        optimizer.zero_grad(set_to_none=True)
        total.backward()
        optimizer.step()

    return step


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--teacher", default="retinanet_resnet50")
    parser.add_argument("--student", default="retinanet_mobilenet_v3_lite")
    parser.add_argument("--img-size", default="640x192", help="WIDTHxHEIGHT")
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--rounds", type=int, default=6)
    args = parser.parse_args()
    width, height = (int(v) for v in args.img_size.split("x"))
    torch.manual_seed(0)
    teacher = build_detector(DetectorConfig(args.teacher, CLASSES, (height, width))).eval()
    student = build_detector(DetectorConfig(args.student, CLASSES, (height, width))).train()
    images, targets = batch((height, width), args.batch)

    variants = {"student (no KD)": step_fn(DetectionObjective(student), images, targets)}

    @torch.no_grad()
    def teacher_forward() -> None:
        teacher.features(teacher.preprocess(images))

    variants["teacher forward"] = teacher_forward
    for name, losses in METHODS.items():
        variants[f"student + {name}"] = step_fn(DistillObjective(student, teacher, losses).train(), images, targets)
    times: dict[str, list[float]] = {name: [] for name in variants}
    for fn in variants.values():  # warm-up
        fn()
    for _ in range(args.rounds):
        for name, fn in variants.items():
            start = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - start)
    median = {name: float(np.median(values)) * 1000 for name, values in times.items()}
    plain, teacher_ms = median["student (no KD)"], median["teacher forward"]
    rows = []
    for name, ms in median.items():
        row = {"variant": name, "median_ms": ms, "vs_student": ms / plain}
        if name.startswith("student + "):
            row["loss_overhead_vs_student"] = (ms - plain - teacher_ms) / plain
        rows.append(row)
    lines = [
        f"# KD training-step time ({args.student} <- {args.teacher}, {args.img_size}, batch {args.batch}, CPU)",
        "",
        "Median of interleaved rounds on the same batch. `loss overhead` = (KD step - plain step - teacher",
        "forward) / plain step: what the KD losses themselves (and gradient-guided KD's teacher backward) cost.",
        "",
        "| variant | median step (ms) | x plain student | loss overhead |",
        "|---|---|---|---|",
    ]
    for row in rows:
        overhead = row.get("loss_overhead_vs_student")
        shown = "" if overhead is None else f"{100 * overhead:+.1f}%"
        lines.append(f"| {row['variant']} | {row['median_ms']:.0f} | {row['vs_student']:.2f} | {shown} |")
    payload = {"args": vars(args), "rows": rows}
    write_results("kd_step_time", payload, "\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
