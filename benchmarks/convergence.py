"""Have the teacher and the no-KD student of a preset converged? Their validation learning curves from the stored
cells (benchmarks/results/cells/, nothing is trained), the AP each gains over its last quarter of epochs, and the
teacher-student gap at the end.

    python benchmarks/convergence.py --preset cpu-conv --pairs one-stage,two-stage

A curve counts as converged when its last-quarter gain is under PLATEAU AP points; a pair is worth distilling when
the teacher leads the converged student by at least MIN_GAP points on the reported split.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import write_figure_results  # noqa: E402
from kd_cells import PRESETS, Cell, cached_result  # noqa: E402

PLATEAU = 0.3
MIN_GAP = 5.0


def last_quarter_gain(curve: list[float]) -> float:
    """How much AP the curve's trend rises across its last quarter of epochs: the least-squares line through the
    last quarter and the epoch before it, its value at the last epoch minus at the first (0 for a one-epoch curve).
    A trend rather than best-minus-best: a 100-image validation split moves by about 1 AP from epoch to epoch, and
    the best of a noisy plateau's last quarter still beats the best before it."""
    quarter = max(1, len(curve) // 4)
    if len(curve) <= quarter:
        return 0.0
    window = np.asarray(curve[-quarter - 1 :], dtype=float)
    slope = np.polyfit(np.arange(len(window)), window, 1)[0]
    return float(slope * quarter)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", choices=sorted(PRESETS), default="cpu-conv")
    parser.add_argument("--pairs", default="one-stage,two-stage")
    parser.add_argument("--seeds", type=int, default=1, help="no-KD student seeds to show")
    args = parser.parse_args()
    preset = PRESETS[args.preset]
    pairs = [p.strip() for p in args.pairs.split(",")]
    lines = [
        f"# Convergence ({args.preset} preset)",
        "",
        "Validation COCO AP per epoch; 'last-quarter gain' = rise of the least-squares line through the last quarter "
        f"of epochs and the epoch before it (converged: under {PLATEAU} AP). 'report AP' is on the "
        f"{preset.report_split} split.",
        "",
        "| pair | role | model | epochs | final val AP | last-quarter gain | converged | report AP |",
        "|---|---|---|---|---|---|---|---|",
    ]
    payload: dict = {"preset": args.preset, "plateau": PLATEAU, "min_gap": MIN_GAP, "pairs": {}}
    figure, axes = plt.subplots(1, len(pairs), figsize=(6 * len(pairs), 4), squeeze=False)
    for axis, pair in zip(axes[0], pairs):
        cells = [Cell(args.preset, pair, "teacher")]
        cells += [Cell(args.preset, pair, "student", "no KD", seed) for seed in range(args.seeds)]
        rows = [(cell, cached_result(cell)) for cell in cells]
        found = [(cell, row) for cell, row in rows if row is not None]
        if not found:
            lines.append(f"| {pair} | - | - | - | - | - | not run | - |")
            continue
        entries = []
        for cell, row in found:
            curve = row["ap_per_epoch"]
            gain = last_quarter_gain(curve)
            label = "teacher" if cell.role == "teacher" else f"no KD, seed {cell.seed}"
            axis.plot(range(1, len(curve) + 1), curve, marker="o", markersize=3, label=f"{label}: {row['name']}")
            entries.append({"role": label, "model": row["name"], "curve": curve, "gain": gain, "AP": row["AP"]})
            converged = "yes" if gain < PLATEAU else "no"
            lines.append(
                f"| {pair} | {label} | {row['name']} | {len(curve)} | {curve[-1]:.2f} | {gain:+.2f} | {converged} "
                f"| {row['AP']:.2f} |"
            )
        teacher = next((e for e in entries if e["role"] == "teacher"), None)
        students = [e for e in entries if e["role"] != "teacher"]
        if teacher and students:
            gap = teacher["AP"] - sum(s["AP"] for s in students) / len(students)
            payload["pairs"][pair] = {"entries": entries, "gap": gap}
            verdict = "enough to distil" if gap >= MIN_GAP else f"under the {MIN_GAP:.0f}-point aim"
            lines.append(f"| {pair} | gap | teacher - no KD | | | | | {gap:+.2f} ({verdict}) |")
        axis.set(title=f"{pair} ({args.preset})", xlabel="epoch", ylabel="val COCO AP (%)")
        axis.legend(fontsize=8)
    stem = f"convergence_{args.preset}"
    write_figure_results(stem, payload, lines, figure, "learning curves")


if __name__ == "__main__":
    main()
