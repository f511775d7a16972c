"""`edgekd bench`: latency (and optionally accuracy) of checkpoints and exported models, per backend and batch."""

from __future__ import annotations

import shlex
import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, TextColumn, TimeElapsedColumn

from edgekd.console import print_table
from edgekd.progress import make_progress, progress_console

BACKEND_HELP = (
    "auto (.pt: torch, .onnx: ort-cuda if available else ort-cpu, .engine: trt), "
    "torch, ort-cpu, ort-cuda, ort-trt or trt."
)


def bench_command(
    artifacts: Annotated[list[Path], typer.Argument(help="Checkpoints (.pt) and exported models (.onnx, .engine).")],
    backend: Annotated[str, typer.Option("--backend", help=BACKEND_HELP)] = "auto",
    batch: Annotated[
        str | None, typer.Option("--batch", help="Batch sizes, e.g. 1,4,8 (default: the artifact's own, or 1).")
    ] = None,
    warmup: Annotated[int, typer.Option("--warmup", help="Untimed calls after the first call.")] = 10,
    iters: Annotated[int | None, typer.Option("--iters", help="Timed calls per phase instead of --seconds.")] = None,
    seconds: Annotated[
        float | None,
        typer.Option("--seconds", help="Time each phase for this long, at least 10 calls (default 3 without --iters)."),
    ] = None,
    threads: Annotated[
        int | None, typer.Option("--threads", help="CPU threads (ONNX Runtime intra-op, torch).")
    ] = None,
    device: Annotated[str, typer.Option("--device", help="torch backend: cpu, cuda, cuda:N or auto.")] = "auto",
    compile_model: Annotated[bool, typer.Option("--compile", help="torch backend: torch.compile the model.")] = False,
    end_to_end: Annotated[
        bool, typer.Option("--e2e/--no-e2e", help="Also time frame -> preprocess -> infer -> NMS -> boxes.")
    ] = True,
    data: Annotated[
        Path | None, typer.Option("--data", help="Dataset whose images feed end-to-end runs (default: noise).")
    ] = None,
    split: Annotated[str, typer.Option("--split", help="Split of --data.")] = "val",
    evaluate: Annotated[
        bool, typer.Option("--eval", help="Also measure accuracy on --data with the benchmarked backend.")
    ] = False,
    json_out: Annotated[Path | None, typer.Option("--json", help="Write the records here (X.bench.json).")] = None,
    quiet: Annotated[bool, typer.Option("--quiet", help="No plan and no progress (stderr).")] = False,
) -> None:
    """Latency per artifact, backend and batch: min/mean/p50/p90/p99/std, throughput, compute-only vs end-to-end,
    device copies on GPU, peak memory, size, params and GFLOPs; warns when a run is unstable (CV > 5%)."""
    from edgekd.bench.latency import BenchOptions, parse_batches, plan_bench, run_bench
    from edgekd.bench.tables import bench_table, detail_table
    from edgekd.evaluate.report import check_json_target, write_results_json
    from edgekd.runtime import RunnerOptions

    batches = parse_batches(batch) if batch is not None else None
    options = BenchOptions(
        backend=backend,
        batches=batches,
        warmup=warmup,
        iters=iters,
        seconds=seconds,
        end_to_end=end_to_end,
        data=data,
        split=split,
        evaluate=evaluate,
        backend_options=RunnerOptions(threads=threads, device=device, compile=compile_model),
    )
    options.check()
    if json_out is not None:
        check_json_target(json_out)
    plan = plan_bench(list(artifacts), options)
    status = progress_console(quiet)
    for line in plan.lines():
        status.print(escape(line), highlight=False, soft_wrap=True)
    command = "edgekd " + " ".join(shlex.quote(arg) for arg in sys.argv[1:])
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    with make_progress(status, columns, interval=0) as progress:
        task = progress.add_task("bench", total=plan.measurements)
        done = [0]

        def step(description: str) -> None:
            progress.update(task, description=escape(description), completed=done[0])
            done[0] += 1

        run = run_bench(list(artifacts), options, progress=step, command=command, plan=plan)
        progress.update(task, description="bench done", completed=plan.measurements)
    console = Console()
    print_table(console, bench_table(run), name_columns=(0, 1))
    print_table(console, detail_table(run), name_columns=(0, 1))
    for line in run.warnings():
        console.print(f"[yellow]warning:[/] {escape(line)}", highlight=False, soft_wrap=True)
    if json_out is not None:
        write_results_json(json_out, run.to_dict())
        console.print(f"bench records written to {json_out}")


def register(app: typer.Typer) -> None:
    app.command("bench", help="Latency (and with --eval, accuracy) of .pt, .onnx and .engine artifacts.")(bench_command)
