"""The `edgekd` command line: thin wrappers that parse options, call the library and print.

Each sub-command lives in edgekd/commands/<name>.py and registers itself through `register(app)`.
Torch is imported lazily inside commands so that ONNX/TensorRT paths run on machines without it.
"""

from __future__ import annotations

import os
import sys
from importlib import metadata

import typer
from rich.console import Console
from rich.markup import escape

from edgekd.commands import bench, data, demo, distill, evaluate, export, models, report, show, sweep, train
from edgekd.errors import EdgeKDError

app = typer.Typer(
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    help="edgekd: distill compact object detectors, export them to ONNX/TensorRT and measure what ships.",
)

for command_module in (data, models, train, distill, evaluate, show, export, bench, report, sweep, demo):
    command_module.register(app)


def package_version() -> str:
    """The installed package's version (its metadata); the source tree's `edgekd.__version__` when not installed."""
    try:
        return metadata.version("edgekd")
    except metadata.PackageNotFoundError:
        from edgekd._version import __version__

        return __version__


def _print_version(value: bool) -> None:
    if value:
        typer.echo(f"edgekd {package_version()}")
        raise typer.Exit()


@app.callback()
def _options(
    version: bool = typer.Option(
        False, "--version", is_eager=True, callback=_print_version, help="Print the edgekd version and exit."
    ),
) -> None:
    """edgekd: distill compact object detectors, export them to ONNX/TensorRT and measure what ships."""


# typer >= 0.20 carries its own copy of click, older typer uses click itself: in both, the parser's usage error
# is the base class of typer.BadParameter.
_USAGE_ERROR = next(base for base in typer.BadParameter.__mro__ if base.__name__ == "UsageError")


def main() -> None:
    """Console-script entry point: user errors print one clear message and exit with status 2."""
    try:
        status = app(standalone_mode=False)
    except _USAGE_ERROR as error:  # a mistyped command, option or value, caught by the parser
        if type(error).__name__ == "NoArgsIsHelpError":  # `edgekd` or `edgekd data` alone: show the help
            Console().print(error.format_message(), highlight=False, markup=False)
            sys.exit(0)
        command = error.ctx.command_path if error.ctx is not None else "edgekd"
        _print_error(f"{error.format_message()} (see '{command} --help')")
        sys.exit(2)
    except typer.Abort:
        sys.exit(130)
    except EdgeKDError as error:
        _print_error(str(error))
        sys.exit(2)
    sys.exit(status if isinstance(status, int) else 0)


def _print_error(text: str) -> None:
    """One unwrapped `error:` line on stderr whatever the terminal width, so grep and log parsers see all of it."""
    if os.environ.get("RANK", "0") == "0":  # under torchrun every rank fails alike: say it once
        message = escape(" ".join(text.split()))
        Console(stderr=True, soft_wrap=True).print(f"[bold red]error:[/] {message}", highlight=False)


if __name__ == "__main__":
    main()
