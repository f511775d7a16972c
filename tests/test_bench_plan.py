"""`edgekd bench` tells the user up front what it will do and how long it will take, and shows progress: the plan
(with the batches a static-batch model will skip and why), the default time budget, and plain progress lines with
elapsed time and ETA on stderr when the output is not a terminal."""

from __future__ import annotations

import io
import json
import re

import pytest
from rich.console import Console
from test_bench_latency import tiny_detector_onnx
from usererror import run_edgekd

from edgekd.bench.latency import DEFAULT_SECONDS, BenchOptions, plan_bench
from edgekd.errors import EdgeKDError
from edgekd.progress import PlainProgress, clock
from edgekd.runtime import RunnerOptions
from edgekd.runtime.metadata import BatchSpec


@pytest.fixture(scope="module")
def static_onnx(tmp_path_factory):
    return tiny_detector_onnx(tmp_path_factory.mktemp("static") / "student" / "model.onnx", BatchSpec.static(1))


def test_plan_names_skipped_batches_and_estimates_the_timed_seconds(static_onnx, tiny_checkpoint):
    options = BenchOptions(batches=(1, 4, 8), backend_options=RunnerOptions(device="cpu"))
    plan = plan_bench([tiny_checkpoint, static_onnx], options)
    checkpoint, exported = plan.items
    assert checkpoint.batches == (1, 4, 8) and checkpoint.skipped == {}
    assert exported.batches == (1,) and set(exported.skipped) == {4, 8}
    assert "static batch of 1" in exported.skipped[4] and "--dynamic-batch" in exported.skipped[4]
    assert checkpoint.phases == exported.phases == ("compute", "end_to_end")
    # (3 + 1 measured batches) x 2 phases x 3 s
    assert plan.timed_seconds == 4 * 2 * DEFAULT_SECONDS == 24.0
    assert plan.measurements == 4
    text = "\n".join(plan.lines())
    assert "about 24 s of timed calls" in text
    assert f"{static_onnx} [ort-cpu]: batch 8 will be skipped: exported with a static batch of 1" in text


def test_plan_with_iters_gives_calls_not_seconds(static_onnx):
    plan = plan_bench([static_onnx], BenchOptions(iters=7, end_to_end=False, evaluate=False))
    assert plan.timed_seconds is None and plan.items[0].phases == ("compute",)
    assert "1 timed phase(s) of 7 calls each" in plan.lines()[0]


def test_nothing_runnable_is_refused_before_loading(static_onnx):
    with pytest.raises(EdgeKDError, match="no batch size could run: .*batch 4: exported with a static batch of 1"):
        plan_bench([static_onnx], BenchOptions(batches=(4,)))


def test_plain_progress_prints_done_total_elapsed_and_eta(monkeypatch):
    now = [100.0]
    monkeypatch.setattr("edgekd.progress.time.perf_counter", lambda: now[0])
    buffer = io.StringIO()
    progress = PlainProgress(Console(file=buffer, width=40), detail="loss {loss}", interval=10)
    task = progress.add_task("epoch {epoch}", total=4, epoch="1/2", loss="-")
    now[0] = 105.0
    progress.update(task, advance=1, loss="0.50")  # first line: 1 of 4 in 5 s -> 15 s left
    now[0] = 108.0
    progress.update(task, advance=1, loss="0.40")  # under the interval: no line
    now[0] = 120.0
    progress.update(task, advance=1, loss="0.30")  # 3 of 4 in 20 s -> about 7 s left
    now[0] = 121.0
    progress.update(task, advance=1, loss="0.20")  # completed: always a line, no ETA
    lines = buffer.getvalue().splitlines()
    assert lines == [
        "epoch 1/2: 1/4 (25%)  loss 0.50  elapsed 0:05  ETA 0:15",
        "epoch 1/2: 3/4 (75%)  loss 0.30  elapsed 0:20  ETA 0:07",
        "epoch 1/2: 4/4 (100%)  loss 0.20  elapsed 0:21",
    ]
    assert clock(3725) == "1:02:05"


def test_cli_prints_plan_and_one_progress_line_per_measurement_on_stderr(static_onnx, tmp_path, capsys, monkeypatch):
    out = tmp_path / "b.bench.json"
    outcome = run_edgekd(
        capsys, monkeypatch, "bench", static_onnx, "--batch", "1,4", "--seconds", "0.01", "--warmup", "0", "--json", out
    )
    assert outcome.code == 0, outcome.stderr
    err = outcome.stderr
    assert "bench plan: 1 artifact(s), 2 timed phase(s) of 0.01 s each" in err
    assert "batch 4 will be skipped: exported with a static batch of 1 (re-export with --dynamic-batch)" in err
    assert re.search(r"model\.onnx \[ort-cpu\] batch 1: 0/1 \(0%\)  elapsed 0:0\d", err), err
    assert "bench done: 1/1 (100%)" in err
    assert "bench plan" not in outcome.stdout and "elapsed" not in outcome.stdout
    records = json.loads(out.read_text())["records"]
    assert [(r["batch"], r.get("skipped") is None) for r in records] == [(1, True), (4, False)]
