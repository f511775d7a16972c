"""The console script as a user meets it: help lists every command, user mistakes print one line, no traceback."""

from __future__ import annotations

import subprocess
import sys

COMMANDS = ("data", "models", "train", "distill", "eval", "export", "demo")


def _edgekd(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "edgekd", *args], capture_output=True, text=True, timeout=120)


def test_help_lists_every_command():
    result = _edgekd("--help")
    assert result.returncode == 0
    for command in COMMANDS:
        assert command in result.stdout


def test_user_error_is_one_clear_line_without_traceback(tmp_path):
    result = _edgekd("train", "yolo_v99", "--data", str(tmp_path), "-o", str(tmp_path / "run"))
    assert result.returncode == 2
    assert "error: unknown model 'yolo_v99'" in result.stderr
    assert "Traceback" not in result.stderr + result.stdout
    result = _edgekd("eval", str(tmp_path / "missing.pt"), "--data", str(tmp_path))
    assert result.returncode == 2 and "Traceback" not in result.stderr


def test_a_long_error_is_one_unwrapped_line_when_piped(tmp_path):
    deep = tmp_path / ("a_rather_long_folder_name_" * 6) / "missing.pt"
    result = _edgekd("eval", str(deep), "--data", str(tmp_path))
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: checkpoint not found:") and str(deep) in lines[0]
