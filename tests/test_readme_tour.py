"""The README's CLI tour, run line by line as written (at tiny size), ends in a filled report: accuracy and latency
for the student's checkpoint and its ONNX export; then the README's Python API example runs in the same folder.

Sizes are rewritten, not the flow: 12 + 6 images at 320x96, network 160x64, one epoch at batch 4 on the CPU, the
lite teacher/student of the same families, a short bench budget. `edgekd demo` (its own test: test_demo.py) is the
one line left out."""

from __future__ import annotations

import json
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from edgekd.cli import main

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()
pytestmark = pytest.mark.slow

TRAINING = ["--epochs", "1", "--batch", "4", "--device", "cpu", "--quiet"]
SMALLER = {
    "--train": "12",
    "--val": "6",
    "--workers": "1",
    "--img-size": "160x64",
    "--epochs": "1",
    "--n": "2",
    "--worst": "2",
}
MODELS = {"retinanet_resnet50": "retinanet_resnet18_lite", "retinanet_mobilenet_v3": "retinanet_mobilenet_v3_lite"}


def readme_block(heading: str, language: str) -> str:
    """The first fenced `language` block after `heading` in the README."""
    section = README[README.index(heading) :]
    match = re.search(rf"```{language}\n(.*?)```", section, re.S)
    assert match, f"no {language} block under {heading}"
    return match.group(1)


def tour_commands() -> list[list[str]]:
    """The tour's commands as argument lists: continuation lines joined, comments dropped."""
    text = readme_block("## CLI tour", "bash").replace("\\\n", " ")
    return [shlex.split(line, comments=True) for line in text.splitlines() if line.strip()]


def tiny(args: list[str]) -> list[str]:
    """The same command at tiny size (see the module doc)."""
    args = [MODELS.get(arg, arg) for arg in args]
    for index, arg in enumerate(args[:-1]):
        if arg in SMALLER:
            args[index + 1] = SMALLER[arg]
    command = args[1:3]
    if command[:2] == ["data", "synth"]:
        args += ["--size", "320x96"]
    if command[0] in ("train", "distill"):
        args += [option for option in TRAINING if option not in args]
    if command[0] == "export" and "--int8" in args:
        args += ["--calib-images", "8", "--threads", "1"]
    if command[0] == "bench":
        args += ["--seconds", "0.02", "--warmup", "1", "--threads", "1"]
    if command[0] in ("eval", "show") and args[2].endswith(".pt"):
        args += ["--device", "cpu"]
    return args


@pytest.fixture(scope="module")
def toured(tmp_path_factory):
    """A folder where the whole tour ran; returns it."""
    folder = tmp_path_factory.mktemp("tour")
    (folder / "recipes").symlink_to(ROOT / "recipes")
    monkeypatch = pytest.MonkeyPatch()
    monkeypatch.chdir(folder)
    try:
        for args in tour_commands():
            assert args[0] == "edgekd", args
            if args[1] == "demo":
                continue
            monkeypatch.setattr(sys, "argv", tiny(args))
            with pytest.raises(SystemExit) as stop:
                main()
            assert stop.value.code == 0, shlex.join(args)
    finally:
        monkeypatch.undo()
    return folder


def test_tour_lines_are_the_ones_this_test_knows():
    commands = [" ".join(args[1:3]) for args in tour_commands()]
    assert commands[0] == "data synth" and commands[-2:] == ["report runs/", "demo"]
    assert sum(args[1] == "export" for args in tour_commands()) == 2


def test_the_tour_ends_in_a_report_with_accuracy_and_latency_for_the_student(toured):
    report = json.loads((toured / "report" / "report.json").read_text())
    student = {row["record"]["artifact"]: row for row in report["rows"] if row["record"]["batch"] == 1}
    for artifact in ("runs/student/best.pt", "export/student/model.onnx"):
        row = student[str(toured / artifact)] if str(toured / artifact) in student else student[artifact]
        assert row["accuracy"] is not None and "coco" in row["accuracy"], artifact
        assert row["record"]["phases"]["compute"]["p50_ms"] > 0
    assert {4, 8} <= {row["record"]["batch"] for row in report["rows"]}  # the dynamic-batch export ran them too
    for name in ("report.md", "accuracy_latency.png", "preds.png", "grid.png"):
        assert (toured / "report" / name).is_file()
    assert sorted(path.name for path in toured.iterdir()) == ["data", "export", "recipes", "report", "runs"]
    parity = json.loads((toured / "export" / "student_trt" / "parity.json").read_text())
    assert parity["tensorrt"]["trtexec"].startswith("trtexec ")
    assert (toured / "export" / "student" / "model_int8.onnx").is_file()  # the TensorRT line kept the INT8 export


def test_the_readme_python_example_runs(toured):
    example = readme_block("## Python API", "python")
    assert len(example.strip().splitlines()) <= 14
    result = subprocess.run(
        [sys.executable, "-c", example], cwd=toured, capture_output=True, text=True, timeout=300, env=_one_thread()
    )
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[1].startswith("COCO AP ") and lines[2].endswith("model.onnx True")


def _one_thread() -> dict:
    import os

    return {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
