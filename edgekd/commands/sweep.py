"""`edgekd sweep`: the most accurate student that meets a latency (and energy) budget, with the evidence."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from edgekd.commands.train import DataOption, QuietOption, SeedOption
from edgekd.errors import EdgeKDError

SWEEP_BACKENDS = ("ort-cpu", "ort-cuda", "ort-trt", "trt")
DEFAULT_RECIPE = Path("recipes/fgfi.yaml")


def default_recipe() -> Path:
    """recipes/fgfi.yaml in the working folder, else the one of the source tree edgekd runs from."""
    if DEFAULT_RECIPE.is_file():
        return DEFAULT_RECIPE
    beside = Path(__file__).resolve().parents[2] / DEFAULT_RECIPE
    if beside.is_file():
        return beside
    raise EdgeKDError(f"--recipe: the default {DEFAULT_RECIPE} is not here; give --recipe FILE")


def _check_positive(option: str, value: int | None, low: int = 1) -> None:
    if value is not None and value < low:
        raise EdgeKDError(f"{option} {value}: must be at least {low}")


def sweep_command(
    teacher: Annotated[Path, typer.Option("--teacher", help="Teacher checkpoint (.pt).")],
    data: DataOption,
    out: Annotated[Path, typer.Option("-o", "--out", help="Sweep folder (results, caches, runs).")],
    budget: Annotated[
        list[str],
        typer.Option(
            "--budget",
            help="A limit every chosen student meets, repeatable: [PHASE.]STAT<=VALUE UNIT, e.g. 'p99<=10ms' "
            "(PHASE end_to_end, the default: frame in, boxes out; or compute: the network alone; STAT min, mean, "
            "p50, p90, p99, max; UNIT ms, us, s), or 'mJ<=50' (energy per frame, where the bench measured it).",
        ),
    ],
    backend: Annotated[
        str | None,
        typer.Option(
            "--backend",
            help="Where latency is timed: ort-cpu (default), ort-cuda, ort-trt; trt only with --latency-from "
            "(engines are built and timed on the device). With --latency-from: the records' backend to use.",
        ),
    ] = None,
    batch: Annotated[int, typer.Option("--batch", help="Batch size the budget applies to.")] = 1,
    candidates: Annotated[
        Path | None,
        typer.Option(
            "--candidates",
            help="YAML list of candidates: zoo names, or {model: NAME, img_size: WxH} (instead of the grid options).",
        ),
    ] = None,
    families: Annotated[
        str | None, typer.Option("--families", help="Grid: families, e.g. retinanet,fcos (default: all).")
    ] = None,
    backbones: Annotated[
        str | None,
        typer.Option("--backbones", help="Grid: backbones (default: the student ones, all but resnet50)."),
    ] = None,
    widths: Annotated[
        str | None, typer.Option("--widths", help="Grid: neck/head widths, 64 (_lite) and/or 256 (default: both).")
    ] = None,
    img_sizes: Annotated[
        str | None,
        typer.Option(
            "--img-sizes",
            help="Grid: input sizes WxH,WxH (default: the teacher's). Only the teacher's size is distilled (teacher "
            "and student features align cell for cell); other sizes are timed and reported, to see what they would "
            "buy: sweep again with a teacher trained at that size to distil them.",
        ),
    ] = None,
    recipe: Annotated[
        Path | None,
        typer.Option("--recipe", help=f"KD recipe for stage 2 (its schedule, losses); default {DEFAULT_RECIPE}."),
    ] = None,
    top: Annotated[
        int,
        typer.Option(
            "--top", help="Stage 2 distils this many candidates inside the budget, most GFLOPs first (the proxy)."
        ),
    ] = 3,
    epochs: Annotated[int | None, typer.Option("--epochs", help="Override the recipe's epochs.")] = None,
    train_batch: Annotated[
        int | None, typer.Option("--train-batch", help="Override the recipe's training batch.")
    ] = None,
    device: Annotated[str, typer.Option("--device", help="Training device: cpu, cuda, cuda:N or auto.")] = "auto",
    warmup: Annotated[int, typer.Option("--warmup", help="Stage 1: untimed calls before timing.")] = 10,
    iters: Annotated[int, typer.Option("--iters", help="Stage 1: timed calls per phase.")] = 100,
    threads: Annotated[int | None, typer.Option("--threads", help="ONNX Runtime threads (timing, parity).")] = None,
    train_split: Annotated[str, typer.Option("--split", help="Training split of --data.")] = "train",
    val_split: Annotated[str, typer.Option("--val-split", help="Split for parity and AP.")] = "val",
    latency_from: Annotated[
        Path | None,
        typer.Option(
            "--latency-from",
            help="Stage 1 from a bench JSON made on the target (`edgekd bench --json`, e.g. the command that "
            "--export-only writes); nothing is timed here.",
        ),
    ] = None,
    export_only: Annotated[
        bool,
        typer.Option(
            "--export-only",
            help="Write the candidates' untrained ONNX files and the one `edgekd bench` command to run on the "
            "target (bench_command.txt), then stop.",
        ),
    ] = False,
    seed: SeedOption = 0,
    quiet: QuietOption = False,
) -> None:
    """Pick the student by the deadline: time every candidate (no training), drop those over the budget, distil the
    best few inside it, export them through the parity gate and recommend the most accurate one.

    Writes SWEEP_DIR/sweep.json, sweep.md (every candidate: latency, params, GFLOPs, AP per KITTI difficulty) and
    front.png (accuracy vs latency, Pareto front). Every stage is cached: rerun the same command to continue an
    interrupted sweep. See docs/sweep.md.

    Input size: distillation runs at the teacher's input size (features align cell for cell), so only candidates
    at the teacher's size are distilled; other --img-sizes are timed and reported (latency, params, GFLOPs), and
    distilling them needs a teacher trained at that size.

    Stage 2 ranks the candidates inside the budget by GFLOPs (the capacity proxy at one input size).
    """
    from edgekd.atomic import output_dir
    from edgekd.distill.recipe import load_recipe
    from edgekd.models.checkpoint import load_detector
    from edgekd.options import resolve_device
    from edgekd.sweep.budget import parse_budgets
    from edgekd.sweep.candidates import GridOptions, grid_candidates, load_candidates
    from edgekd.sweep.report import candidate_table, write_report
    from edgekd.sweep.stages import SweepConfig, run_export_only, run_sweep

    budgets = parse_budgets(budget)
    grid = GridOptions(families, backbones, widths, img_sizes)
    if candidates is not None and grid.given:
        raise EdgeKDError("give either --candidates FILE or the grid options (--families ...), not both")
    if latency_from is not None and export_only:
        raise EdgeKDError("--export-only writes what to time on the target; --latency-from reads it back: not both")
    if backend is not None and backend not in SWEEP_BACKENDS:
        raise EdgeKDError(f"--backend {backend}: expected one of {', '.join(SWEEP_BACKENDS)}")
    if backend == "trt" and latency_from is None:
        raise EdgeKDError(
            "--backend trt: engines are built and timed on the device; time them there (edgekd export --trt, "
            "edgekd bench --json) and pass --latency-from, or time the ONNX files here with ort-trt"
        )
    for option, value, low in (("--batch", batch, 1), ("--top", top, 1), ("--epochs", epochs, 1)):
        _check_positive(option, value, low)
    for option, value, low in (("--train-batch", train_batch, 1), ("--iters", iters, 2), ("--warmup", warmup, 0)):
        _check_positive(option, value, low)
    _check_positive("--threads", threads)
    if latency_from is not None and not latency_from.is_file():
        raise EdgeKDError(f"--latency-from {latency_from}: no such file")
    recipe = recipe or default_recipe()
    load_recipe(recipe)
    teacher_detector, _ = load_detector(teacher)
    teacher_size = tuple(teacher_detector.config.input_size)
    if candidates is not None:
        chosen = load_candidates(candidates, teacher_size)
    else:
        chosen = grid_candidates(grid, teacher_size)
    config = SweepConfig(
        teacher=teacher,
        data=data,
        out=out,
        budgets=budgets,
        candidates=chosen,
        recipe=recipe,
        backend=backend or "ort-cpu",
        backend_given=backend is not None,
        batch=batch,
        top=top,
        epochs=epochs,
        train_batch=train_batch,
        device=resolve_device(device),
        seed=seed,
        warmup=warmup,
        iters=iters,
        threads=threads,
        train_split=train_split,
        val_split=val_split,
        latency_from=latency_from,
        export_only=export_only,
    )
    console = Console(quiet=quiet)
    if not export_only:
        from edgekd.data.loader import load_dataset

        classes = tuple(teacher_detector.config.classes)
        for split in (train_split, val_split):
            load_dataset(data, split, classes=classes)
    output_dir(out)
    if export_only:
        paths, command = run_export_only(config, console)
        Console(soft_wrap=True).print(
            f"{len(paths)} candidate ONNX files under {out / 'candidates'}; on the target run:\n  {command}\n"
            f"then: edgekd sweep ... --latency-from {out / 'candidates.bench.json'}",
            markup=False,
            highlight=False,
        )
        return
    result = run_sweep(config, console)
    write_report(result)
    from edgekd.console import print_table

    print_table(console, candidate_table(result))
    recommended = result.recommended.candidate.key if result.recommended else "none within the budget"
    Console(soft_wrap=True).print(
        f"recommended: {recommended} (report: {out / 'sweep.md'}, front: {out / 'front.png'})",
        markup=False,
        highlight=False,
    )


def register(app: typer.Typer) -> None:
    short = "Pick the most accurate student that meets a latency (and energy) budget."
    app.command("sweep", short_help=short)(sweep_command)
