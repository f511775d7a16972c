"""Presenting evaluation results: rich tables for the terminal and an atomically written JSON file."""

from __future__ import annotations

import json
import math
import reprlib
from pathlib import Path

from rich.table import Table

from edgekd.atomic import atomic_write_text
from edgekd.errors import EdgeKDError
from edgekd.evaluate.coco import COCO_METRICS
from edgekd.evaluate.kitti import DIFFICULTIES
from edgekd.evaluate.result import EvalResult


def _fmt(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.2f}"


def results_table(result: EvalResult) -> list[Table]:
    """The tables of an evaluation: COCO AP, then (with KITTI results) KITTI AP|R40 and 11-point AP per class.

    Print each with ``edgekd.console.print_table``. KITTI notes (classes not evaluated) go in the KITTI table's caption.
    """
    coco = Table(title="COCO box AP (%)")
    for name in COCO_METRICS:
        coco.add_column(name, justify="right")
    coco.add_row(*(_fmt(getattr(result.coco, name)) for name in COCO_METRICS))
    tables = [coco]
    if result.kitti is not None:
        kitti = Table(title="KITTI 2D AP (%)", caption="\n".join(result.kitti_notes) or None)
        kitti.add_column("class")
        for label in ("R40", "R11"):
            for difficulty in DIFFICULTIES:
                kitti.add_column(f"{label} {difficulty}", justify="right")
        for cls, ap in result.kitti.items():
            cells = [_fmt(getattr(ap.r40, d)) for d in DIFFICULTIES] + [_fmt(getattr(ap.r11, d)) for d in DIFFICULTIES]
            kitti.add_row(cls, *cells)
        tables.append(kitti)
    return tables


def check_json_target(path: Path, option: str = "--json") -> None:
    """Refuse, before any work, a JSON output path that is a folder or lies under a file."""
    path = Path(path)
    if path.is_dir():
        raise EdgeKDError(f"{option} {path}: is a folder; give a file name, e.g. {path / 'results.json'}")
    for parent in path.parents:
        if parent.exists() and not parent.is_dir():
            raise EdgeKDError(f"{option} {path}: is under {parent}, which is a file")


def write_results_json(path: str | Path, results: dict | EvalResult) -> None:
    """Write ``results`` as indented JSON, atomically; an `EvalResult` in its `to_dict` layout."""
    payload = results.to_dict() if isinstance(results, EvalResult) else results
    atomic_write_text(Path(path), json.dumps(payload, indent=2, allow_nan=False) + "\n")


def _metric(value: object) -> bool:
    return value is None or (isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value))


def validate_eval_payload(data: object, origin: str) -> None:
    """Raise EdgeKDError naming `origin` and the first malformed field of an eval result (``edgekd eval --json``):
    'coco' maps metric names to numbers or null, 'kitti' / 'kitti_r11' map classes to {difficulty: number or
    null}, 'kitti_notes' is a list of strings."""
    if not isinstance(data, dict) or not isinstance(data.get("coco"), dict):
        raise EdgeKDError(f"{origin}: not an eval result (field 'coco' must be an object of metrics)")
    for name, value in data["coco"].items():
        if not _metric(value):
            raise EdgeKDError(f"{origin}: field 'coco.{name}' must be a number or null, got {reprlib.repr(value)}")
    for section in ("kitti", "kitti_r11"):
        table = data.get(section, {})
        if not isinstance(table, dict):
            raise EdgeKDError(f"{origin}: field '{section}' must be an object of classes, got {reprlib.repr(table)}")
        for cls, row in table.items():
            where = f"{section}.{cls}"
            if not isinstance(row, dict):
                raise EdgeKDError(f"{origin}: field '{where}' must map difficulties to AP, got {reprlib.repr(row)}")
            for difficulty, value in row.items():
                if not _metric(value):
                    raise EdgeKDError(
                        f"{origin}: field '{where}.{difficulty}' must be a number or null, got {reprlib.repr(value)}"
                    )
    notes = data.get("kitti_notes", [])
    if not isinstance(notes, list) or not all(isinstance(note, str) for note in notes):
        raise EdgeKDError(f"{origin}: field 'kitti_notes' must be a list of strings, got {reprlib.repr(notes)}")
