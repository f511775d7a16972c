"""Parity of an exported model with its PyTorch source: raw outputs and AP, with tolerances that fail the export.

Raw outputs are compared candidate by candidate. For one-stage detectors the candidates are the fixed anchors /
points, so rows align. Faster R-CNN's rows follow its RPN proposals, whose order (and, at the NMS / top-n
boundary, membership) depends on float ties; its rows are compared after matching each proposal (its K class
boxes) to the nearest proposal of the other backend, and proposals without a counterpart are counted.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from rich.table import Table

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


def ap_summary(results: dict) -> dict[str, float]:
    """COCO AP, AP50 and mean KITTI Moderate AP|R40 (percent) of `evaluate_detections`' results."""
    from edgekd.train.trainer import summarize

    return summarize(results)


def ap_row(name: str, summary: dict[str, float], reference: dict[str, float] | None, enforced: bool) -> dict:
    """One AP table row; with a reference, the differences and (if `enforced`) whether they are within tolerance."""
    row: dict = {"name": name, **summary}
    if reference is not None:
        deltas = {key: summary[key] - reference[key] for key in AP_KEYS if key in summary and key in reference}
        row["delta"] = deltas
        if enforced:
            row["tolerance"] = AP_TOLERANCE
            row["passed"] = all(abs(value) <= AP_TOLERANCE for key, value in deltas.items() if key != "AP50")
    return row


def report_passed(report: dict) -> bool:
    raw_ok = report["raw"].get("passed", True)
    ap_ok = all(row.get("passed", True) for row in report.get("ap", {}).get("rows", []))
    return raw_ok and ap_ok


def _fmt(value: object, scientific: bool = False) -> str:
    if isinstance(value, float):
        return f"{value:.2e}" if scientific else f"{value:.2f}"
    return "" if value is None else str(value)


def _verdict(row: dict) -> str:
    if "passed" not in row:
        return "info"
    return "ok" if row["passed"] else "FAIL"


def report_tables(report: dict) -> list[Table]:
    """Rich tables of a parity report: raw differences, then AP per backend/precision."""
    raw = report["raw"]
    title = f"Raw output parity, PyTorch vs ONNX Runtime ({raw['inputs']})"
    table = Table(title=title)
    for column in ("output", "max |diff|", "mean |diff|", "tolerance", "verdict"):
        table.add_column(column, justify="left" if column == "output" else "right")
    for output in ("boxes", "scores"):
        table.add_row(
            output,
            _fmt(raw[f"{output}_max_abs"], True),
            _fmt(raw[f"{output}_mean_abs"], True),
            _fmt(raw.get("tolerance"), True),
            _verdict(raw),
        )
    if "valid_proposals" in raw:
        table.caption = f"proposals without a counterpart: {raw['unmatched_proposals']} of {raw['valid_proposals']}"
    tables = [table]
    ap = report.get("ap", {})
    if ap.get("rows"):
        ap_table = Table(title=f"AP on {ap['dataset']} ({ap['images']} images), percent", caption=ap.get("note"))
        for column in ("model", "AP", "AP50", "KITTI Mod", "dAP", "dKITTI Mod", "verdict"):
            ap_table.add_column(column, justify="left" if column == "model" else "right")
        for row in ap["rows"]:
            delta = row.get("delta", {})
            ap_table.add_row(
                row["name"],
                _fmt(row.get("AP")),
                _fmt(row.get("AP50")),
                _fmt(row.get("kitti_moderate")),
                _fmt(delta.get("AP")),
                _fmt(delta.get("kitti_moderate")),
                _verdict(row) if delta else "",
            )
        tables.append(ap_table)
    return tables


def report_markdown(report: dict) -> str:
    """The parity report as Markdown (saved beside the model)."""
    raw = report["raw"]
    lines = [
        f"# Export parity: {report['model']}",
        "",
        f"- checkpoint: `{report['checkpoint']}` (sha256 {report['checkpoint_sha256'][:12]}...)",
        f"- NMS: {report['nms']}; batch: {report['batch']}; opset {report['opset']}",
        f"- verdict: **{'passed' if report['passed'] else 'FAILED'}**",
        "",
        f"## Raw outputs, PyTorch vs ONNX Runtime ({raw['inputs']})",
        "",
        "| output | max abs diff | mean abs diff | tolerance |",
        "|---|---:|---:|---:|",
    ]
    for output in ("boxes", "scores"):
        lines.append(
            f"| {output} | {_fmt(raw[f'{output}_max_abs'], True)} | {_fmt(raw[f'{output}_mean_abs'], True)} "
            f"| {_fmt(raw.get('tolerance'), True)} |"
        )
    if "valid_proposals" in raw:
        lines += ["", f"Proposals without a counterpart: {raw['unmatched_proposals']} of {raw['valid_proposals']}."]
    ap = report.get("ap", {})
    lines += ["", "## AP", ""]
    if not ap.get("rows"):
        lines.append(ap.get("skipped", "not measured"))
    else:
        lines += [
            f"{ap['dataset']}, {ap['images']} images; percent.",
            "",
            "| model | AP | AP50 | KITTI Mod | dAP | dKITTI Mod | verdict |",
            "|---|---:|---:|---:|---:|---:|---|",
        ]
        for row in ap["rows"]:
            delta = row.get("delta", {})
            cells = [row["name"], *(_fmt(row.get(key)) for key in AP_KEYS)]
            cells += [_fmt(delta.get("AP")), _fmt(delta.get("kitti_moderate")), _verdict(row) if delta else ""]
            lines.append("| " + " | ".join(cells) + " |")
        if ap.get("note"):
            lines += ["", ap["note"]]
    for note in report.get("notes", []):
        lines += ["", f"- {note}"]
    tensorrt = report.get("tensorrt")
    if tensorrt:
        lines += ["", "## TensorRT", "", tensorrt.get("status", "")]
        if tensorrt.get("trtexec"):
            lines += ["", "```", tensorrt["trtexec"], "```"]
    return "\n".join(lines) + "\n"
