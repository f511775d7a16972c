"""The KD results table: every method against the no-KD student and the teacher, over seeds, on the synthetic
driving benchmark. Each cell (pair, method, seed, preset) is cached under benchmarks/cache/kd_table/<hash>/ by the
hash of its full configuration, so an interrupted run resumes where it stopped.

    python benchmarks/kd_table.py --preset cpu --seeds 3 --pairs one-stage
    python benchmarks/kd_table.py --preset gpu --seeds 3 --pairs one-stage,two-stage
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import json
import sys
from dataclasses import asdict, dataclass, replace
from functools import partial
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from rich.console import Console  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import CACHE, RESULTS, write_results  # noqa: E402

from edgekd.data.loader import load_dataset  # noqa: E402
from edgekd.distill.recipe import load_recipe  # noqa: E402
from edgekd.pipeline import checkpoint_row, distill_cached, ensure_synthetic, train_cached  # noqa: E402
from edgekd.train.trainer import TrainOptions  # noqa: E402

RECIPES = Path(__file__).resolve().parent.parent / "recipes"


@dataclass(frozen=True)
class Preset:
    image_size: tuple[int, int]  # rendered (width, height)
    input_size: tuple[int, int]  # network (height, width)
    n_train: int
    n_val: int
    teacher_epochs: int
    student_epochs: int
    batch: int
    lr: float
    device: str


PRESETS = {
    "cpu": Preset((1242, 375), (128, 416), 600, 150, 10, 8, 8, 2e-3, "cpu"),
    "gpu": Preset((1242, 375), (384, 1248), 3700, 500, 24, 24, 16, 2e-3, "cuda"),
}
PAIRS = {
    "one-stage": ("retinanet_resnet50", "retinanet_mobilenet_v3"),
    "two-stage": ("fasterrcnn_resnet50", "fasterrcnn_mobilenet_v3"),
}
METHODS = {  # row name -> recipe file (None: the student without KD)
    "no KD": None,
    "fgfi": "fgfi.yaml",
    "ssim": "ssim.yaml",
    "gkd+bmfi": "gkd_bmfi.yaml",
    "global": "global.yaml",
    "fitnet": "fitnet.yaml",
    "logits": "logits.yaml",
    "combined": "combined.yaml",
}


def cell_dir(kind: str, config: dict) -> Path:
    digest = hashlib.sha256(json.dumps(config, sort_keys=True).encode()).hexdigest()[:16]
    return CACHE / "kd_table" / f"{kind}-{digest}"


def seconds_per_step(run_dir: Path) -> float:
    with (run_dir / "metrics.csv").open() as handle:
        rows = list(csv.DictReader(handle))
    return sum(float(r["train_seconds"]) for r in rows) / len(rows)


def run_cell(run_dir: Path, label: str, train_fn, val, device: str) -> dict:
    """Train (or reuse) one cell and evaluate it once; the evaluation is cached in result.json."""
    result_file = run_dir / "result.json"
    if result_file.is_file():
        return json.loads(result_file.read_text())
    best = train_fn()
    row = checkpoint_row(label, best, val, device)
    del row["results"]
    row["epoch_seconds"] = seconds_per_step(run_dir)
    result_file.write_text(json.dumps(row))
    return row


def mean_std(values: list[float]) -> tuple[float, float]:
    array = np.asarray(values, dtype=float)
    return float(array.mean()), float(array.std(ddof=1)) if len(array) > 1 else 0.0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", choices=sorted(PRESETS), default="cpu")
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--pairs", default="one-stage", help="comma list of: " + ", ".join(PAIRS))
    parser.add_argument("--methods", default=",".join(METHODS), help="comma list of: " + ", ".join(METHODS))
    args = parser.parse_args()
    preset, console = PRESETS[args.preset], Console()
    pairs = [p.strip() for p in args.pairs.split(",")]
    methods = [m.strip() for m in args.methods.split(",")]
    for name in pairs + methods:
        if name not in PAIRS and name not in METHODS:
            parser.error(f"unknown pair or method '{name}'")
    data_root = CACHE / f"kd_table_data_{args.preset}"
    ensure_synthetic(data_root, preset.image_size, preset.n_train, preset.n_val, 0, console)
    train, val = load_dataset(data_root, "train"), load_dataset(data_root, "val")
    base = TrainOptions(batch_size=preset.batch, lr=preset.lr, device=preset.device, quiet=True)
    tables = {}
    for pair in pairs:
        teacher_name, student_name = PAIRS[pair]
        teacher_options = replace(base, epochs=preset.teacher_epochs)
        teacher_config = {"model": teacher_name, "preset": asdict(preset), "seed": 0}
        teacher_dir = cell_dir("teacher", teacher_config)
        teacher_row = run_cell(
            teacher_dir,
            "teacher",
            partial(train_cached, teacher_dir, teacher_name, train, val, preset.input_size, teacher_options, console),
            val,
            preset.device,
        )
        rows: dict[str, list[dict]] = {}
        for method in methods:
            for seed in range(args.seeds):
                options = replace(base, epochs=preset.student_epochs, seed=seed)
                recipe = load_recipe(RECIPES / METHODS[method]) if METHODS[method] else None
                config = {"pair": pair, "method": method, "seed": seed, "preset": asdict(preset),
                          "losses": recipe.losses if recipe else None}  # fmt: skip
                run_dir = cell_dir("student", config)
                if recipe is None:
                    fn = partial(train_cached, run_dir, student_name, train, val, preset.input_size, options, console)
                else:
                    teacher = teacher_dir / "best.pt"
                    fn = partial(distill_cached, run_dir, teacher, student_name, recipe, train, val, options, console)
                console.print(f"[bold]{pair} / {method} / seed {seed}[/]")
                rows.setdefault(method, []).append(run_cell(run_dir, method, fn, val, preset.device))
        tables[pair] = {"teacher": teacher_row, "rows": rows}
    write_tables(args, preset, tables)


def summarize_pair(table: dict) -> list[dict]:
    teacher_ap = table["teacher"]["AP"]
    baseline = table["rows"].get("no KD")
    base_ap = mean_std([r["AP"] for r in baseline])[0] if baseline else float("nan")
    base_time = mean_std([r["epoch_seconds"] for r in baseline])[0] if baseline else float("nan")
    summary = []
    for method, runs in table["rows"].items():
        ap, ap_std = mean_std([r["AP"] for r in runs])
        per_class = {
            cls: mean_std([r["kitti_moderate_per_class"].get(cls, 0.0) for r in runs])
            for cls in ("Car", "Pedestrian", "Cyclist")
        }
        summary.append(
            {
                "method": method,
                "seeds": len(runs),
                "AP": (ap, ap_std),
                "AP50": mean_std([r["AP50"] for r in runs]),
                "kitti_moderate": per_class,
                "gain": ap - base_ap,
                "gap_closed": (ap - base_ap) / (teacher_ap - base_ap) if teacher_ap != base_ap else float("nan"),
                "time_vs_no_kd": mean_std([r["epoch_seconds"] for r in runs])[0] / base_time,
            }
        )
    return summary


def write_tables(args: argparse.Namespace, preset: Preset, tables: dict) -> None:
    lines = [f"# KD results table ({args.preset} preset, {args.seeds} seeds)", ""]
    height, width = preset.input_size
    lines.append(
        f"Synthetic KITTI-like data, {preset.n_train} train / {preset.n_val} val images, network input "
        f"{width}x{height}; teacher {preset.teacher_epochs} epochs, students {preset.student_epochs} epochs, "
        f"batch {preset.batch}, AdamW lr {preset.lr}. Mean +- std over seeds; gap closed = gain / (teacher - no KD)."
    )
    payload = {"preset": asdict(preset), "seeds": args.seeds, "pairs": {}}
    figure, axis = plt.subplots(figsize=(8, 4))
    for offset, (pair, table) in enumerate(tables.items()):
        summary = summarize_pair(table)
        payload["pairs"][pair] = {"teacher": table["teacher"], "summary": summary, "runs": table["rows"]}
        teacher = table["teacher"]
        lines += [
            "",
            f"## {pair}: {teacher['name']} (teacher, COCO AP {teacher['AP']:.2f}) -> {PAIRS[pair][1]}",
            "",
            "| method | COCO AP | AP50 | KITTI Mod Car | Ped | Cyc | gain | gap closed | time/epoch vs no KD |",
            "|---|---|---|---|---|---|---|---|---|",
        ]
        for row in summary:
            k = row["kitti_moderate"]
            lines.append(
                f"| {row['method']} | {row['AP'][0]:.2f} +- {row['AP'][1]:.2f} | {row['AP50'][0]:.2f} +- "
                f"{row['AP50'][1]:.2f} | {k['Car'][0]:.2f} +- {k['Car'][1]:.2f} | {k['Pedestrian'][0]:.2f} +- "
                f"{k['Pedestrian'][1]:.2f} | {k['Cyclist'][0]:.2f} +- {k['Cyclist'][1]:.2f} | {row['gain']:+.2f} | "
                f"{100 * row['gap_closed']:.0f}% | {row['time_vs_no_kd']:.2f}x |"
            )
        kd_rows = [r for r in summary if r["method"] != "no KD"]
        positions = np.arange(len(kd_rows)) + 0.35 * offset
        axis.bar(positions, [r["gain"] for r in kd_rows], 0.35, yerr=[r["AP"][1] for r in kd_rows], label=pair)
        axis.set_xticks(np.arange(len(kd_rows)), [r["method"] for r in kd_rows], rotation=30)
    axis.axhline(0, color="black", linewidth=0.8)
    axis.set(ylabel="COCO AP gain over no-KD student", title="KD gain per method (error bar: std over seeds)")
    axis.legend()
    figure.tight_layout()
    RESULTS.mkdir(parents=True, exist_ok=True)
    figure.savefig(RESULTS / f"kd_table_{args.preset}.png", dpi=100)
    plt.close(figure)
    lines += ["", f"![gain per method](kd_table_{args.preset}.png)"]
    write_results(f"kd_table_{args.preset}", payload, "\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
