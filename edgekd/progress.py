"""Progress that suits where it is shown: a rich bar on a terminal, periodic plain lines (done/total, elapsed time
and ETA) in a pipe or a log file. Progress always goes to stderr, so stdout carries only results."""

from __future__ import annotations

import time
from dataclasses import dataclass

from rich.console import Console
from rich.progress import Progress, ProgressColumn

PLAIN_INTERVAL = 10.0
"""Seconds between two plain progress lines of one task (its first and last line are always printed)."""


def progress_console(quiet: bool = False) -> Console:
    """The console progress is drawn on: stderr."""
    return Console(stderr=True, quiet=quiet)


def clock(seconds: float) -> str:
    """Seconds as H:MM:SS, or M:SS under an hour."""
    whole = int(round(max(seconds, 0.0)))
    hours, rest = divmod(whole, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


@dataclass
class _PlainTask:
    description: str
    total: float | None
    fields: dict
    started: float
    completed: float = 0.0
    printed_at: float | None = None
    finished: bool = False


class PlainProgress:
    """The part of rich.progress.Progress this package uses (add_task, update, advance), printed as plain lines:
    `DESCRIPTION: DONE/TOTAL (P%)  DETAIL  elapsed M:SS  ETA M:SS`, one when a task first advances, then at most
    one every `interval` seconds, and one when it completes. `description` and `detail` are format strings over the
    task's fields (as rich's TextColumn templates are), rendered as rich markup like rich's own."""

    def __init__(
        self, console: Console, detail: str = "", interval: float = PLAIN_INTERVAL, disable: bool = False
    ) -> None:
        self.console = console
        self.detail = detail
        self.interval = interval
        self.disable = disable or console.quiet
        self._tasks: list[_PlainTask] = []

    def __enter__(self) -> PlainProgress:
        return self

    def __exit__(self, *exc: object) -> None:
        return None

    def add_task(self, description: str, total: float | None = None, **fields: object) -> int:
        self._tasks.append(_PlainTask(description, total, dict(fields), time.perf_counter()))
        return len(self._tasks) - 1

    def advance(self, task_id: int, advance: float = 1) -> None:
        self.update(task_id, advance=advance)

    def update(
        self,
        task_id: int,
        *,
        total: float | None = None,
        completed: float | None = None,
        advance: float | None = None,
        description: str | None = None,
        **fields: object,
    ) -> None:
        task = self._tasks[task_id]
        if total is not None:
            task.total = total
        if description is not None:
            task.description = description
        task.fields.update(fields)
        if completed is not None:
            task.completed = completed
        if advance:
            task.completed += advance
        if completed is None and not advance:
            return
        now = time.perf_counter()
        done = task.total is not None and task.completed >= task.total
        due = task.printed_at is None or now - task.printed_at >= self.interval
        if (due or done) and not task.finished:
            task.printed_at, task.finished = now, done
            self._print(task, now)

    def _print(self, task: _PlainTask, now: float) -> None:
        if self.disable:
            return
        elapsed = now - task.started
        parts = [task.description.format(**task.fields)]
        if task.total:
            share = task.completed / task.total
            parts[0] += f": {task.completed:g}/{task.total:g} ({share:.0%})"
        detail = self.detail.format(**task.fields) if self.detail else ""
        if detail.strip():
            parts.append(detail)
        parts.append(f"elapsed {clock(elapsed)}")
        if task.total and 0 < task.completed < task.total:
            parts.append(f"ETA {clock(elapsed * (task.total - task.completed) / task.completed)}")
        self.console.print("  ".join(parts), highlight=False, soft_wrap=True)


def make_progress(
    console: Console,
    columns: tuple[str | ProgressColumn, ...],
    detail: str = "",
    transient: bool = False,
    disable: bool = False,
    interval: float = PLAIN_INTERVAL,
) -> Progress | PlainProgress:
    """A rich Progress with `columns` when `console` is a terminal, else a PlainProgress (see its doc) printing the
    task's description and `detail` every `interval` seconds."""
    if console.is_terminal:
        return Progress(*columns, console=console, transient=transient, disable=disable)
    return PlainProgress(console, detail, interval, disable)
