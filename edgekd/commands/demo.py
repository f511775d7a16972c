"""`edgekd demo`: teacher, student and distilled student on the built-in synthetic data, in one table."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from edgekd.console import print_table
from edgekd.errors import EdgeKDError
from edgekd.options import resolve_device


def demo_command(
    workdir: Annotated[Path, typer.Option("--workdir", help="Where data, runs and demo.json go.")] = Path("runs/demo"),
    preset: Annotated[str, typer.Option("--preset", help="cpu, gpu or auto (gpu when CUDA is visible).")] = "auto",
    recipe: Annotated[Path | None, typer.Option("--recipe", help="KD recipe (default: built-in FGFI).")] = None,
    device: Annotated[str, typer.Option("--device", help="cpu, cuda or auto.")] = "auto",
) -> None:
    """Render data, train a teacher, train the student without and with KD, compare all three."""
    from edgekd.demo import PRESETS, demo_table, run_demo

    device = resolve_device(device)
    if preset == "auto":
        preset = "gpu" if device.startswith("cuda") else "cpu"
    if preset not in PRESETS:
        raise EdgeKDError(f"--preset {preset}: choose one of {', '.join(PRESETS)} or auto")
    console = Console()
    rows = run_demo(workdir, PRESETS[preset], recipe, device, console)
    print_table(console, demo_table(rows), name_columns=(0, 1))
    console.print(f"results written to {workdir / 'demo.json'}")


def register(app: typer.Typer) -> None:
    app.command("demo", help="Run the whole chain small on built-in synthetic data and print one table.")(demo_command)
