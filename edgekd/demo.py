"""`edgekd demo`: the whole chain, small, on the built-in synthetic data.

Renders a synthetic set, trains a teacher, trains the student once without and once with KD, evaluates all three
and prints one table (params, GFLOPs, COCO AP, KITTI Moderate AP, CPU latency). Every stage is cached: a second run
reuses the data and each finished run whose configuration (model, size, data, schedule, recipe, teacher file,
device) is unchanged, and retrains only what changed (`edgekd.pipeline`).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, replace
from pathlib import Path

from rich.console import Console
from rich.table import Table

from edgekd.atomic import atomic_write_text
from edgekd.data.loader import load_dataset
from edgekd.data.synth_config import SynthConfig
from edgekd.distill.recipe import load_recipe, parse_recipe
from edgekd.pipeline import checkpoint_row, distill_cached, ensure_synthetic, train_cached
from edgekd.train.trainer import TrainOptions


@dataclass(frozen=True)
class DemoPreset:
    """Sizes of one demo run; `cpu` is sized for about 13 minutes on 2 cores (teacher about 6 of them)."""

    name: str
    image_size: tuple[int, int]  # rendered (width, height)
    input_size: tuple[int, int]  # network (height, width)
    n_train: int
    n_val: int
    teacher: str
    student: str
    teacher_epochs: int
    student_epochs: int
    batch: int
    lr: float
    near_range: bool


PRESETS = {
    # CPU: near-range scenes (objects labelled to 30 m) so that a few minutes of training at 416x128 learn something.
    "cpu": DemoPreset(
        "cpu",
        (621, 188),
        (128, 416),
        240,
        60,
        "retinanet_resnet18_lite",
        "retinanet_mobilenet_v3_lite",
        6,
        5,
        8,
        3e-3,
        near_range=True,
    ),
    "gpu": DemoPreset(
        "gpu",
        (1242, 375),
        (192, 640),
        2000,
        300,
        "retinanet_resnet50",
        "retinanet_mobilenet_v3_lite",
        24,
        12,
        16,
        2e-3,
        near_range=False,
    ),
}

# FGFI as in recipes/fgfi.yaml: imitation on teacher-RMS-scaled features (raw from-scratch features are hundreds
# of times larger and swamp the detection loss; see the README's feature scale note).
DEFAULT_RECIPE = {
    "name": "fgfi",
    "losses": {
        "fgfi": {"weight": 0.01, "psi": 0.5, "max_over": "level", "warmup_steps": 20, "feature_norm": "teacher_rms"}
    },
}


def run_demo(workdir: Path, preset: DemoPreset, recipe_path: Path | None, device: str, console: Console) -> list[dict]:
    """Run the demo chain; returns the table rows (also written to workdir/demo.json)."""
    data_root = workdir / "data"
    config = SynthConfig.near_range() if preset.near_range else SynthConfig()
    ensure_synthetic(data_root, preset.image_size, preset.n_train, preset.n_val, 0, console, config)
    train, val = load_dataset(data_root, "train"), load_dataset(data_root, "val")
    base = TrainOptions(batch_size=preset.batch, lr=preset.lr, warmup_iters=100, device=device)
    teacher_options = replace(base, epochs=preset.teacher_epochs)
    student_options = replace(base, epochs=preset.student_epochs)
    recipe = load_recipe(recipe_path) if recipe_path else parse_recipe(DEFAULT_RECIPE, "built-in demo recipe")

    teacher = train_cached(
        workdir / f"teacher_{preset.name}", preset.teacher, train, val, preset.input_size, teacher_options, console
    )
    student = train_cached(workdir / "student", preset.student, train, val, preset.input_size, student_options, console)
    distilled = distill_cached(
        workdir / "student_kd", teacher, preset.student, recipe, train, val, student_options, console
    )
    rows = [
        checkpoint_row("teacher", teacher, val, device).to_dict(),
        checkpoint_row("student (no KD)", student, val, device).to_dict(),
        checkpoint_row(f"student + KD ({recipe.name})", distilled, val, device).to_dict(),
    ]
    atomic_write_text(workdir / "demo.json", json.dumps({"preset": asdict(preset), "rows": rows}, indent=2))
    return rows


def demo_table(rows: list[dict]) -> Table:
    table = Table(title="edgekd demo (synthetic KITTI-like val split)")
    columns = ("model", "name", "params (M)", "GFLOPs", "COCO AP", "KITTI Mod AP|R40", "CPU latency (ms, b=1)")
    for column in columns:
        table.add_column(column, justify="left" if column in ("model", "name") else "right")
    for row in rows:
        table.add_row(
            row["model"],
            row["name"],
            f"{row['params_m']:.2f}",
            f"{row['gflops']:.2f}",
            f"{row['AP']:.2f}",
            f"{row.get('kitti_moderate', float('nan')):.2f}",
            f"{row['cpu_latency_ms']:.1f}",
        )
    return table
