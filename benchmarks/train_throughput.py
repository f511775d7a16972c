"""Training throughput: images/s and data-loading wait per step for teacher, student and KD training.

For every (role, input size, precision) it builds the real training step (edgekd.train.Trainer.step on the
objective `edgekd train` / `edgekd distill` would use), runs warm-up steps, then times steps over synthetic
KITTI-like images decoded and augmented by the real loader: the wait for the next batch, and the step itself
(synchronised on CUDA). It reports images/s, step time, the share of each step spent waiting for data (the input
pipeline keeps the GPU busy when it is under 10%), and peak GPU memory. Single process, one device.

    python benchmarks/train_throughput.py --preset cpu     # 2-core CPU, small input, a few minutes
    python benchmarks/train_throughput.py --preset gpu     # 640x192 and full KITTI size, fp32 vs bf16
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from rich.console import Console

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import CACHE, write_results  # noqa: E402

from edgekd.data.loader import load_dataset  # noqa: E402
from edgekd.data.records import Dataset  # noqa: E402
from edgekd.distill.objective import DistillObjective  # noqa: E402
from edgekd.distill.recipe import load_recipe  # noqa: E402
from edgekd.models.detector import DetectorConfig  # noqa: E402
from edgekd.models.zoo import build_detector  # noqa: E402
from edgekd.options import parse_size  # noqa: E402
from edgekd.pipeline import ensure_synthetic  # noqa: E402
from edgekd.train.objective import DetectionObjective, StepInfo  # noqa: E402
from edgekd.train.trainer import Trainer, TrainOptions  # noqa: E402

REPO = Path(__file__).resolve().parents[1]


@dataclass(frozen=True)
class Preset:
    image_size: tuple[int, int]  # rendered (width, height)
    input_sizes: tuple[str, ...]  # network WIDTHxHEIGHT
    teacher: str
    student: str
    recipe: str
    precisions: tuple[str, ...]
    batch: int
    workers: int
    warmup: int
    steps: int
    device: str


PRESETS = {
    "cpu": Preset((621, 188), ("320x96",), "retinanet_resnet18_lite", "retinanet_mobilenet_v3_lite",
                  "recipes/gkd_bmfi.yaml", ("off", "bf16"), 4, 1, 2, 6, "cpu"),
    "gpu": Preset((1242, 375), ("640x192", "1248x384"), "retinanet_resnet50", "retinanet_mobilenet_v3_lite",
                  "recipes/gkd_bmfi.yaml", ("off", "bf16"), 16, 8, 10, 40, "cuda"),
}  # fmt: skip


def build_objective(role: str, preset: Preset, classes: tuple[str, ...], size: tuple[int, int]) -> DetectionObjective:
    """The objective of `edgekd train` (teacher, student) or `edgekd distill` (kd) with random weights."""
    torch.manual_seed(0)
    if role == "teacher":
        return DetectionObjective(build_detector(DetectorConfig(preset.teacher, classes, size)))
    student = build_detector(DetectorConfig(preset.student, classes, size))
    if role == "student":
        return DetectionObjective(student)
    teacher = build_detector(DetectorConfig(preset.teacher, classes, size))
    return DistillObjective(student, teacher, load_recipe(REPO / preset.recipe).losses)


def measure(trainer: Trainer, warmup: int, steps: int) -> dict[str, float]:
    """Per-step wait for the next batch and step time over `steps` steps after `warmup`."""
    cuda = trainer.device.type == "cuda"
    trainer.objective.train()
    trainer.train_loader.sampler.set_epoch(0)
    batches = iter(trainer.train_loader)
    waits, computes = [], []
    if cuda:
        torch.cuda.reset_peak_memory_stats(trainer.device)
    for index in range(warmup + steps):
        started = time.perf_counter()
        images, targets, _, _ = next(batches)
        loaded = time.perf_counter()
        trainer.step(images, targets, StepInfo(index, 0, 1))
        if cuda:
            torch.cuda.synchronize(trainer.device)
        if index >= warmup:
            waits.append(loaded - started)
            computes.append(time.perf_counter() - loaded)
    step_seconds = [w + c for w, c in zip(waits, computes)]
    return {
        "images_per_s": trainer.options.batch_size * steps / sum(step_seconds),
        "step_ms": 1000 * statistics.mean(step_seconds),
        "data_wait_share": sum(waits) / sum(step_seconds),
        "data_wait_max_share": max(w / s for w, s in zip(waits, step_seconds)),
        "peak_memory_gib": torch.cuda.max_memory_allocated(trainer.device) / 1024**3 if cuda else None,
    }


def run_case(role: str, size_text: str, amp: str, preset: Preset, data: Dataset, workdir: Path) -> dict:
    size = parse_size(size_text)
    objective = build_objective(role, preset, data.classes, size)
    options = TrainOptions(batch_size=preset.batch, device=preset.device, amp=amp, workers=preset.workers, quiet=True)
    trainer = Trainer(objective, data, data, workdir, options)
    model = trainer.detector.config.name
    if isinstance(objective, DistillObjective):
        model = f"{model} <- {objective.teacher.config.name}"
    row = {"role": role, "model": model, "input": size_text, "amp": trainer.amp}
    row.update(measure(trainer, preset.warmup, preset.steps))
    del trainer, objective
    if preset.device == "cuda":
        torch.cuda.empty_cache()
    return row


def markdown(preset_name: str, preset: Preset, rows: list[dict]) -> str:
    lines = [
        f"# Training throughput ({preset_name} preset)",
        "",
        f"Single process on `{preset.device}`, batch {preset.batch}, {preset.workers} loader worker(s), "
        f"{preset.warmup} warm-up + {preset.steps} timed steps; synthetic images rendered at "
        f"{preset.image_size[0]}x{preset.image_size[1]}; KD = {preset.recipe}. Data wait = time blocked on the "
        "next batch / step time (mean, and worst step).",
        "",
        "| role | model | input | precision | img/s | step (ms) | data wait | worst step wait | peak GPU mem (GiB) |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        memory = f"{r['peak_memory_gib']:.2f}" if r["peak_memory_gib"] is not None else "n/a (CPU)"
        lines.append(
            f"| {r['role']} | {r['model']} | {r['input']} | {r['amp']} | {r['images_per_s']:.2f} | "
            f"{r['step_ms']:.0f} | {100 * r['data_wait_share']:.1f}% | {100 * r['data_wait_max_share']:.1f}% | "
            f"{memory} |"
        )
    if preset.device == "cpu":
        lines += [
            "",
            "bf16 on a CPU without native bf16 instructions (AVX512-BF16, AMX) is emulated and slower than fp32.",
            "",
            "CPU numbers only. GPU numbers (640x192 and 1248x384, fp32 vs bf16, peak memory, data wait under 10%) "
            "are pending: run `python benchmarks/train_throughput.py --preset gpu` on a CUDA machine.",
        ]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", choices=sorted(PRESETS), default="cpu")
    parser.add_argument("--roles", default="teacher,student,kd", help="comma-separated subset of teacher,student,kd")
    parser.add_argument("--threads", type=int, default=0, help="torch intra-op threads (0: torch's default)")
    args = parser.parse_args()
    preset, console = PRESETS[args.preset], Console()
    if args.threads:
        torch.set_num_threads(args.threads)
    roles = [role.strip() for role in args.roles.split(",")]
    root = CACHE / f"train_throughput_{args.preset}"
    n_images = preset.batch * (preset.warmup + preset.steps)
    ensure_synthetic(root / "data", preset.image_size, n_images, 4, 0, console)
    data = load_dataset(root / "data", "train")
    rows = []
    for size_text in preset.input_sizes:
        for role in roles:
            for amp in preset.precisions:
                row = run_case(role, size_text, amp, preset, data, root / "unused_run_dir")
                console.print(row)
                rows.append(row)
    text = markdown(args.preset, preset, rows)
    payload = {"preset": args.preset, "config": asdict(preset), "torch": torch.__version__, "rows": rows}
    if preset.device == "cuda":
        payload["gpu"] = torch.cuda.get_device_name()
    json_path, _ = write_results(f"train_throughput_{args.preset}", payload, text)
    console.print(text)
    console.print(f"written {json_path}")


if __name__ == "__main__":
    main()
