"""Presenting evaluation results: rich tables for the terminal and an atomically written JSON file."""

from __future__ import annotations

import json
from pathlib import Path

from rich.table import Table

from edgekd.atomic import atomic_write_text
from edgekd.evaluate.coco import COCO_METRICS
from edgekd.evaluate.kitti import DIFFICULTIES


def _fmt(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.2f}"


def results_table(results: dict) -> list[Table]:
    """The tables of ``evaluate_detections``' results: COCO AP, then KITTI AP|R40 and 11-point AP per class.

    Print each with ``console.print``. KITTI notes (classes not evaluated) go in the KITTI table's caption.
    """
    tables: list[Table] = []
    if "coco" in results:
        coco = Table(title="COCO box AP (%)")
        for name in COCO_METRICS:
            coco.add_column(name, justify="right")
        coco.add_row(*(_fmt(results["coco"].get(name)) for name in COCO_METRICS))
        tables.append(coco)
    if "kitti" in results:
        notes = results.get("kitti_notes") or []
        kitti = Table(title="KITTI 2D AP (%)", caption="\n".join(notes) or None)
        kitti.add_column("class")
        for label in ("R40", "R11"):
            for difficulty in DIFFICULTIES:
                kitti.add_column(f"{label} {difficulty}", justify="right")
        r11 = results.get("kitti_r11", {})
        for cls, by_difficulty in results["kitti"].items():
            cells = [_fmt(by_difficulty.get(d)) for d in DIFFICULTIES]
            cells += [_fmt(r11.get(cls, {}).get(d)) for d in DIFFICULTIES]
            kitti.add_row(cls, *cells)
        tables.append(kitti)
    return tables


def write_results_json(path: str | Path, results: dict) -> None:
    """Write ``results`` as indented JSON, atomically."""
    atomic_write_text(Path(path), json.dumps(results, indent=2, allow_nan=False) + "\n")
