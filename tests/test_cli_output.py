"""Output that pipes: tables keep every name whole when piped or narrow, `edgekd models --json`, `edgekd --version`."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from importlib import metadata
from pathlib import Path

from rich.console import Console
from rich.table import Table
from usererror import run_edgekd

from edgekd.console import print_table
from edgekd.models.complexity import count_parameters
from edgekd.models.detector import DetectorConfig
from edgekd.models.zoo import ZOO, build_detector

ROOT = Path(__file__).resolve().parents[1]
LONG = "fasterrcnn_mobilenet_v3_large_320_fpn"


def _edgekd_piped(*args: str, columns: int = 40) -> str:
    """`edgekd ARGS | cat`: stdout is a pipe, and the terminal width the environment claims is narrow."""
    env = {**os.environ, "COLUMNS": str(columns), "OMP_NUM_THREADS": "1"}
    done = subprocess.run(
        [sys.executable, "-m", "edgekd", *args], capture_output=True, text=True, cwd=ROOT, env=env, timeout=300
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_models_json_lists_every_zoo_entry(capsys, monkeypatch):
    outcome = run_edgekd(capsys, monkeypatch, "models", "--json", "--img-size", "160x64")
    assert outcome.code == 0, outcome.stderr
    payload = json.loads(outcome.stdout)
    assert payload["img_size"] == "160x64"
    assert [row["name"] for row in payload["models"]] == list(ZOO)
    row = next(r for r in payload["models"] if r["name"] == "retinanet_mobilenet_v3_lite")
    detector = build_detector(DetectorConfig("retinanet_mobilenet_v3_lite", ("a", "b", "c"), (64, 160)))
    assert abs(row["params_m"] - sum(p.numel() for p in detector.parameters()) / 1e6) < 1e-3
    assert row["params_m"] == round(count_parameters(detector) / 1e6, 4)
    assert (row["family"], row["backbone"], row["width"], row["role"]) == ("retinanet", "mobilenet_v3", 64, "student")


def test_models_piped_shows_every_full_name():
    out = _edgekd_piped("models", "--img-size", "160x64")
    assert "…" not in out
    cells = {cell.strip() for line in out.splitlines() for cell in line.split("│")}
    assert set(ZOO) <= cells, set(ZOO) - cells


def test_data_stats_piped_keeps_class_names(tiny_kitti):
    out = _edgekd_piped("data", "stats", str(tiny_kitti), columns=30)
    assert "…" not in out
    for name in ("Car", "Pedestrian", "Cyclist"):
        assert f"│ {name} " in out


def _table() -> Table:
    table = Table(title="t")
    for column in ("name", "a long header of numbers", "another long header"):
        table.add_column(column)
    table.add_row(LONG, "1 2 3 4 5 6 7 8 9", "x y z")
    table.add_row("Pedestrian", "1", "2")
    return table


def test_print_table_not_on_a_terminal_prints_the_natural_width():
    buffer = io.StringIO()
    print_table(Console(file=buffer, width=30), _table())
    text = buffer.getvalue()
    assert LONG in text and "1 2 3 4 5 6 7 8 9" in text and "…" not in text
    widths = {len(line) for line in text.splitlines() if line.startswith(("┏", "│", "└"))}
    assert len(widths) == 1 and widths.pop() > 30


def test_print_table_on_a_narrow_terminal_keeps_names_whole():
    for width in (60, 20):
        buffer = io.StringIO()
        print_table(Console(file=buffer, width=width, force_terminal=True, color_system=None), _table())
        text = buffer.getvalue()
        assert LONG in text and "Pedestrian" in text and "…" not in text, text


def test_version_prints_the_package_version(capsys, monkeypatch):
    outcome = run_edgekd(capsys, monkeypatch, "--version")
    assert outcome.code == 0
    assert outcome.stdout.strip() == f"edgekd {metadata.version('edgekd')}"
