"""The KD results table: every method against the no-KD student and the teacher, over seeds, on the synthetic
driving benchmark. Each cell (a teacher, or a student of one method and seed) is cached by the hash of its full
configuration (see kd_cells.py), so an interrupted run resumes where it stopped.

    python benchmarks/kd_table.py --preset cpu --seeds 3 --pairs one-stage
    python benchmarks/kd_table.py --preset gpu --seeds 3 --pairs one-stage,two-stage --jobs 4
"""

from __future__ import annotations

import argparse
import math
import multiprocessing
import os
import sys
import threading
import time
from concurrent.futures import FIRST_COMPLETED, Executor, Future, ProcessPoolExecutor, wait
from dataclasses import asdict
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402
from rich.console import Console  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import write_figure_results  # noqa: E402
from kd_cells import (  # noqa: E402
    CHOICE_SEEDS,
    DEFAULT_ROWS,
    KNOWN_ROWS,
    PRESETS,
    RECIPES,
    SINGLE_ROWS,
    Cell,
    ChoiceNotReady,
    ValChoice,
    cached_result,
    ensure_data,
    parse_rows,
    preset_summary,
    row_choice,
    run_cell,
    val_ranking,
)

from edgekd.distill.recipe import load_recipe  # noqa: E402
from edgekd.pipeline import finished_run  # noqa: E402


def mean_std(values: list[float]) -> tuple[float, float]:
    array = np.asarray(values, dtype=float)
    return float(array.mean()), float(array.std(ddof=1)) if len(array) > 1 else 0.0


def spread(values: list[float]) -> float:
    """Seed spread: max - min over the seeds (0 for one seed)."""
    return float(np.ptp(values)) if values else 0.0


def separated(runs: list[float], baseline: list[float]) -> bool:
    """A difference of means is told apart from seed noise only where it exceeds both rows' seed spreads (and
    both rows have at least two seeds)."""
    if len(runs) < 2 or len(baseline) < 2:
        return False
    return abs(float(np.mean(runs)) - float(np.mean(baseline))) > max(spread(runs), spread(baseline))


DIFFICULTIES = ("easy", "moderate", "hard")


class InlineExecutor(Executor):
    """Runs each submitted call at once, in this process (one job: the run's progress stays on this console)."""

    def submit(self, fn, /, *args, **kwargs) -> Future:
        future: Future = Future()
        try:
            future.set_result(fn(*args, **kwargs))
        except Exception as error:  # re-raised by future.result(), as a process pool would
            future.set_exception(error)
        return future


def can_start(cell: Cell, unfinished: set[Cell]) -> bool:
    """Whether a cell can be trained now: a KD student once its teacher is finished (not still to run or running
    here, and its checkpoint on this machine), a row chosen on validation once its single rows are stored; a
    teacher or a student without KD at once. An interrupted teacher run's best.pt is not a finished teacher."""
    if cell.role == "teacher":
        return True
    try:
        recipe = cell.recipe()
    except ChoiceNotReady:
        return False
    teacher = cell.teacher()
    return recipe is None or (teacher not in unfinished and finished_run(teacher.directory()))


PARENT_POLL_SECONDS = 2.0


def worker_start(threads: int) -> None:
    """Initialise a spawned cell process: its torch threads, and a watcher that ends it once the table process is
    gone. Ctrl-C reaches the whole process group, but a `kill` of the table process alone would leave its workers
    training and racing a rerun on the same cell directories. Checkpoints are written atomically, so ending
    mid-epoch loses only that epoch."""
    torch.set_num_threads(threads)
    parent = os.getppid()

    def exit_with_parent() -> None:
        while os.getppid() == parent:
            time.sleep(PARENT_POLL_SECONDS)
        os._exit(1)

    threading.Thread(target=exit_with_parent, daemon=True).start()


def run_cells(cells: list[Cell], jobs: int, console: Console, deadline: float = math.inf) -> list[dict | None]:
    """Train cells `jobs` at a time (spawned processes; several small runs fill one GPU better, and on a CPU each
    process gets its share of the cores as torch threads; one job runs in this process). A free slot takes the
    first cell in `cells` order that can start (`can_start`), so students without KD train beside their teacher
    and a row chosen on validation starts as soon as its single rows are stored. A cell that could not start
    before `deadline` (time.monotonic()) gets its stored result, or None. A teacher whose checkpoint is not on this
    machine trains again (pass only the teachers whose students are still to run)."""
    rows: list[dict | None] = [None] * len(cells)
    pending = list(range(len(cells)))
    running: dict = {}
    if jobs > 1:
        threads = max(1, (os.cpu_count() or 1) // jobs)
        spawn = multiprocessing.get_context("spawn")
        pool: Executor = ProcessPoolExecutor(jobs, spawn, initializer=worker_start, initargs=(threads,))
    else:
        pool = InlineExecutor()
    with pool:
        while pending or running:
            unfinished = {cells[index] for index in [*pending, *running.values()]}
            startable = [i for i in pending if time.monotonic() < deadline and can_start(cells[i], unfinished)]
            for index in startable[: jobs - len(running)]:
                pending.remove(index)
                cell = cells[index]
                console.print(f"[bold]{cell.pair} / {cell.label} / seed {cell.seed}[/] ({cell.directory().name})")
                progress = console if jobs <= 1 else None  # a spawned process prints nothing
                running[pool.submit(run_cell, cell, progress, cell.role == "teacher")] = index
            if not running:  # nothing can start any more: the rest keep what is stored
                for index in pending:
                    rows[index] = cached_result(cells[index])
                break
            done, _ = wait(running, return_when=FIRST_COMPLETED)
            for future in done:
                index = running.pop(future)
                rows[index], cell = future.result(), cells[index]
                console.print(f"done {cell.pair} / {cell.label} / seed {cell.seed}: AP {rows[index]['AP']:.2f}")
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", choices=sorted(PRESETS), default="cpu")
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--pairs", default="one-stage", help="comma list of: one-stage, two-stage, one-stage-gfl")
    parser.add_argument("--methods", default=",".join(DEFAULT_ROWS), help="comma list of: " + ", ".join(KNOWN_ROWS))
    parser.add_argument("--tag", default="", help="results go to kd_table_<preset>_<tag>.* (for ablation tables)")
    parser.add_argument(
        "--jobs", type=int, default=1, help="cells trained side by side (GPU; on a CPU each gets cores/jobs threads)"
    )
    parser.add_argument(
        "--available", action="store_true", help="train nothing: write the table from the cells already cached"
    )
    parser.add_argument(
        "--budget-minutes",
        type=float,
        default=math.inf,
        help="start no cell after this many minutes (cells run in --methods order, seeds inner); the table is "
        "written from the cells stored by then and a later run continues",
    )
    args = parser.parse_args()
    deadline = time.monotonic() + 60 * args.budget_minutes
    console = Console()
    pairs, methods = parse_rows(parser, args.preset, args.pairs, args.methods)
    teachers = [Cell(args.preset, pair, "teacher") for pair in pairs]
    students = [
        Cell(args.preset, pair, "student", method, seed) for pair in pairs for method in methods
        for seed in range(args.seeds)
    ]  # fmt: skip
    if args.available:
        teacher_rows, student_rows = [cached_result(c) for c in teachers], [cached_result(c) for c in students]
    else:
        ensure_data(args.preset, console)
        # Teachers first, and only those with KD students still to run (their checkpoint is needed here).
        missing = {
            c.pair for c in students if cached_result(c) is None and row_choice(str(c.method), c.pair, args.preset)
        }
        cells = [t for t in teachers if t.pair in missing] + students
        student_rows = run_cells(cells, args.jobs, console, deadline)[len(cells) - len(students) :]
        teacher_rows = [cached_result(t) for t in teachers]
        waiting = sorted({c.method for c in students if not c.ready()})
        if waiting:
            console.print(
                f"not trained yet: {', '.join(waiting)} (chosen on validation AP once {', '.join(SINGLE_ROWS)} have "
                f"{CHOICE_SEEDS} seeds each; run again)"
            )
    tables = {}
    for pair, teacher_row in zip(pairs, teacher_rows):
        rows: dict[str, list[dict]] = {}
        for cell, row in zip(students, student_rows):
            if cell.pair == pair and row is not None:
                rows.setdefault(str(cell.method), []).append(row)
        if teacher_row is not None and rows:
            tables[pair] = {"teacher": teacher_row, "rows": rows}
    if not tables:
        parser.error("no cached cells of this preset and these pairs yet: run without --available first")
    write_tables(args, tables)


def row_sources(methods: list[str], pair: str, preset_name: str) -> list[str]:
    """Where the recipes of the rows chosen rather than fixed come from: a combination file, or the validation
    ranking of the single rows."""
    lines = []
    for method in methods:
        choice = row_choice(method, pair, preset_name)
        if isinstance(choice, ValChoice):
            ranking = val_ranking(preset_name, pair) or []
            chosen = " + ".join(name for name, _ in ranking[: choice.top])
            order = ", ".join(f"{name} {ap:.2f}" for name, ap in ranking)
            lines += ["", f"{method}: {chosen}, chosen on validation AP (single rows, mean of {CHOICE_SEEDS} seeds' "
                      f"best epoch: {order})."]  # fmt: skip
        elif method.startswith("combined") and choice is not None:
            losses = " + ".join(load_recipe(choice).losses)
            lines += ["", f"{method}: {choice.relative_to(RECIPES.parent)} ({losses})."]
    return lines


def summarize_pair(table: dict) -> list[dict]:
    teacher_ap = table["teacher"]["AP"]
    baseline = table["rows"].get("no KD")
    base_ap = mean_std([r["AP"] for r in baseline])[0] if baseline else float("nan")
    base_time = mean_std([r["epoch_seconds"] for r in baseline])[0] if baseline else float("nan")
    base_runs = [r["AP"] for r in baseline] if baseline else []
    gap = teacher_ap - base_ap
    gap_is_real = gap > spread(base_runs)  # a gap inside the no-KD seed spread has no share to close
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
                "separated": method != "no KD" and separated([r["AP"] for r in runs], base_runs),
                "val_AP": mean_std([max(r["ap_per_epoch"]) for r in runs if r.get("ap_per_epoch")] or [float("nan")]),
                "kitti_r40": {
                    cls: {d: mean_std([r["kitti_r40"][cls][d] for r in runs]) for d in DIFFICULTIES}
                    for cls in ("Car", "Pedestrian", "Cyclist")
                    if all(cls in r.get("kitti_r40", {}) for r in runs)
                },
                "gap_closed": (ap - base_ap) / gap if gap_is_real else float("nan"),
                "time_vs_no_kd": mean_std([r["epoch_seconds"] for r in runs])[0] / base_time,
            }
        )
    return summary


def teacher_at_student_budget(teacher: dict, student_epochs: int) -> list[str]:
    """A line on the teacher's own validation AP after the students' number of epochs (from its learning curve):
    how much of the teacher-student gap is the longer schedule rather than the larger model."""
    curve = teacher.get("ap_per_epoch", [])
    if len(curve) <= student_epochs:
        return []
    return [
        "",
        f"The teacher itself, after {student_epochs} of its {len(curve)} epochs (the students' budget, at its own "
        f"schedule's still-high learning rate), had {curve[student_epochs - 1]:.2f} validation AP.",
    ]


def band(value: tuple[float, float], seeds: int, digits: int) -> str:
    """'mean +- std' over seeds; a single seed's value alone, since one run has no spread to show."""
    mean, std = value
    return f"{mean:.{digits}f}" if seeds == 1 else f"{mean:.{digits}f} +- {std:.{digits}f}"


def difficulty_table(teacher: dict, summary: list[dict]) -> list[str]:
    """KITTI AP|R40 per class and difficulty, where the cells hold it: the teacher's one run, then each row's
    mean +- std over seeds."""
    classes = [cls for cls in ("Car", "Pedestrian", "Cyclist") if all(cls in r["kitti_r40"] for r in summary)]
    if not classes:
        return []
    header = [f"{cls} {d[0].upper()}" for cls in classes for d in DIFFICULTIES]
    lines = ["", "KITTI AP|R40 per class, Easy / Moderate / Hard:", "", "| method | " + " | ".join(header) + " |"]
    lines.append("|---|" + "---|" * len(header))
    if all(cls in teacher.get("kitti_r40", {}) for cls in classes):
        values = [teacher["kitti_r40"][cls][d] for cls in classes for d in DIFFICULTIES]
        lines.append("| teacher | " + " | ".join(f"{v:.1f}" for v in values) + " |")
    for row in summary:
        values = [row["kitti_r40"][cls][d] for cls in classes for d in DIFFICULTIES]
        lines.append(f"| {row['method']} | " + " | ".join(band(v, row["seeds"], 1) for v in values) + " |")
    return lines


def write_tables(args: argparse.Namespace, tables: dict) -> None:
    preset = PRESETS[args.preset]
    lines = [f"# KD results table ({args.preset} preset, {args.seeds} seeds)", ""]
    lines.append(
        preset_summary(args.preset) + " Mean +- std over seeds; gap closed = gain / (teacher - no KD), n/a where the "
        "teacher does not lead the no-KD mean by more than its seed spread; time = "
        "training seconds per epoch relative to the no-KD student (teacher forward included; rough where cells ran "
        "side by side with --jobs)."
    )
    trained_on = sorted({t["teacher"].get("trained_on", "?") for t in tables.values()})
    lines.append(f"Trained on: {', '.join(trained_on)}.")
    if preset.n_test:
        lines.append(
            f"Every number is on the held-out test split ({preset.n_test} images); the best epoch of each run is "
            f"chosen on val ({preset.n_val} images), whose AP is the 'val AP' column. A gain marked * exceeds both "
            "rows' seed spread (max - min over seeds): only those are told apart from seed noise."
        )
    payload = {"preset": asdict(preset), "seeds": args.seeds, "pairs": {}}
    figure, axis = plt.subplots(figsize=(8, 4))
    for offset, (pair, table) in enumerate(tables.items()):
        summary = summarize_pair(table)
        payload["pairs"][pair] = {"teacher": table["teacher"], "summary": summary, "runs": table["rows"]}
        teacher = table["teacher"]
        lines += [
            "",
            f"## {pair}: {teacher['name']} (teacher, COCO AP {teacher['AP']:.2f}) -> {preset.pairs[pair][1]}",
            "",
            "| method | seeds | COCO AP | AP50 | KITTI Mod Car | Ped | Cyc | gain | gap closed | time/epoch vs no KD |"
            + (" val AP |" if preset.n_test else ""),
            "|---|---|---|---|---|---|---|---|---|---|" + ("---|" if preset.n_test else ""),
        ]
        for row in summary:
            kitti = row["kitti_moderate"]
            numbers = [row["AP"], row["AP50"], kitti["Car"], kitti["Pedestrian"], kitti["Cyclist"]]
            cells = [row["method"], str(row["seeds"]), *(band(v, row["seeds"], 2) for v in numbers)]
            closed = "n/a" if np.isnan(row["gap_closed"]) else f"{100 * row['gap_closed']:.0f}%"
            gain = f"{row['gain']:+.2f}" + (" *" if preset.n_test and row["separated"] else "")
            cells += [gain, closed, f"{row['time_vs_no_kd']:.2f}x"]
            if preset.n_test:
                cells.append(band(row["val_AP"], row["seeds"], 2))
            lines.append("| " + " | ".join(cells) + " |")
        lines += difficulty_table(teacher, summary)
        lines += teacher_at_student_budget(teacher, preset.student_epochs)
        lines += row_sources(list(table["rows"]), pair, args.preset)
        kd_rows = [r for r in summary if r["method"] != "no KD"]
        positions = np.arange(len(kd_rows)) + 0.35 * offset
        axis.bar(positions, [r["gain"] for r in kd_rows], 0.35, yerr=[r["AP"][1] for r in kd_rows], label=pair)
        axis.set_xticks(np.arange(len(kd_rows)), [r["method"] for r in kd_rows], rotation=30)
    axis.axhline(0, color="black", linewidth=0.8)
    axis.set(ylabel="COCO AP gain over no-KD student", title="KD gain per method (error bar: std over seeds)")
    axis.legend()
    stem = f"kd_table_{args.preset}" + (f"_{args.tag}" if args.tag else "")
    write_figure_results(stem, payload, lines, figure, "gain per method")


if __name__ == "__main__":
    main()
