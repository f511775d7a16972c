"""KITTI label_2 / results / calib files, read and written as the official devkit lays them out.

Format: devkit `readme.txt` (kitti-protocol.md section 3.1). Ground-truth lines have 15 fields, results lines
a 16th (score). Every parse error names `file:line: field <name>: <problem>`.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np

from edgekd.atomic import atomic_write_text
from edgekd.data.records import LabeledObject
from edgekd.data.text import read_text
from edgekd.errors import EdgeKDError

FIELD_NAMES: tuple[str, ...] = (
    "type",
    "truncated",
    "occluded",
    "alpha",
    "bbox_left",
    "bbox_top",
    "bbox_right",
    "bbox_bottom",
    "dim_height",
    "dim_width",
    "dim_length",
    "loc_x",
    "loc_y",
    "loc_z",
    "rotation_y",
    "score",
)
"""The 16 columns of a KITTI label line, in file order (the last one only in results files)."""

N_GT_FIELDS = 15
N_RESULT_FIELDS = 16

CALIB_KEYS: tuple[str, ...] = ("P0", "P1", "P2", "P3", "R0_rect", "Tr_velo_to_cam", "Tr_imu_to_velo")


def _parse_float(token: str, where: str, name: str) -> float:
    try:
        value = float(token)
    except ValueError:
        raise EdgeKDError(f"{where}: field {name}: not a number: {token!r}") from None
    if not math.isfinite(value):
        raise EdgeKDError(f"{where}: field {name}: not a finite number: {token!r}")
    return value


def _parse_occluded(token: str, where: str) -> int:
    value = _parse_float(token, where, "occluded")
    if value != int(value) or not -1 <= value <= 3:
        raise EdgeKDError(f"{where}: field occluded: must be an integer in -1..3, got {token!r}")
    return int(value)


_EXPECTED_FIELDS = {True: (N_RESULT_FIELDS,), False: (N_GT_FIELDS,), None: (N_GT_FIELDS, N_RESULT_FIELDS)}


def parse_label_line(line: str, where: str, with_score: bool | None = None) -> LabeledObject:
    """One label line -> LabeledObject. `where` ("file:line") prefixes every error message.

    with_score: True = results line (16 fields), False = ground truth (15), None = accept either.
    """
    tokens = line.split()
    expected = _EXPECTED_FIELDS[with_score]
    if len(tokens) not in expected:
        wanted = " or ".join(str(n) for n in expected)
        note = " (results lines end with a score)" if with_score else ""
        raise EdgeKDError(f"{where}: field count: expected {wanted} fields{note}, got {len(tokens)}")
    values = [_parse_float(tokens[i], where, FIELD_NAMES[i]) for i in range(4, 15)]
    truncated = _parse_float(tokens[1], where, "truncated")
    if not -1.0 <= truncated <= 1.0:
        raise EdgeKDError(f"{where}: field truncated: must be in [-1, 1] (-1 = DontCare), got {tokens[1]!r}")
    score = _parse_float(tokens[15], where, "score") if len(tokens) == N_RESULT_FIELDS else None
    return LabeledObject(
        type=tokens[0],
        truncated=truncated,
        occluded=_parse_occluded(tokens[2], where),
        alpha=_parse_float(tokens[3], where, "alpha"),
        bbox=(values[0], values[1], values[2], values[3]),
        dimensions=(values[4], values[5], values[6]),
        location=(values[7], values[8], values[9]),
        rotation_y=values[10],
        score=score,
    )


def read_label_lines(path: str | Path, with_score: bool | None = None) -> list[tuple[int, LabeledObject]]:
    """All objects of a label/results file with their 1-based line numbers (blank lines are skipped)."""
    path = Path(path)
    text = read_text(path, "label file")
    return [
        (number, parse_label_line(line, f"{path}:{number}", with_score))
        for number, line in enumerate(text.splitlines(), start=1)
        if line.strip()
    ]


def is_bad_box(obj: LabeledObject) -> bool:
    """True for a zero- or negative-size box (right <= left or bottom <= top)."""
    left, top, right, bottom = obj.bbox
    return right <= left or bottom <= top


def bad_box_message(path: str | Path, line: int, obj: LabeledObject) -> str:
    """`file:line: field bbox: ...` for a zero/negative-size box."""
    left, top, right, bottom = obj.bbox
    return (
        f"{path}:{line}: field bbox: zero or negative size "
        f"(left {left:g}, top {top:g}, right {right:g}, bottom {bottom:g})"
    )


def is_outside_image(obj: LabeledObject, width: int, height: int) -> bool:
    """True when a box shares no area with the width x height image (a box partly outside is truncation)."""
    left, top, right, bottom = obj.bbox
    return right <= 0 or bottom <= 0 or left >= width or top >= height


def outside_image_message(path: str | Path, line: int, obj: LabeledObject, width: int, height: int) -> str:
    """`file:line: field bbox: ...` for a box entirely outside its width x height image."""
    left, top, right, bottom = obj.bbox
    return (
        f"{path}:{line}: field bbox: entirely outside the {width}x{height} image "
        f"(left {left:g}, top {top:g}, right {right:g}, bottom {bottom:g})"
    )


def read_label_file(path: str | Path, with_score: bool | None = None, on_bad_box: str = "error") -> list[LabeledObject]:
    """Objects of one label_2 (15 fields) or results (16 fields) file; `with_score=None` accepts either.

    A ground-truth line whose box has zero or negative size raises EdgeKDError naming file:line
    (on_bad_box="error"), or is kept (on_bad_box="keep"; the dataset loader then reports it). Results lines
    (with a score) are kept as they are: a degenerate detection is the evaluator's business, not a file error.
    """
    if on_bad_box not in ("error", "keep"):
        raise EdgeKDError(f"on_bad_box must be 'error' or 'keep', got {on_bad_box!r}")
    objects = []
    for number, obj in read_label_lines(path, with_score):
        if on_bad_box == "error" and obj.score is None and is_bad_box(obj):
            raise EdgeKDError(bad_box_message(path, number, obj))
        objects.append(obj)
    return objects


def _fmt(value: float, decimals: int = 2) -> str:
    text = f"{value:.{decimals}f}"
    # "-0.00" and "0.00" are the same number; print one spelling so equal labels give equal files.
    return text[1:] if text.startswith("-") and float(text) == 0.0 else text


def format_label_line(obj: LabeledObject) -> str:
    """The label_2 line of `obj` as the official files print it (floats with 2 decimals, score with 6)."""
    fields = [
        obj.type,
        _fmt(obj.truncated),
        str(int(obj.occluded)),
        _fmt(obj.alpha),
        *(_fmt(v) for v in obj.bbox),
        *(_fmt(v) for v in obj.dimensions),
        *(_fmt(v) for v in obj.location),
        _fmt(obj.rotation_y),
    ]
    if obj.score is not None:
        fields.append(_fmt(obj.score, 6))
    return " ".join(fields)


def write_label_file(path: str | Path, objects: Iterable[LabeledObject]) -> None:
    """Write one label_2 (or results, when objects carry scores) file; an empty list gives an empty file."""
    objects = list(objects)
    for obj in objects:
        if len(obj.type.split()) != 1 or obj.type != obj.type.strip():
            raise EdgeKDError(f"{path}: field type: must be one word, got {obj.type!r}")
    atomic_write_text(path, "".join(format_label_line(obj) + "\n" for obj in objects))


def read_results_dir(results_dir: str | Path, image_ids: Sequence[str]) -> dict[str, list[LabeledObject]]:
    """Detections of every image of a split from a KITTI results directory (<id>.txt, 16 fields each).

    A missing file means no detections for that image. A .txt file whose id is not in `image_ids` is an error
    naming it (results for another split are a common mix-up). Files not ending in .txt are not results.
    """
    results_dir = Path(results_dir)
    if not results_dir.is_dir():
        raise EdgeKDError(f"results directory not found: {results_dir}")
    wanted = set(image_ids)
    extra = sorted(p.name for p in results_dir.glob("*.txt") if p.stem not in wanted)
    if extra:
        shown = ", ".join(extra[:5]) + (f" and {len(extra) - 5} more" if len(extra) > 5 else "")
        raise EdgeKDError(f"{results_dir}: {len(extra)} results file(s) for images not in the split: {shown}")
    results = {}
    for image_id in image_ids:
        path = results_dir / f"{image_id}.txt"
        results[image_id] = read_label_file(path, with_score=True) if path.is_file() else []
    return results


def _calib_line(key: str, matrix: np.ndarray) -> str:
    return f"{key}: " + " ".join(f"{v:.12e}" for v in np.asarray(matrix, dtype=np.float64).ravel())


def write_calib(path: str | Path, P2: np.ndarray) -> None:
    """Write a calib file for a single-camera rig whose left colour camera has projection matrix P2 (3x4).

    All seven keys of the official files are written so tools that parse every key accept it: P0..P3 = P2
    (there is only one camera), R0_rect = identity, Tr_velo_to_cam = the KITTI axis change (velodyne
    x forward, y left, z up -> camera x right, y down, z forward), Tr_imu_to_velo = identity.
    """
    P2 = np.asarray(P2, dtype=np.float64)
    if P2.shape != (3, 4):
        raise EdgeKDError(f"{path}: P2 must be 3x4, got shape {P2.shape}")
    velo_to_cam = np.array([[0.0, -1.0, 0.0, 0.0], [0.0, 0.0, -1.0, 0.0], [1.0, 0.0, 0.0, 0.0]])
    matrices = {
        "P0": P2,
        "P1": P2,
        "P2": P2,
        "P3": P2,
        "R0_rect": np.eye(3),
        "Tr_velo_to_cam": velo_to_cam,
        "Tr_imu_to_velo": np.hstack([np.eye(3), np.zeros((3, 1))]),
    }
    atomic_write_text(path, "".join(_calib_line(key, m) + "\n" for key, m in matrices.items()))


def read_calib(path: str | Path) -> np.ndarray:
    """The P2 matrix (3x4, float64) of a KITTI calib file."""
    path = Path(path)
    lines = read_text(path, "calib file").splitlines()
    for number, line in enumerate(lines, start=1):
        key, sep, rest = line.partition(":")
        if key.strip() != "P2":
            continue
        tokens = rest.split()
        if not sep or len(tokens) != 12:
            raise EdgeKDError(f"{path}:{number}: field P2: expected 12 numbers, got {len(tokens)}")
        values = [_parse_float(tok, f"{path}:{number}", "P2") for tok in tokens]
        return np.array(values, dtype=np.float64).reshape(3, 4)
    raise EdgeKDError(f"{path}: field P2: no 'P2:' line")


class BadBoxWarning(UserWarning):
    """Zero/negative-size ground-truth boxes, or boxes entirely outside their image, were kept (on_bad_box="warn")."""


def report_bad_boxes(
    messages: Sequence[str], source: str | Path, on_bad_box: str, kind: str = "zero/negative-size"
) -> None:
    """Raise on the first bad box (on_bad_box="error") or warn once with the count and the first few; `kind`
    says what is wrong with them in the warning."""
    if not messages:
        return
    if on_bad_box == "error":
        raise EdgeKDError(
            messages[0]
            + (f" ({len(messages)} such boxes in {source})" if len(messages) > 1 else "")
            + "; fix or remove the box (`edgekd data stats DATA --split SPLIT` lists every such box)"
        )
    shown = "\n  ".join(messages[:5]) + (f"\n  ... and {len(messages) - 5} more" if len(messages) > 5 else "")
    message = f"{len(messages)} {kind} box(es) kept in {source}:\n  {shown}"
    warnings.warn(BadBoxWarning(message), stacklevel=3)
