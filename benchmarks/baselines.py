"""Teacher vs student baselines on the synthetic driving set (issue: KD needs room between them).

Trains the one-stage teacher of a preset (cached: trained once, shared with kd_table.py) and its width-reduced
student without KD (the kd_table.py "no KD" cell of the same seed), then writes COCO AP, KITTI Moderate AP per
class, params, GFLOPs and training time to benchmarks/results/baselines_<preset>.*.

    python benchmarks/baselines.py --preset cpu        # 2-core CPU, about 16 minutes
    python benchmarks/baselines.py --preset gpu-full   # full KITTI size, retinanet_resnet50 teacher
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import asdict
from pathlib import Path

from rich.console import Console

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import write_results  # noqa: E402
from kd_cells import PRESETS, Cell, preset_summary, run_cell  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", choices=sorted(PRESETS), default="cpu")
    parser.add_argument("--seed", type=int, default=0, help="seed of the student run")
    args = parser.parse_args()
    console = Console()
    cells = (Cell(args.preset, "one-stage", "teacher"), Cell(args.preset, "one-stage", "student", "no KD", args.seed))
    rows = []
    for cell in cells:
        console.print(f"[bold]{cell.role} {cell.model}[/] ({cell.directory()})")
        rows.append({**run_cell(cell, console), "model": cell.role})
    gap = rows[0]["AP"] - rows[1]["AP"]
    lines = [
        f"# Teacher vs student baselines ({args.preset} preset)",
        "",
        preset_summary(args.preset) + f" Student seed {args.seed}.",
        "",
        "| role | model | params (M) | GFLOPs | epochs | train (min) | COCO AP | AP50 | KITTI Mod Car | Ped | Cyc |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for row in rows:
        per_class = row["kitti_moderate_per_class"]
        lines.append(
            f"| {row['model']} | {row['name']} | {row['params_m']:.2f} | {row['gflops']:.2f} | {row['epochs']} | "
            f"{row['train_minutes']:.1f} | {row['AP']:.2f} | {row['AP50']:.2f} | {per_class.get('Car', 0):.2f} | "
            f"{per_class.get('Pedestrian', 0):.2f} | {per_class.get('Cyclist', 0):.2f} |"
        )
    lines += ["", f"Teacher - student gap: {gap:.2f} COCO AP points. Trained on: {rows[0].get('trained_on', '?')}."]
    payload = {"preset": args.preset, "config": asdict(PRESETS[args.preset]), "rows": rows, "gap_ap": gap}
    json_path, _ = write_results(f"baselines_{args.preset}", payload, "\n".join(lines))
    console.print("\n".join(lines))
    console.print(f"written {json_path}")


if __name__ == "__main__":
    main()
