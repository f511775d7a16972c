"""`edgekd sweep`: budgets, candidates, stage 1 from a bench JSON or timed here, stage 2 selection, resume after an
interruption, and the bad-input corpus (tests/usererror.py)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from edgekd.bench.energy import EnergyReading
from edgekd.bench.record import BenchRecord, BenchRun
from edgekd.bench.schema import STAT_KEYS
from edgekd.errors import EdgeKDError
from edgekd.sweep.budget import parse_budget
from edgekd.sweep.candidates import Candidate, GridOptions, grid_candidates
from edgekd.sweep.stages import Row, select
from tests.usererror import assert_user_error, run_edgekd

SMALL = "retinanet_mobilenet_v3_lite"  # fewer GFLOPs than SMALL_R18 at the same size
SMALL_R18 = "retinanet_resnet18_lite"
SIZE = (64, 160)  # tiny_checkpoint's input size (height, width)
RECIPE = Path(__file__).resolve().parents[1] / "recipes" / "fgfi.yaml"
FAST = ("--epochs", "1", "--train-batch", "4", "--device", "cpu", "--quiet", "--recipe", RECIPE)


def _stats(p99: float) -> dict:
    values = dict.fromkeys(STAT_KEYS, p99 / 2)
    values.update(p99_ms=p99, max_ms=p99, iters=10, cv=0.01, std_ms=0.1, throughput_ips=1000 / p99)
    return values


def write_bench(path: Path, latencies: dict[str, float], energy: dict[str, float] | None = None) -> Path:
    """A bench JSON with one timed ort-cpu record at batch 1 per model (at SIZE), end-to-end p99 as given."""
    records = []
    for model, p99 in latencies.items():
        record = BenchRecord.head(Path(f"{model}.onnx"), "ort-cpu", 1, device="test CPU", timer="perf_counter")
        record.kind, record.model, record.input_size, record.precision = "onnx", model, list(SIZE), "fp32"
        record.classes = ["Car", "Pedestrian", "Cyclist"]
        record.phases = {"compute": _stats(p99 * 0.8), "end_to_end": _stats(p99)}
        if energy is not None:
            record.energy = EnergyReading("end_to_end", "test", "test", 10 * energy[model], 1.0, 10)
        records.append(record)
    run = BenchRun("2026-01-01T00:00:00+00:00", "edgekd bench ...", {}, {}, records)
    path.write_text(json.dumps(run.to_dict()))
    return path


@pytest.fixture
def two_candidates(tmp_path: Path) -> Path:
    path = tmp_path / "candidates.yaml"
    path.write_text(f"- {SMALL}\n- {SMALL_R18}\n")
    return path


def sweep_args(tiny_checkpoint: Path, tiny_kitti: Path, candidates: Path, out: Path, *extra: str) -> list:
    return ["sweep", "--teacher", tiny_checkpoint, "--data", tiny_kitti, "--candidates", candidates, "-o", out, *extra]


# ---------------------------------------------------------------- units


@pytest.mark.parametrize(
    "text, phase, stat, limit, strict",
    [
        ("p99<=10ms", "end_to_end", "p99", 10.0, False),
        (" compute.p50 < 2500 us ", "compute", "p50", 2.5, True),
        ("mean<=0.02s", "end_to_end", "mean", 20.0, False),
    ],
)
def test_parse_latency_budget(text: str, phase: str, stat: str, limit: float, strict: bool) -> None:
    budget = parse_budget(text)
    assert (budget.kind, budget.phase, budget.stat, budget.strict) == ("latency", phase, stat, strict)
    assert budget.limit == pytest.approx(limit)


def test_parse_energy_budget_and_holds() -> None:
    budget = parse_budget("mJ<=50")
    assert (budget.kind, budget.limit) == ("energy", 50.0)
    assert budget.holds(50.0) and not budget.holds(50.5)
    assert not parse_budget("p99<10ms").holds(10.0)


def test_default_grid_is_the_zoo_students_at_the_teacher_size() -> None:
    found = grid_candidates(GridOptions(families="retinanet,fcos"), SIZE)
    names = sorted(c.model for c in found)
    assert names == sorted(
        f"{family}_{backbone}{suffix}"
        for family in ("retinanet", "fcos")
        for backbone in ("resnet18", "mobilenet_v3", "mobilenet_v3_small")
        for suffix in ("", "_lite")
    )
    assert {c.input_size for c in found} == {SIZE}
    sized = grid_candidates(GridOptions(families="fcos", backbones="resnet18", widths="64", img_sizes="320x96"), SIZE)
    assert sized == [Candidate("fcos_resnet18_lite", (96, 320))]


def test_select_ranks_by_gflops_inside_the_budget() -> None:
    from edgekd.sweep.budget import Verdict

    def row(name: str, gflops: float, met: bool, problem: str | None = None) -> Row:
        return Row(Candidate(name, SIZE), 1, gflops, problem, verdict=Verdict({}, met, ()))

    rows = [row("a", 1.0, True), row("b", 3.0, True), row("c", 9.0, False), row("d", 5.0, True, "other family")]
    assert [r.candidate.model for r in select(rows, 1)] == ["b"]
    assert [r.candidate.model for r in select(rows, 5)] == ["b", "a"]


# ---------------------------------------------------------------- sweeps


def _no_timing(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("stage 1 timed or exported a candidate although --latency-from was given")

    monkeypatch.setattr("edgekd.bench.latency.run_bench", refuse)
    monkeypatch.setattr("edgekd.sweep.stages._untrained_onnx", refuse)


def test_latency_from_selects_the_candidate_inside_the_budget(
    capsys, monkeypatch, tmp_path, tiny_checkpoint, tiny_kitti, two_candidates
) -> None:
    bench = write_bench(tmp_path / "device.bench.json", {SMALL: 6.0, SMALL_R18: 14.0})
    _no_timing(monkeypatch)
    out = tmp_path / "sweep"
    args = sweep_args(tiny_checkpoint, tiny_kitti, two_candidates, out, "--budget", "p99<=10ms", "--top", "2")
    outcome = run_edgekd(capsys, monkeypatch, *args, "--latency-from", bench, *FAST)
    assert outcome.code == 0, outcome.stderr + outcome.stdout
    report = json.loads((out / "sweep.json").read_text())
    rows = {row["model"]: row for row in report["candidates"]}
    assert rows[SMALL]["met_budget"] and not rows[SMALL_R18]["met_budget"]
    assert rows[SMALL]["budget_values"]["p99<=10ms"] == 6.0
    assert rows[SMALL_R18]["trained"] is None and rows[SMALL]["trained"]["parity_error"] is None
    assert report["recommended"] == f"{SMALL}@160x64"
    assert set(rows[SMALL]["kitti_ap_r40_by_difficulty"]) == {"easy", "moderate", "hard"}
    assert Path(rows[SMALL]["trained"]["onnx"]).is_file()
    assert report["commands"][0].startswith(f"edgekd distill --teacher {tiny_checkpoint} --student {SMALL} ")
    assert (out / "front.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert f"`{SMALL}@160x64`" in (out / "sweep.md").read_text()


def test_interrupted_stage_2_resumes_without_retraining(
    capsys, monkeypatch, tmp_path, tiny_checkpoint, tiny_kitti, two_candidates
) -> None:
    import edgekd.pipeline

    bench = write_bench(tmp_path / "device.bench.json", {SMALL: 6.0, SMALL_R18: 14.0})
    _no_timing(monkeypatch)
    real = edgekd.pipeline.build_distill_trainer
    trained: list[str] = []

    def counting(teacher, student, *args, **kwargs):
        if crash and trained:
            raise RuntimeError("power cut")
        trained.append(student)
        return real(teacher, student, *args, **kwargs)

    monkeypatch.setattr(edgekd.pipeline, "build_distill_trainer", counting)
    out = tmp_path / "sweep"
    args = sweep_args(tiny_checkpoint, tiny_kitti, two_candidates, out, "--budget", "p99<=20ms", "--top", "2")
    args += ["--latency-from", bench, *FAST]
    crash = True
    with pytest.raises(RuntimeError, match="power cut"):
        run_edgekd(capsys, monkeypatch, *args)
    assert trained == [SMALL_R18]  # most GFLOPs first
    assert list(json.loads((out / "stage2.json").read_text())["candidates"]) == [f"{SMALL_R18}@160x64"]
    assert not (out / "sweep.json").exists()

    crash, trained[:] = False, []
    assert run_edgekd(capsys, monkeypatch, *args).code == 0
    assert trained == [SMALL]
    rows = json.loads((out / "sweep.json").read_text())["candidates"]
    assert all(row["trained"] is not None for row in rows)

    stored = json.loads((out / "stage2.json").read_text())["seconds"]
    assert set(stored) == {f"{SMALL_R18}@160x64", f"{SMALL}@160x64"} and all(s > 0 for s in stored.values())

    assert run_edgekd(capsys, monkeypatch, *args).code == 0
    assert trained == [SMALL]  # the third run re-trains nothing
    report = json.loads((out / "sweep.json").read_text())
    assert {row["candidate"]: row["stage_seconds"]["stage2"] for row in report["candidates"]} == stored
    total = report["stage_seconds_measured"]["stage2"]
    assert total["candidates"] == 2 and total["seconds"] == pytest.approx(sum(stored.values()))
    assert f"stage 2 {sum(stored.values()) / 60:.1f} min for 2 candidate(s)" in (out / "sweep.md").read_text()


def test_export_only_then_timed_here_then_cached(
    capsys, monkeypatch, tmp_path, tiny_checkpoint, tiny_kitti, two_candidates
) -> None:
    import edgekd.bench.latency

    out = tmp_path / "sweep"
    base = sweep_args(tiny_checkpoint, tiny_kitti, two_candidates, out, "--budget", "p99<=0.001ms", *FAST)
    outcome = run_edgekd(capsys, monkeypatch, *base, "--export-only")
    assert outcome.code == 0, outcome.stderr
    onnx = [out / "candidates" / f"{model}@160x64" / "onnx" / "model.onnx" for model in (SMALL, SMALL_R18)]
    command = (out / "bench_command.txt").read_text()
    assert all(path.is_file() and str(path) in command for path in onnx)
    assert command.startswith("edgekd bench ") and "--json" in command

    timed = ["--iters", "2", "--warmup", "0"]
    real = edgekd.bench.latency.run_bench
    calls: list[Path] = []

    def counting(paths, *args, **kwargs):
        calls.extend(paths)
        return real(paths, *args, **kwargs)

    monkeypatch.setattr(edgekd.bench.latency, "run_bench", counting)
    assert run_edgekd(capsys, monkeypatch, *base, *timed).code == 0
    assert calls == onnx  # the exported files are timed, not exported again
    report = json.loads((out / "sweep.json").read_text())
    assert report["recommended"] is None and not any(row["met_budget"] for row in report["candidates"])
    assert all(row["latency"]["end_to_end"]["iters"] == 2 for row in report["candidates"])

    calls.clear()
    assert run_edgekd(capsys, monkeypatch, *base, *timed).code == 0
    assert calls == []  # stage 1 read back from stage1.json


def test_energy_budget_reads_the_records_energy(
    capsys, monkeypatch, tmp_path, tiny_checkpoint, tiny_kitti, two_candidates
) -> None:
    bench = write_bench(tmp_path / "e.bench.json", {SMALL: 6.0, SMALL_R18: 7.0}, energy={SMALL: 80.0, SMALL_R18: 40.0})
    _no_timing(monkeypatch)
    out = tmp_path / "sweep"
    args = sweep_args(tiny_checkpoint, tiny_kitti, two_candidates, out, "--budget", "p99<=10ms", "--budget", "mJ<=50")
    monkeypatch.setattr("edgekd.sweep.stages.distill_selected", lambda *args: None)  # stage 1 verdicts only
    assert run_edgekd(capsys, monkeypatch, *args, "--latency-from", bench, *FAST).code == 0
    rows = {row["model"]: row for row in json.loads((out / "sweep.json").read_text())["candidates"]}
    assert not rows[SMALL]["met_budget"] and rows[SMALL_R18]["met_budget"]
    assert rows[SMALL]["budget_values"]["mJ<=50"] == 80.0


# ---------------------------------------------------------------- bad inputs


@pytest.mark.parametrize(
    "budget, needles",
    [
        ("p99<=10", ("--budget 'p99<=10'", "unit")),
        ("p99=10ms", ("--budget 'p99=10ms'", "expected STAT<=VALUE")),
        ("p42<=1ms", ("unknown statistic 'p42'",)),
        ("gpu.p99<=1ms", ("unknown phase 'gpu'",)),
        ("p99<=-1ms", ("positive finite",)),
        ("p99<=nanms", ("expected STAT<=VALUE",)),
        ("p99<=1e400ms", ("positive finite",)),
        ("p99<=abcms", ("expected STAT<=VALUE",)),
    ],
)
def test_bad_budget(capsys, monkeypatch, tmp_path, tiny_checkpoint, tiny_kitti, two_candidates, budget, needles):
    out = tmp_path / "sweep"
    args = sweep_args(tiny_checkpoint, tiny_kitti, two_candidates, out, "--budget", budget)
    assert_user_error(run_edgekd(capsys, monkeypatch, *args), *needles, out=out)


@pytest.mark.parametrize(
    "text, needles",
    [
        ("- not_a_model\n", ("candidates[0]", "unknown model 'not_a_model'")),
        ("model: x\n", ("expected a list of candidates",)),
        (f"- {{model: {SMALL}, img_size: 100x64}}\n", ("candidates[0]: field 'img_size'", "multiples of 32")),
        (f"- {{model: {SMALL}, img_size: big}}\n", ("candidates[0]: field 'img_size'", "WIDTHxHEIGHT")),
        (f"- {{model: {SMALL}, size: 160x64}}\n", ("candidates[0]", "unknown field 'size'")),
        (f"- {SMALL}\n- {{model: {SMALL}, img_size: 160x64}}\n", ("listed twice",)),
        ("- [a\n", ("candidates.yaml:", "not valid YAML")),
        ("[]\n", ("no candidate to sweep",)),
    ],
)
def test_bad_candidates_file(capsys, monkeypatch, tmp_path, tiny_checkpoint, tiny_kitti, text, needles):
    path = tmp_path / "candidates.yaml"
    path.write_text(text)
    out = tmp_path / "sweep"
    args = sweep_args(tiny_checkpoint, tiny_kitti, path, out, "--budget", "p99<=10ms")
    assert_user_error(run_edgekd(capsys, monkeypatch, *args), *needles, out=out)


@pytest.mark.parametrize(
    "extra, needles",
    [
        (["--families", "yolo"], ("--families", "unknown family 'yolo'")),
        (["--backbones", "vgg"], ("--backbones", "unknown backbone 'vgg'")),
        (["--widths", "32"], ("--widths", "'32'")),
        (["--backbones", "resnet50", "--widths", "64"], ("no resnet50_lite",)),
        (["--img-sizes", "160x60"], ("--img-sizes '160x60'", "multiples of 32")),
        (["--img-sizes", "wide"], ("--img-sizes 'wide'",)),
    ],
)
def test_bad_grid(capsys, monkeypatch, tmp_path, tiny_checkpoint, tiny_kitti, extra, needles):
    out = tmp_path / "sweep"
    args = ["sweep", "--teacher", tiny_checkpoint, "--data", tiny_kitti, "-o", out, "--budget", "p99<=1ms", *extra]
    assert_user_error(run_edgekd(capsys, monkeypatch, *args), *needles, out=out)


@pytest.mark.parametrize(
    "extra, needles",
    [
        (["--budget", "mJ<=5"], ("--budget", "give a latency budget")),
        (["--budget", "p99<=9ms", "--families", "fcos"], ("--candidates FILE or the grid options",)),
        (["--budget", "p99<=9ms", "--export-only", "--latency-from", "x.json"], ("--export-only", "not both")),
        (["--budget", "p99<=9ms", "--backend", "trt"], ("--backend trt", "--latency-from")),
        (["--budget", "p99<=9ms", "--backend", "tpu"], ("--backend tpu", "ort-cpu")),
        (["--budget", "p99<=9ms", "--top", "0"], ("--top 0", "at least 1")),
        (["--budget", "p99<=9ms", "--iters", "1"], ("--iters 1", "at least 2")),
        (["--budget", "p99<=9ms", "--latency-from", "missing.json"], ("--latency-from missing.json", "no such file")),
        (["--budget", "p99<=9ms", "--recipe", "nope.yaml"], ("nope.yaml",)),
        (["--budget", "p99<=9ms", "--data", "nowhere"], ("nowhere",)),
    ],
)
def test_bad_options(capsys, monkeypatch, tmp_path, tiny_checkpoint, tiny_kitti, two_candidates, extra, needles):
    out = tmp_path / "sweep"
    monkeypatch.chdir(Path(__file__).resolve().parents[1])
    args = ["sweep", "--teacher", tiny_checkpoint, "--data", tiny_kitti, "--candidates", two_candidates, "-o", out]
    assert_user_error(run_edgekd(capsys, monkeypatch, *args, *extra), *needles, out=out)


def test_latency_from_problems(capsys, monkeypatch, tmp_path, tiny_checkpoint, tiny_kitti, two_candidates):
    out = tmp_path / "sweep"
    args = sweep_args(tiny_checkpoint, tiny_kitti, two_candidates, out, "--budget", "p99<=9ms")
    partial = write_bench(tmp_path / "partial.bench.json", {SMALL: 5.0})
    outcome = run_edgekd(capsys, monkeypatch, *args, "--latency-from", partial)
    assert_user_error(outcome, "--latency-from", "no timed record at batch 1", f"{SMALL_R18}@160x64", out=out)

    other = tmp_path / "eval.json"
    other.write_text('{"coco": {}}')
    outcome = run_edgekd(capsys, monkeypatch, *args, "--latency-from", other)
    assert_user_error(outcome, f"--latency-from {other}", "not an edgekd bench JSON", out=out)

    both = write_bench(tmp_path / "both.bench.json", {SMALL: 5.0, SMALL_R18: 6.0})
    outcome = run_edgekd(capsys, monkeypatch, *args, "--budget", "mJ<=50", "--latency-from", both)
    assert_user_error(outcome, "--budget 'mJ<=50'", "no energy measurement", out=out)


def test_parse_budget_error_is_edgekd_error() -> None:
    with pytest.raises(EdgeKDError, match="--budget 'fast'"):
        parse_budget("fast")
