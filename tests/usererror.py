"""The contract every bad-input case of the corpus checks: the console script exits with status 2 and prints one
line on stderr that names the culprit, with no traceback, and leaves nothing behind in the output folder.

`run_edgekd` calls the real entry point (`edgekd.cli.main`) in this process, so a bug that escapes as an exception
fails the test with its traceback; `tests/test_cli.py` checks the same contract through a real subprocess.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from edgekd.cli import main


@dataclass
class Outcome:
    code: int
    stdout: str
    stderr: str


def run_edgekd(capsys: pytest.CaptureFixture, monkeypatch: pytest.MonkeyPatch, *args: object) -> Outcome:
    """Run `edgekd ARGS...` through the console-script entry point; returns its exit status and output."""
    monkeypatch.setattr(sys, "argv", ["edgekd", *(str(a) for a in args)])
    capsys.readouterr()
    code = 0
    try:
        main()
    except SystemExit as stop:
        code = stop.code if isinstance(stop.code, int) else (0 if stop.code is None else 1)
    captured = capsys.readouterr()
    return Outcome(code, captured.out, captured.err)


def files_under(folder: Path | None) -> list[Path]:
    """Every file below `folder` (hidden temporaries included); [] when it does not exist."""
    if folder is None or not Path(folder).exists():
        return []
    folder = Path(folder)
    return sorted(p for p in ([folder] if folder.is_file() else folder.rglob("*")) if p.is_file())


def assert_user_error(
    outcome: Outcome, *needles: str, out: Path | None = None, before: list[Path] | None = None
) -> str:
    """Exit 2, one `error: ...` line on stderr containing every needle, no traceback, and (with `out`) no file
    in the output folder but those listed in `before`. Returns the message."""
    text = outcome.stderr + outcome.stdout
    assert "Traceback" not in text, text
    assert outcome.code == 2, f"exit {outcome.code}: {text}"
    lines = [line for line in outcome.stderr.splitlines() if line.strip()]
    errors = [line for line in lines if line.startswith("error:")]
    assert len(errors) == 1, f"expected one error line, got: {outcome.stderr!r}"
    message = errors[0]
    for needle in needles:
        assert needle in message, f"{needle!r} not in {message!r}"
    if out is not None:
        assert files_under(out) == sorted(before or []), f"files left in {out}: {files_under(out)}"
    return message
