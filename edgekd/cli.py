"""The `edgekd` command line: thin wrappers that parse options, call the library and print.

Each sub-command lives in edgekd/commands/<name>.py and registers itself through `register(app)`.
Torch is imported lazily inside commands so that ONNX/TensorRT paths run on machines without it.
"""

from __future__ import annotations

import os
import sys

import typer
from rich.console import Console
from rich.markup import escape

from edgekd.commands import bench, data, demo, distill, evaluate, export, models, report, train
from edgekd.errors import EdgeKDError

app = typer.Typer(
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    help="edgekd: distill compact object detectors, export them to ONNX/TensorRT and measure what ships.",
)

for command_module in (data, models, train, distill, evaluate, export, bench, report, demo):
    command_module.register(app)


def main() -> None:
    """Console-script entry point: user errors print one clear message and exit with status 2."""
    try:
        app()
    except EdgeKDError as error:
        if os.environ.get("RANK", "0") == "0":  # under torchrun every rank fails alike: say it once
            # one unwrapped line whatever the terminal width, so grep and log parsers see the whole message
            message = escape(" ".join(str(error).split()))
            Console(stderr=True, soft_wrap=True).print(f"[bold red]error:[/] {message}", highlight=False)
        sys.exit(2)


if __name__ == "__main__":
    main()
