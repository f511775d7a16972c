"""Why does a KD method help or not? Per method, from the stored cells (benchmarks/results/cells/, nothing is
trained): the validation learning curve (mean over the seeds found, with the teacher's) and the KD losses' share
of the total training loss per epoch.

    python benchmarks/kd_analysis.py --preset cpu --pairs one-stage-gfl --seeds 3

The share reads each cell's per-epoch loss means (metrics.csv columns, `loss_per_epoch` in the cell): `loss` is the
minimised total, the detector's own terms (e.g. loss_qfl/loss_dfl/loss_giou) plus one `loss_<name>` per KD loss of
the recipe, logged already multiplied by its recipe weight (edgekd/distill/objective.py), so the KD share of an
epoch is sum(loss_<name>) / loss. Cells stored before losses were logged draw their curves but have no share.
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import asdict, dataclass
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.ticker import MaxNLocator  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import write_figure_results  # noqa: E402
from convergence import last_quarter_gain  # noqa: E402
from kd_cells import DEFAULT_ROWS, KNOWN_ROWS, PRESETS, Cell, cached_result, parse_rows, preset_summary, row_recipe  # noqa: E402


def kd_share(losses: dict[str, list[float]], kd_terms: list[str]) -> list[float]:
    """Per epoch, the KD terms' share of the total loss in percent: 100 * sum(losses[term]) / losses["loss"]
    (`losses`: a cell's `loss_per_epoch`, whose KD terms are already weighted)."""
    total = np.asarray(losses["loss"], dtype=float)
    kd = np.sum([losses[term] for term in kd_terms], axis=0) if kd_terms else np.zeros_like(total)
    return (100 * kd / total).tolist()


def epoch_points(n_epochs: int) -> list[int]:
    """The 0-based first, middle and last epoch a table reports a per-epoch value at (fewer under 3 epochs)."""
    return sorted({0, (n_epochs - 1) // 2, n_epochs - 1})


@dataclass
class MethodAnalysis:
    """One table row (or the teacher) of a pair: its seeds' mean validation curve and mean KD share per epoch."""

    method: str
    seeds: list[int]
    ap_curve: list[float]  # validation COCO AP per epoch, mean over seeds
    final_ap: float  # the mean curve's last epoch
    last_quarter_gain: float  # of the mean curve (convergence.last_quarter_gain)
    kd_terms: list[str]  # the KD loss columns summed into the share; empty for no KD and the teacher
    share_seeds: list[int]  # seeds whose cell logged its losses (the share is their mean)
    kd_share: list[float] | None  # percent per epoch; None without KD terms or without logged losses


def analyse(method: str, results: dict[int, dict], kd_terms: list[str]) -> MethodAnalysis:
    """A row's analysis from its stored cells (seed -> cell result), each with `ap_per_epoch`."""
    curve = np.mean([row["ap_per_epoch"] for row in results.values()], axis=0).tolist()
    logged = {seed: row["loss_per_epoch"] for seed, row in results.items() if row.get("loss_per_epoch")}
    shares = [kd_share(losses, kd_terms) for losses in logged.values()] if kd_terms else []
    return MethodAnalysis(
        method=method,
        seeds=sorted(results),
        ap_curve=curve,
        final_ap=curve[-1],
        last_quarter_gain=last_quarter_gain(curve),
        kd_terms=kd_terms,
        share_seeds=sorted(logged) if shares else [],
        kd_share=np.mean(shares, axis=0).tolist() if shares else None,
    )


def usable(results: dict[int, dict | None], label: str) -> tuple[dict[int, dict], str | None]:
    """The stored cells (seed -> result) that hold a learning curve, and a line on those left out (`label` names
    the row): a row without any is skipped."""
    stored = {seed: row for seed, row in results.items() if row is not None}
    curves = {seed: row for seed, row in stored.items() if row.get("ap_per_epoch")}
    if not stored:
        return curves, f"{label}: no stored cells (seeds looked for: {', '.join(map(str, results))}), skipped"
    if not curves:
        return curves, f"{label}: its stored cells predate per-epoch AP logging (no learning curve), skipped"
    if len(curves) < len(stored):
        older = ", ".join(str(seed) for seed in stored if seed not in curves)
        return curves, f"{label}: seed {older} stored without a learning curve, left out of the mean"
    return curves, None


def analyse_pair(preset: str, pair: str, methods: list[str], seeds: int) -> tuple[list[MethodAnalysis], list[str]]:
    """The teacher's and each method's analysis (those with stored learning curves), and a line per row skipped or
    seed left out."""
    rows, notes = [], []
    teacher, note = usable({0: cached_result(Cell(preset, pair, "teacher"))}, f"{pair} / teacher")
    notes += [note] if note else []
    if teacher:
        rows.append(analyse("teacher", teacher, []))
    for method in methods:
        results = {seed: cached_result(Cell(preset, pair, "student", method, seed)) for seed in range(seeds)}
        found, note = usable(results, f"{pair} / {method}")
        notes += [note] if note else []
        if found:
            recipe = row_recipe(method, pair, preset)
            rows.append(analyse(method, found, [f"loss_{name}" for name in recipe.losses] if recipe else []))
    return rows, notes


def share_text(row: MethodAnalysis, index: int) -> str:
    if row.kd_share is None:
        return "-"
    return f"{row.kd_share[index]:.1f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", choices=sorted(PRESETS), default="cpu")
    parser.add_argument("--pairs", default="one-stage", help="comma list of: one-stage, two-stage, one-stage-gfl")
    parser.add_argument("--methods", default=",".join(DEFAULT_ROWS), help="comma list of: " + ", ".join(KNOWN_ROWS))
    parser.add_argument("--seeds", type=int, default=3, help="seeds 0..N-1 looked for; the mean is over those found")
    parser.add_argument("--tag", default="", help="results go to kd_analysis_<preset>_<tag>.*")
    args = parser.parse_args()
    preset = PRESETS[args.preset]
    pairs, methods = parse_rows(parser, args.preset, args.pairs, args.methods)
    analyses = {pair: analyse_pair(args.preset, pair, methods, args.seeds) for pair in pairs}
    if not any(rows for rows, _ in analyses.values()):
        parser.error(f"no stored cells of the {args.preset} preset for these pairs and methods")

    points = epoch_points(preset.student_epochs)  # the students' epochs: every cell of a preset trains them all
    lines = [
        f"# KD analysis ({args.preset} preset)",
        "",
        preset_summary(args.preset),
        "",
        "Per method, from the stored cells: validation COCO AP per epoch (mean over the seeds found; 'final val AP' "
        "is its last epoch, 'last-quarter gain' the rise of its least-squares trend over the last quarter of epochs); "
        "KD share = the weighted KD loss terms' sum over the total training loss, per epoch, in percent (mean over "
        "the seeds whose cells logged their losses; '-' for no KD, the teacher and cells without logged losses).",
    ]
    payload: dict = {"preset": args.preset, "seeds": args.seeds, "methods": methods, "pairs": {}}
    colors = {name: f"C{i}" for i, name in enumerate(methods)}
    figure, axes = plt.subplots(2, len(pairs), figsize=(6 * len(pairs), 8), squeeze=False)
    for column, (pair, (rows, notes)) in enumerate(analyses.items()):
        payload["pairs"][pair] = {"rows": [asdict(row) for row in rows], "notes": notes}
        lines += [
            "",
            f"## {pair}: {' -> '.join(preset.pairs[pair])}",
            "",
            "| method | seeds | epochs | final val AP | last-quarter gain | "
            + " | ".join(f"KD share % epoch {i + 1}" for i in points)
            + " |",
            "|---|---|---|---|---|" + "---|" * len(points),
        ]
        curves, shares = axes[0][column], axes[1][column]
        for row in rows:
            lines.append(
                f"| {row.method} | {len(row.seeds)} | {len(row.ap_curve)} | {row.final_ap:.2f} | "
                f"{row.last_quarter_gain:+.2f} | " + " | ".join(share_text(row, i) for i in points) + " |"
            )
            epochs = range(1, len(row.ap_curve) + 1)
            style = {"color": "black", "linestyle": "--"} if row.method == "teacher" else {"color": colors[row.method]}
            curves.plot(epochs, row.ap_curve, marker="o", markersize=3, label=row.method, **style)
            if row.kd_share is not None:
                shares.plot(epochs, row.kd_share, marker="o", markersize=3, label=row.method, **style)
        if notes:
            lines += ["", *(f"- {line}" for line in notes)]
        curves.set(title=f"{pair} ({args.preset})", xlabel="epoch", ylabel="val COCO AP (%), mean over seeds")
        shares.set(title=f"{pair}: KD share of the total loss", xlabel="epoch", ylabel="KD loss / total loss (%)")
        for axis in (curves, shares):
            axis.xaxis.set_major_locator(MaxNLocator(integer=True))
            if axis.lines:
                axis.legend(fontsize=8)
    stem = f"kd_analysis_{args.preset}" + (f"_{args.tag}" if args.tag else "")
    write_figure_results(stem, payload, lines, figure, "learning curves and KD share")


if __name__ == "__main__":
    main()
