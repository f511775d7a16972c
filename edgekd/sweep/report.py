"""What a sweep leaves behind: sweep.json (every candidate, machine-readable), sweep.md (the same for people, with
the recommended student and the commands that reproduce it) and front.png (accuracy vs latency, Pareto front
marked, the budget drawn). All written atomically."""

from __future__ import annotations

import json
import shlex
from pathlib import Path

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from rich.table import Table

from edgekd.atomic import atomic_output, atomic_write_text
from edgekd.evaluate.kitti import DIFFICULTIES
from edgekd.sweep.budget import Budget
from edgekd.sweep.stages import CAPACITY_PROXY, CAPACITY_REASON, Row, SweepResult

SWEEP_FORMAT = "edgekd-sweep-v1"


def latency_budget(result: SweepResult) -> Budget:
    return next(budget for budget in result.config.budgets if budget.kind == "latency")


def difficulty_ap(row: Row) -> dict[str, float] | None:
    """KITTI AP|R40 per difficulty, mean over classes, of a trained row (None: not trained or not KITTI)."""
    if row.trained is None or row.trained.result is None or not row.trained.result.kitti:
        return None
    per_class = row.trained.result.kitti.values()
    return {name: sum(getattr(ap.r40, name) for ap in per_class) / len(per_class) for name in DIFFICULTIES}


def reproduce_commands(result: SweepResult, row: Row) -> list[str]:
    """The `edgekd` commands that distil, export and time the row's student outside the sweep."""
    config = result.config
    model = row.candidate.model
    distill = ["edgekd", "distill", "--teacher", str(config.teacher), "--student", model]
    distill += ["--recipe", str(config.recipe), "--data", str(config.data), "-o", f"runs/{model}"]
    for option, value in (("--epochs", config.epochs), ("--batch", config.train_batch)):
        if value is not None:
            distill += [option, str(value)]
    if config.seed:
        distill += ["--seed", str(config.seed)]
    if (config.train_split, config.val_split) != ("train", "val"):
        distill += ["--split", config.train_split, "--val-split", config.val_split]
    export = ["edgekd", "export", f"runs/{model}/best.pt", "--data", str(config.data), "-o", f"export/{model}"]
    export += ["--batch", str(config.batch)] + (["--split", config.val_split] if config.val_split != "val" else [])
    bench = ["edgekd", "bench", f"export/{model}/model.onnx", "--backend", row.record.backend]
    bench += ["--batch", str(config.batch)]
    return [" ".join(shlex.quote(part) for part in command) for command in (distill, export, bench)]


def _row_dict(row: Row, result: SweepResult) -> dict:
    record = row.record
    spec = row.candidate.spec
    data = {
        "candidate": row.candidate.key,
        "model": row.candidate.model,
        "family": spec.family,
        "backbone": spec.backbone,
        "width": spec.width,
        "input_size": list(row.candidate.input_size),
        "params": row.params,
        "gflops": row.gflops,
        "backend": record.backend if record else None,
        "device": record.device if record else None,
        "latency": record.phases if record and record.skipped is None else None,
        "energy": record.energy.to_dict() if record and record.energy else None,
        "skipped": record.skipped if record else None,
        "budget_values": row.verdict.values if row.verdict else {},
        "met_budget": row.met,
        "over_budget": list(row.verdict.failed) if row.verdict else [],
        "distillable": row.not_distillable is None,
        "not_distilled_because": row.not_distillable,
        "selected": row.selected,
        "trained": row.trained.to_dict() if row.trained else None,
        "score": row.trained.score if row.trained else None,
        "kitti_ap_r40_by_difficulty": difficulty_ap(row),
        "pareto": row.pareto,
        "stage_seconds": row.seconds,
    }
    if result.recommended is row:
        data["recommended"] = True
    return data


def sweep_dict(result: SweepResult) -> dict:
    """The sweep.json layout."""
    config = result.config
    recommended = result.recommended
    return {
        "format": SWEEP_FORMAT,
        "teacher": str(config.teacher),
        "teacher_model": result.teacher_model,
        "teacher_input_size": list(result.teacher_size),
        "data": str(config.data),
        "recipe": str(config.recipe),
        "budgets": [budget.to_dict() for budget in config.budgets],
        "batch": config.batch,
        "latency_source": result.latency_source,
        "capacity_proxy": CAPACITY_PROXY,
        "capacity_reason": CAPACITY_REASON,
        "top": config.top,
        "score": "mean KITTI Moderate AP|R40 of the exported ONNX (COCO AP for non-KITTI data)",
        "stage_seconds": result.seconds,
        "stage_seconds_measured": stage_totals(result),
        "candidates": [_row_dict(row, result) for row in result.rows],
        "recommended": recommended.candidate.key if recommended else None,
        "commands": reproduce_commands(result, recommended) if recommended else [],
    }


def _fmt(value: float | None, digits: int = 2) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def _status(row: Row, result: SweepResult) -> str:
    if result.recommended is row:
        return "**recommended**"
    if not row.met:
        return "over budget: " + "; ".join(row.verdict.failed) if row.verdict else "not timed"
    if row.trained is not None and row.trained.parity_error is not None:
        return "failed the export parity gate"
    if row.trained is not None:
        return "distilled" + (" (Pareto front)" if row.pareto else "")
    if row.not_distillable is not None:
        return "within budget, not distilled: " + row.not_distillable
    return f"within budget, not in the top {result.config.top}"


def candidate_table(result: SweepResult) -> Table:
    """The console table: one row per candidate."""
    budget = latency_budget(result)
    table = Table(
        title=f"edgekd sweep: {len(result.rows)} candidates, budget {', '.join(b.text for b in result.config.budgets)}"
    )
    for name in ("candidate", "params (M)", "GFLOPs", f"{budget.label} (ms)", "met", "score", "status"):
        table.add_column(name)
    for row in result.rows:
        latency = budget.value(row.record) if row.record and row.record.skipped is None else None
        score = row.trained.score if row.trained else None
        status = _status(row, result).replace("**", "")
        table.add_row(
            row.candidate.key, f"{row.params / 1e6:.2f}", f"{row.gflops:.2f}", _fmt(latency, 3),
            "yes" if row.met else "no", _fmt(score), status,
        )  # fmt: skip
    return table


def stage_totals(result: SweepResult) -> dict[str, dict[str, float]]:
    """Per stage, the candidates whose work was timed when it was done (this run or an earlier one) and the seconds
    it took in all: what the stage costs, whatever the caches saved this run."""
    totals: dict[str, dict[str, float]] = {}
    for row in result.rows:
        for stage, seconds in row.seconds.items():
            total = totals.setdefault(stage, {"candidates": 0, "seconds": 0.0})
            total["candidates"] += 1
            total["seconds"] += seconds
    return totals


def _stage_time_line(result: SweepResult) -> str:
    totals = stage_totals(result)
    parts = [
        f"{label} {total['seconds'] / 60:.1f} min for {total['candidates']:.0f} candidate(s) ({what})"
        for stage, label, what in (
            ("stage1", "stage 1", "export and timing"),
            ("stage2", "stage 2", "distil, export with parity, evaluate"),
        )
        if (total := totals.get(stage))
    ]
    measured = "; ".join(parts) if parts else "nothing measured here"
    return (
        f"- time: {measured}, as measured when each candidate ran; this run: stage 1 "
        f"{result.seconds.get('stage1', 0.0):.1f} s, stage 2 {result.seconds.get('stage2', 0.0):.1f} s (cached results "
        "take no time)"
    )


def sweep_markdown(result: SweepResult) -> str:
    """sweep.md: settings, every candidate, the recommendation and its commands."""
    config = result.config
    budget = latency_budget(result)
    lines = [
        "# edgekd sweep",
        "",
        f"- teacher: `{config.teacher}` ({result.teacher_model}, input "
        f"{result.teacher_size[1]}x{result.teacher_size[0]}); data: `{config.data}`; recipe: `{config.recipe}`",
        f"- budget: {', '.join(f'`{b.text}`' for b in config.budgets)} at batch {config.batch}",
        f"- latency: {result.latency_source}",
        f"- stage 2: the top {config.top} candidates inside the budget by {CAPACITY_PROXY}: {CAPACITY_REASON}",
        "- only candidates at the teacher's input size are distilled (teacher and student features align cell for "
        "cell); other sizes are timed and listed",
        "- score: mean KITTI Moderate AP|R40 over classes of the exported ONNX on the validation split "
        "(COCO AP for non-KITTI data)",
        _stage_time_line(result),
        "",
        "## Candidates",
        "",
        f"| candidate | params (M) | GFLOPs | {budget.phase} p50 (ms) | {budget.phase} p99 (ms) | energy (mJ) | met "
        "| COCO AP | KITTI easy | KITTI moderate | KITTI hard | status |",
        "|---|---:|---:|---:|---:|---:|:---:|---:|---:|---:|---:|---|",
    ]
    for row in result.rows:
        stats = row.record.phases.get(budget.phase) if row.record and row.record.skipped is None else None
        mj = row.record.energy.mj_per_frame if row.record and row.record.energy else None
        coco = row.trained.result.coco.AP if row.trained and row.trained.result else None
        kitti = difficulty_ap(row) or {}
        cells = [
            f"`{row.candidate.key}`", f"{row.params / 1e6:.2f}", f"{row.gflops:.2f}",
            _fmt(stats["p50_ms"] if stats else None, 3), _fmt(stats["p99_ms"] if stats else None, 3), _fmt(mj),
            "yes" if row.met else "no", _fmt(coco), *(_fmt(kitti.get(d)) for d in DIFFICULTIES),
            _status(row, result).replace("|", "/"),
        ]  # fmt: skip
        lines.append("| " + " | ".join(cells) + " |")
    lines += ["", "![accuracy vs latency](front.png)", "", "## Recommended student", ""]
    if result.recommended is None:
        lines.append(
            "None: no distilled candidate met the budget and passed the export parity gate. Loosen the budget, add "
            "smaller candidates (--candidates, --widths 64, a smaller teacher input size) or raise --top."
        )
    else:
        row = result.recommended
        lines += [
            f"`{row.candidate.key}`: score {row.trained.score:.2f}, {budget.label} {budget.value(row.record):.3f} ms, "
            f"ONNX `{row.trained.onnx}`.",
            "",
            "Reproduce it:",
            "",
            "```",
            *reproduce_commands(result, row),
            "```",
        ]
    return "\n".join(lines) + "\n"


def render_front(result: SweepResult, path: Path) -> Figure:
    """Accuracy vs the latency budget's measure for the distilled candidates, the Pareto front joined, the budget
    drawn as a vertical line; saved as PNG at `path`."""
    budget = latency_budget(result)
    figure = Figure(figsize=(8.0, 5.0), dpi=100, layout="constrained")
    FigureCanvasAgg(figure)
    axes = figure.subplots()
    points = [r for r in result.rows if r.trained is not None and r.trained.score is not None]
    for index, row in enumerate(sorted(points, key=lambda r: budget.value(r.record))):
        x, y = budget.value(row.record), row.trained.score
        marker = "*" if result.recommended is row else "o"
        axes.scatter([x], [y], marker=marker, s=160 if marker == "*" else 50, color="C1" if row.pareto else "C0")
        # labels alternate above and below their points, so neighbours on the latency axis do not overprint
        offset = (5, 6) if index % 2 == 0 else (5, -12)
        axes.annotate(row.candidate.key, (x, y), textcoords="offset points", xytext=offset, fontsize=8)
    front = sorted((budget.value(r.record), r.trained.score) for r in points if r.pareto)
    if front:
        axes.plot(*zip(*front), color="C1", linestyle="--", label="Pareto front")
    axes.axvline(budget.limit, color="C3", linestyle=":", label=f"budget {budget.text}")
    axes.set_xlabel(f"{budget.label} latency (ms), batch {result.config.batch}")
    axes.set_ylabel("KITTI Moderate AP|R40 (%)" if any(difficulty_ap(r) for r in points) else "COCO AP (%)")
    axes.set_title(f"edgekd sweep: {len(points)} distilled of {len(result.rows)} candidates")
    axes.set_ylim(0, max([1.0] + [1.15 * row.trained.score for row in points]))
    axes.set_xlim(0, 1.15 * max([budget.limit] + [budget.value(row.record) for row in points]))
    axes.grid(True, alpha=0.3)
    axes.legend(fontsize=8)
    with atomic_output(path) as temporary:
        figure.savefig(temporary, format="png")
    return figure


def write_report(result: SweepResult) -> None:
    """sweep.json, sweep.md and front.png in the sweep folder."""
    out = result.config.out
    atomic_write_text(out / "sweep.json", json.dumps(sweep_dict(result), indent=2, allow_nan=False) + "\n")
    atomic_write_text(out / "sweep.md", sweep_markdown(result))
    render_front(result, out / "front.png")
