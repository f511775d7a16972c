"""Printing rich tables that never cut a name short, whether the output is a terminal, a pipe or a log file."""

from __future__ import annotations

from collections.abc import Sequence

from rich.console import Console
from rich.measure import Measurement
from rich.segment import Segments
from rich.table import Table

_UNBOUNDED = 1_000_000


def print_table(console: Console, table: Table, name_columns: Sequence[int] = (0,)) -> None:
    """Print `table` with every cell of its name columns (indices; default the first) in full.

    Not on a terminal (piped, redirected, captured): the table is printed at its natural width, however wide, so
    nothing is wrapped or truncated. On a terminal: the name columns never wrap and are at least as wide as their
    longest cell; the other columns wrap (a word wider than its column folds onto the next line) to fit the
    terminal, and a terminal too narrow even for that gets the wider table (its lines wrap on screen, no name is
    cut)."""
    wide = console.options.update_width(_UNBOUNDED)
    if console.is_terminal:
        for index, column in enumerate(table.columns):
            if index not in name_columns:
                column.overflow = "fold"  # a word wider than its column breaks across lines, no letter is lost
                continue
            column.no_wrap = True
            column.min_width = max(
                Measurement.get(console, wide, cell).maximum for cell in (column.header, *column.cells)
            )
        if Measurement.get(console, wide, table).minimum <= console.width:
            console.print(table)
            return
    width = Measurement.get(console, wide, table).maximum
    console.print(Segments(console.render(table, console.options.update_width(width))), crop=False)
