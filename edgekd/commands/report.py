"""`edgekd report`: combine eval and bench JSONs into one Markdown page with an accuracy-vs-latency plot."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape


def report_command(
    inputs: Annotated[
        list[Path], typer.Argument(help="Run folders (searched for *.bench.json, *.eval.json) or JSON files.")
    ],
    out: Annotated[Path, typer.Option("-o", "--out", help="Output folder.")] = Path("report"),
    latency: Annotated[
        str, typer.Option("--latency", help="Latency on the plot and table: compute or end_to_end (p50).")
    ] = "compute",
    batch: Annotated[
        int | None, typer.Option("--batch", help="Batch size to plot (default: each artifact's smallest).")
    ] = None,
) -> None:
    """report.md (tables to paste), accuracy_latency.png and report.json.

    Accuracy pairs with latency when: the bench ran with --data --eval; an eval JSON names the artifact
    ('artifact' field) or is named <artifact file>.eval.json beside it; or NAME.eval.json sits beside a
    NAME.bench.json of one artifact.
    """
    from edgekd.bench.report import write_report

    markdown, png, report = write_report(list(inputs), out, latency, batch)
    console = Console()
    for note in report.notes:
        console.print(f"[yellow]note:[/] {escape(note)}", highlight=False, soft_wrap=True)
    console.print(f"report written to {markdown} (plot {png}, {len(report.rows)} measured rows)")


def register(app: typer.Typer) -> None:
    app.command("report", help="Accuracy-vs-latency report (Markdown + PNG) from eval and bench JSONs.")(report_command)
