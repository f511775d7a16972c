"""Parity of an exported model with its PyTorch source: raw outputs and AP, with tolerances that fail the export.

Raw outputs are compared candidate by candidate. For one-stage detectors the candidates are the fixed anchors /
points, so rows align. Faster R-CNN's rows follow its RPN proposals, whose order (and, at the NMS / top-n
boundary, membership) depends on float ties; its rows are compared after matching each proposal (its K class
boxes) to the nearest proposal of the other backend, and proposals without a counterpart are counted.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from rich.table import Table

from edgekd.export.int8_search import Int8Search, search_markdown

RAW_TOLERANCE = 1e-3
"""Max absolute difference of boxes (pixels) and scores between PyTorch and ONNX Runtime (FP32)."""
AP_TOLERANCE = 0.1
"""Max |AP difference| in AP points (COCO AP and KITTI Moderate AP|R40)."""
INT8_AP_AIM = 1.0
"""INT8 should lose less than this many AP points; reported, not enforced (post-training quantisation varies)."""
UNMATCHED_TOLERANCE = 0.01
"""Faster R-CNN: at most this share of valid proposals may lack a counterpart (float ties at the RPN boundary)."""
MATCH_RADIUS = 1.0  # pixels: two proposals are the same when all their class boxes agree this closely
AP_KEYS = ("AP", "AP50", "kitti_moderate")


@dataclass
class RawDifference:
    """Running statistics of |reference - candidate| over matched candidate rows."""

    boxes_max: float = 0.0
    boxes_sum: float = 0.0
    boxes_count: int = 0
    scores_max: float = 0.0
    scores_sum: float = 0.0
    scores_count: int = 0
    unmatched: int = 0
    valid: int = 0
    images: int = 0

    def add(self, boxes_delta: np.ndarray, scores_delta: np.ndarray) -> None:
        if boxes_delta.size:
            self.boxes_max = max(self.boxes_max, float(boxes_delta.max()))
            self.boxes_sum += float(boxes_delta.astype(np.float64).sum())
            self.boxes_count += boxes_delta.size
        if scores_delta.size:
            self.scores_max = max(self.scores_max, float(scores_delta.max()))
            self.scores_sum += float(scores_delta.astype(np.float64).sum())
            self.scores_count += scores_delta.size

    def within(self, tolerance: float) -> bool:
        unmatched_ok = self.unmatched <= UNMATCHED_TOLERANCE * max(self.valid, 1)
        return self.boxes_max <= tolerance and self.scores_max <= tolerance and unmatched_ok

    def to_dict(self, inputs: str, tolerance: float | None) -> dict:
        data = {
            "inputs": inputs,
            "images": self.images,
            "boxes_max_abs": self.boxes_max,
            "boxes_mean_abs": self.boxes_sum / max(self.boxes_count, 1),
            "scores_max_abs": self.scores_max,
            "scores_mean_abs": self.scores_sum / max(self.scores_count, 1),
        }
        if self.valid:
            data["unmatched_proposals"] = self.unmatched
            data["valid_proposals"] = self.valid
        if tolerance is not None:
            data["tolerance"] = tolerance
            data["passed"] = self.within(tolerance)
        return data


def _valid_groups(scores: np.ndarray, group: int) -> np.ndarray:
    return np.nonzero(scores.reshape(-1, group * scores.shape[1]).max(axis=1) > 0)[0]


def _match_groups(reference: np.ndarray, candidate: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mutual nearest neighbours (L-infinity over all coordinates) closer than MATCH_RADIUS."""
    if len(reference) == 0 or len(candidate) == 0:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    distance = np.empty((len(reference), len(candidate)), dtype=np.float32)
    for start in range(0, len(reference), 256):  # bounded memory for thousands of proposals
        block = reference[start : start + 256, None, :] - candidate[None, :, :]
        distance[start : start + 256] = np.abs(block).max(axis=2)
    nearest = distance.argmin(axis=1)
    back = distance.argmin(axis=0)
    rows = np.arange(len(reference))
    mutual = (back[nearest] == rows) & (distance[rows, nearest] <= MATCH_RADIUS)
    return rows[mutual], nearest[mutual]


def compare_raw(
    reference: tuple[np.ndarray, np.ndarray],
    candidate: tuple[np.ndarray, np.ndarray],
    stats: RawDifference,
    proposal_rows: int | None = None,
) -> None:
    """Add a batch's |reference - candidate| of boxes (B, N, 4) and scores (B, N, K) to `stats`.

    `proposal_rows`: rows per proposal (K for Faster R-CNN) when rows must be matched; None when rows align.
    """
    ref_boxes, ref_scores = reference
    boxes, scores = candidate
    stats.images += len(ref_boxes)
    if proposal_rows is None:
        stats.add(np.abs(ref_boxes - boxes), np.abs(ref_scores - scores))
        return
    group = proposal_rows
    width = group * 4
    for i in range(len(ref_boxes)):
        ref_valid, valid = _valid_groups(ref_scores[i], group), _valid_groups(scores[i], group)
        ref_rows = ref_boxes[i].reshape(-1, width)[ref_valid]
        rows = boxes[i].reshape(-1, width)[valid]
        matched_ref, matched = _match_groups(ref_rows, rows)
        stats.valid += len(ref_valid)
        stats.unmatched += len(ref_valid) - len(matched_ref) + len(valid) - len(matched)
        score_width = group * ref_scores.shape[2]
        stats.add(
            np.abs(ref_rows[matched_ref] - rows[matched]),
            np.abs(
                ref_scores[i].reshape(-1, score_width)[ref_valid[matched_ref]]
                - scores[i].reshape(-1, score_width)[valid[matched]]
            ),
        )


@dataclass
class ApRow:
    """One row of the AP table: a backend/precision's headline metrics and, against the reference row, their
    differences; `tolerance` and `passed` only on the row the export is judged by."""

    name: str
    metrics: dict[str, float]
    delta: dict[str, float] | None = None
    tolerance: float | None = None
    passed: bool | None = None

    @classmethod
    def measured(
        cls,
        name: str,
        metrics: dict[str, float],
        reference: ApRow | None,
        enforced: bool,
        tolerance: float = AP_TOLERANCE,
    ) -> ApRow:
        """A row of `metrics`; with a reference row, the differences and (if `enforced`) whether they hold
        within `tolerance` AP points."""
        if reference is None:
            return cls(name, metrics)
        delta = {
            key: metrics[key] - reference.metrics[key] for key in AP_KEYS if key in metrics and key in reference.metrics
        }
        if not enforced:
            return cls(name, metrics, delta)
        passed = all(abs(value) <= tolerance for key, value in delta.items() if key != "AP50")
        return cls(name, metrics, delta, tolerance, passed)

    def to_dict(self) -> dict:
        row: dict = {"name": self.name, **self.metrics}
        if self.delta is not None:
            row["delta"] = self.delta
        if self.tolerance is not None:
            row["tolerance"] = self.tolerance
            row["passed"] = self.passed
        return row


@dataclass
class ApSection:
    """AP of each backend on the validation data; `rows[0]` is PyTorch, the reference of the others."""

    dataset: str
    images: int
    rows: list[ApRow]
    note: str | None = None

    @property
    def reference(self) -> ApRow:
        return self.rows[0]

    def to_dict(self) -> dict:
        return {
            "dataset": self.dataset,
            "images": self.images,
            "rows": [row.to_dict() for row in self.rows],
            "note": self.note,
        }


@dataclass
class ModelParity:
    """Raw outputs of a reduced-precision artifact (`label`: "ONNX Runtime FP16", "TensorRT int8 engine") against
    PyTorch FP32, with that precision's own bounds; `raw` is None where the artifact has no raw outputs (an
    engine ending in NMS), `checked` False where its raw outputs are reported but not gated (INT8)."""

    label: str
    model: str
    raw: RawDifference | None
    inputs: str
    box_tolerance: float
    score_tolerance: float
    checked: bool = True

    @property
    def passed(self) -> bool:
        if self.raw is None or not self.checked:
            return True
        return self.raw.boxes_max <= self.box_tolerance and self.raw.scores_max <= self.score_tolerance

    def to_dict(self) -> dict:
        return {
            "label": self.label,
            "model": self.model,
            "raw": self.raw.to_dict(self.inputs, None) if self.raw is not None else None,
            "box_tolerance": self.box_tolerance if self.checked else None,
            "score_tolerance": self.score_tolerance if self.checked else None,
            "passed": self.passed,
        }

    def rows(self) -> list[tuple[str, str, str, str]]:
        """(output, max, mean, tolerance) cells of its raw differences."""
        if self.raw is None:
            return []
        raw = self.raw
        return [
            (
                output,
                _fmt(maximum, True),
                _fmt(total / max(count, 1), True),
                _fmt(bound, True) if self.checked else "not gated",
            )
            for output, maximum, total, count, bound in (
                ("boxes", raw.boxes_max, raw.boxes_sum, raw.boxes_count, self.box_tolerance),
                ("scores", raw.scores_max, raw.scores_sum, raw.scores_count, self.score_tolerance),
            )
        ]


@dataclass
class TensorRTStatus:
    """What became of the engine: built (and where) or why not, with the trtexec command that builds it."""

    status: str
    trtexec: str

    def to_dict(self) -> dict:
        return {"status": self.status, "trtexec": self.trtexec}


@dataclass
class ParityReport:
    """The parity report of one export (parity.json / parity.md): raw differences, AP per backend, notes.

    `ap` is None when no --data was given (`ap_skipped` says so); `int8_model` and `tensorrt` are set when those
    artifacts were asked for, `int8_search` (and its PNG `int8_search_plot`) with --int8-ap-budget."""

    checkpoint: str
    checkpoint_sha256: str
    model: str
    nms: str
    batch: str
    opset: int
    raw: RawDifference
    raw_inputs: str
    raw_tolerance: float = RAW_TOLERANCE
    ap: ApSection | None = None
    ap_skipped: str | None = None
    notes: list[str] = field(default_factory=list)
    int8_model: str | None = None
    int8_search: Int8Search | None = None
    int8_search_plot: str | None = None
    fp16: ModelParity | None = None
    engine: ModelParity | None = None
    tensorrt: TensorRTStatus | None = None

    @property
    def passed(self) -> bool:
        """Raw outputs within tolerance and every enforced AP row within tolerance."""
        ap_ok = self.ap is None or all(row.passed is not False for row in self.ap.rows)
        others_ok = all(check.passed for check in (self.fp16, self.engine) if check is not None)
        return self.raw.within(self.raw_tolerance) and ap_ok and others_ok

    def to_dict(self) -> dict:
        """The parity.json layout."""
        data: dict = {
            "checkpoint": self.checkpoint,
            "checkpoint_sha256": self.checkpoint_sha256,
            "model": self.model,
            "nms": self.nms,
            "batch": self.batch,
            "opset": self.opset,
            "raw": self.raw.to_dict(self.raw_inputs, self.raw_tolerance),
            "notes": list(self.notes),
            "ap": self.ap.to_dict() if self.ap is not None else {"skipped": self.ap_skipped},
            "passed": self.passed,
        }
        if self.int8_model is not None:
            data["int8_model"] = self.int8_model
        if self.fp16 is not None:
            data["fp16"] = self.fp16.to_dict()
        if self.engine is not None:
            data["engine"] = self.engine.to_dict()
        if self.int8_search is not None:
            data["int8_search"] = {**self.int8_search.to_dict(), "plot": self.int8_search_plot}
        if self.tensorrt is not None:
            data["tensorrt"] = self.tensorrt.to_dict()
        return data


def _fmt(value: object, scientific: bool = False) -> str:
    if isinstance(value, float):
        return f"{value:.2e}" if scientific else f"{value:.2f}"
    return "" if value is None else str(value)


def _verdict(passed: bool | None) -> str:
    if passed is None:
        return "info"
    return "ok" if passed else "FAIL"


def _raw_cells(report: ParityReport, output: str) -> tuple[str, str]:
    raw = report.raw
    maximum, total, count = {
        "boxes": (raw.boxes_max, raw.boxes_sum, raw.boxes_count),
        "scores": (raw.scores_max, raw.scores_sum, raw.scores_count),
    }[output]
    return _fmt(maximum, True), _fmt(total / max(count, 1), True)


def _ap_cells(row: ApRow) -> list[str]:
    delta = row.delta or {}
    cells = [row.name, *(_fmt(row.metrics.get(key)) for key in AP_KEYS)]
    return cells + [_fmt(delta.get("AP")), _fmt(delta.get("kitti_moderate")), _verdict(row.passed) if delta else ""]


def _unmatched(report: ParityReport) -> str | None:
    raw = report.raw
    return f"{raw.unmatched} of {raw.valid}" if raw.valid else None


def report_tables(report: ParityReport) -> list[Table]:
    """Rich tables of a parity report: raw differences, then AP per backend/precision."""
    table = Table(title=f"Raw output parity, PyTorch vs ONNX Runtime ({report.raw_inputs})")
    for column in ("output", "max |diff|", "mean |diff|", "tolerance", "verdict"):
        table.add_column(column, justify="left" if column == "output" else "right")
    verdict = _verdict(report.raw.within(report.raw_tolerance))
    for output in ("boxes", "scores"):
        table.add_row(output, *_raw_cells(report, output), _fmt(report.raw_tolerance, True), verdict)
    if _unmatched(report):
        table.caption = f"proposals without a counterpart: {_unmatched(report)}"
    for check in (report.fp16, report.engine):
        if check is not None:
            for output, maximum, mean, bound in check.rows():
                table.add_row(f"{output} ({check.label})", maximum, mean, bound, _verdict(check.passed))
    tables = [table]
    ap = report.ap
    if ap is not None and ap.rows:
        ap_table = Table(title=f"AP on {ap.dataset} ({ap.images} images), percent", caption=ap.note)
        for column in ("model", "AP", "AP50", "KITTI Mod", "dAP", "dKITTI Mod", "verdict"):
            ap_table.add_column(column, justify="left" if column == "model" else "right")
        for row in ap.rows:
            ap_table.add_row(*_ap_cells(row))
        tables.append(ap_table)
    return tables


def report_markdown(report: ParityReport) -> str:
    """The parity report as Markdown (saved beside the model)."""
    lines = [
        f"# Export parity: {report.model}",
        "",
        f"- checkpoint: `{report.checkpoint}` (sha256 {report.checkpoint_sha256[:12]}...)",
        f"- NMS: {report.nms}; batch: {report.batch}; opset {report.opset}",
        f"- verdict: **{'passed' if report.passed else 'FAILED'}**",
        "",
        f"## Raw outputs, PyTorch vs ONNX Runtime ({report.raw_inputs})",
        "",
        "| output | max abs diff | mean abs diff | tolerance |",
        "|---|---:|---:|---:|",
    ]
    for output in ("boxes", "scores"):
        maximum, mean = _raw_cells(report, output)
        lines.append(f"| {output} | {maximum} | {mean} | {_fmt(report.raw_tolerance, True)} |")
    if _unmatched(report):
        lines += ["", f"Proposals without a counterpart: {_unmatched(report)}."]
    for check in (report.fp16, report.engine):
        if check is not None and check.rows():
            lines += [
                "",
                f"## Raw outputs, PyTorch FP32 vs {check.label} ({check.inputs}): {_verdict(check.passed)}",
                "",
                "| output | max abs diff | mean abs diff | tolerance |",
                "|---|---:|---:|---:|",
            ]
            lines += ["| " + " | ".join(cells) + " |" for cells in check.rows()]
    ap = report.ap
    lines += ["", "## AP", ""]
    if ap is None or not ap.rows:
        lines.append(report.ap_skipped or "not measured")
    else:
        lines += [
            f"{ap.dataset}, {ap.images} images; percent.",
            "",
            "| model | AP | AP50 | KITTI Mod | dAP | dKITTI Mod | verdict |",
            "|---|---:|---:|---:|---:|---:|---|",
        ]
        lines += ["| " + " | ".join(_ap_cells(row)) + " |" for row in ap.rows]
        if ap.note:
            lines += ["", ap.note]
    for note in report.notes:
        lines += ["", f"- {note}"]
    if report.int8_search is not None:
        lines += ["", search_markdown(report.int8_search, report.int8_search_plot).rstrip("\n")]
    if report.tensorrt is not None:
        lines += ["", "## TensorRT", "", report.tensorrt.status]
        if report.tensorrt.trtexec:
            lines += ["", "```", report.tensorrt.trtexec, "```"]
    return "\n".join(lines) + "\n"
