"""The KD table script end to end on the smoke preset, in a copy of benchmarks/ (its cache and results stay apart)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parent.parent
SMOKE = ["--preset", "smoke", "--seeds", "1", "--methods", "no KD,fitnet"]


@pytest.fixture(scope="module")
def bench_copy(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("repo")
    skip = shutil.ignore_patterns("cache", "results", "__pycache__")
    shutil.copytree(REPO / "benchmarks", root / "benchmarks", ignore=skip)
    shutil.copytree(REPO / "recipes", root / "recipes")
    return root


def kd_table(root: Path, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    script = root / "benchmarks" / "kd_table.py"
    return subprocess.run([sys.executable, str(script), *args], cwd=root, env=env, capture_output=True, text=True)


@pytest.fixture(scope="module")
def smoke_run(bench_copy: Path) -> dict:
    done = kd_table(bench_copy, *SMOKE)
    assert done.returncode == 0, done.stderr
    return json.loads((bench_copy / "benchmarks/results/kd_table_smoke.json").read_text())


def test_table_rows_are_the_stored_cells_and_the_gap_is_computed_from_them(bench_copy, smoke_run):
    pair = smoke_run["pairs"]["one-stage"]
    cells = {
        path.stem: json.loads(path.read_text()) for path in (bench_copy / "benchmarks/results/cells").glob("*.json")
    }
    assert sorted(name.split("-")[0] for name in cells) == ["student", "student", "teacher"]
    teacher = next(row for name, row in cells.items() if name.startswith("teacher"))
    assert pair["teacher"]["AP"] == teacher["AP"] and len(teacher["ap_per_epoch"]) == 1
    rows = {row["method"]: row for row in pair["summary"]}
    base, fitnet = pair["runs"]["no KD"][0]["AP"], pair["runs"]["fitnet"][0]["AP"]
    assert rows["no KD"]["gain"] == 0.0
    assert rows["fitnet"]["gain"] == pytest.approx(fitnet - base)
    if teacher["AP"] > base:
        assert rows["fitnet"]["gap_closed"] == pytest.approx((fitnet - base) / (teacher["AP"] - base))
    markdown = (bench_copy / "benchmarks/results/kd_table_smoke.md").read_text()
    assert "| fitnet | 1 |" in markdown and "kd_table_smoke.png" in markdown
    assert all(
        row["split"] == "test" and set(row["kitti_r40"]) == {"Car", "Pedestrian", "Cyclist"} for row in cells.values()
    )
    assert "held-out test split (4 images)" in markdown and "val AP |" in markdown
    assert "| method | Car E | Car M | Car H | Pedestrian E |" in markdown
    car = pair["runs"]["fitnet"][0]["kitti_r40"]["Car"]
    assert f"| fitnet | {car['easy']:.1f} | {car['moderate']:.1f} | {car['hard']:.1f} |" in markdown
    assert (
        f"| teacher | {teacher['kitti_r40']['Car']['easy']:.1f} | {teacher['kitti_r40']['Car']['moderate']:.1f} |"
        in markdown
    )
    assert (bench_copy / "benchmarks/results/kd_table_smoke.png").stat().st_size > 0


def test_a_second_run_reuses_every_cell_and_available_rewrites_the_same_table(bench_copy, smoke_run):
    checkpoints = sorted((bench_copy / "benchmarks/cache/cells").glob("*/best.pt"))
    stamps = [path.stat().st_mtime_ns for path in checkpoints]
    assert kd_table(bench_copy, *SMOKE).returncode == 0
    assert kd_table(bench_copy, *SMOKE, "--available").returncode == 0
    assert [path.stat().st_mtime_ns for path in checkpoints] == stamps
    again = json.loads((bench_copy / "benchmarks/results/kd_table_smoke.json").read_text())
    assert json.dumps(again["pairs"]) == json.dumps(smoke_run["pairs"])


def test_an_unknown_pair_or_method_is_named(bench_copy):
    done = kd_table(bench_copy, "--preset", "smoke", "--pairs", "three-stage")
    assert done.returncode == 2 and "--pairs" in done.stderr and "three-stage" in done.stderr
    done = kd_table(bench_copy, "--preset", "smoke", "--methods", "no KD,distill-all")
    assert done.returncode == 2 and "--methods" in done.stderr and "distill-all" in done.stderr


def test_teacher_line_reads_its_learning_curve_at_the_students_budget():
    sys.path.insert(0, str(REPO / "benchmarks"))
    from kd_table import teacher_at_student_budget

    line = "\n".join(teacher_at_student_budget({"ap_per_epoch": [1.0, 2.5, 4.0]}, 2))
    assert "after 2 of its 3 epochs" in line and "2.50 validation AP" in line
    assert teacher_at_student_budget({"ap_per_epoch": [1.0, 2.5]}, 2) == []
    assert teacher_at_student_budget({"AP": 3.0}, 2) == []


def test_combined_rows_are_each_pairs_own_combination():
    sys.path.insert(0, str(REPO / "benchmarks"))
    from kd_cells import Cell

    one_stage = Cell("cpu", "one-stage", "student", "combined").config()["losses"]
    two_stage = Cell("cpu", "two-stage", "student", "combined").config()["losses"]
    assert sorted(one_stage) == ["fgfi", "logits", "ssim"]
    assert sorted(two_stage) == ["bmfi", "gkd", "global"]
    ablation = Cell("cpu", "two-stage", "student", "fgfi+ssim+logits").config()["losses"]
    assert ablation == one_stage
    inheriting = Cell("cpu", "two-stage", "student", "combined (inherit)").config()
    assert inheriting["losses"] == two_stage and inheriting["inherit"] is True


def test_rows_chosen_on_validation_wait_for_the_single_rows_then_merge_the_best(tmp_path, monkeypatch):
    sys.path.insert(0, str(REPO / "benchmarks"))
    import kd_cells
    from kd_cells import Cell

    from edgekd.distill.recipe import load_recipe

    monkeypatch.setattr(kd_cells, "CELL_RESULTS", tmp_path)
    combined = Cell("smoke", "one-stage", "student", "combined")
    best = Cell("smoke", "one-stage", "student", "best single (inherit)")
    best_val = {"fgfi": 3.0, "ssim": 4.0, "gkd+bmfi": 1.0, "global": 5.0, "fitnet": 2.0, "logits": 1.5}
    for method, peak in best_val.items():  # seed s of a row peaks at peak + s - 1: the seeds' mean is `peak`
        for seed in range(3):
            assert not combined.ready() and kd_cells.cached_result(combined) is None
            cell = Cell("smoke", "one-stage", "student", method, seed)
            curve = [0.5, peak + seed - 1, 0.2]
            (tmp_path / f"{cell.directory().name}.json").write_text(json.dumps({"ap_per_epoch": curve}))
    assert combined.ready()
    recipes = [load_recipe(REPO / "recipes" / name) for name in ("global.yaml", "ssim.yaml", "fgfi.yaml")]
    assert combined.config()["losses"] == {k: v for r in recipes for k, v in r.losses.items()}
    third = Cell("smoke", "one-stage", "student", "combined (weights / 3)").config()["losses"]
    # global.yaml sets no weight (its default is 1.0); ssim.yaml 2.0, fgfi.yaml 0.01; other options unchanged
    assert {name: options["weight"] for name, options in third.items()} == pytest.approx(
        {"global": 1 / 3, "ssim": 2 / 3, "fgfi": 0.01 / 3}
    )
    assert {k: v for k, v in third["fgfi"].items() if k != "weight"} == {
        k: v for k, v in recipes[2].losses["fgfi"].items() if k != "weight"
    }
    assert best.config() == {**Cell("smoke", "one-stage", "student", "global").config(), "inherit": True}
    assert Cell("cpu", "one-stage", "student", "combined").config()["losses"].keys() == {"fgfi", "ssim", "logits"}


def test_a_gain_is_separated_only_beyond_both_seed_spreads():
    sys.path.insert(0, str(REPO / "benchmarks"))
    from kd_table import separated

    assert separated([5.0, 5.5, 6.0], [3.0, 3.2, 3.9])  # difference 1.8 > spreads 1.0 and 0.9
    assert not separated([5.0, 5.5, 6.0], [3.0, 3.2, 4.9])  # spread 1.9 > difference 1.2
    assert not separated([9.0], [1.0])  # one seed: no spread to compare with


def test_a_revised_loss_hashes_to_new_cells(monkeypatch):
    sys.path.insert(0, str(REPO / "benchmarks"))
    from kd_cells import Cell

    from edgekd.distill.losses import LOSSES

    cell = Cell("cpu", "one-stage", "student", "fitnet")
    stored = cell.directory()
    assert "loss_revisions" not in cell.config()  # revision 1: the stored cells keep their hashes
    monkeypatch.setattr(LOSSES["fitnet"], "revision", 2)
    assert cell.config()["loss_revisions"] == {"fitnet": 2} and cell.directory() != stored


def test_an_inheriting_recipe_is_its_own_cell():
    sys.path.insert(0, str(REPO / "benchmarks"))
    from kd_cells import Cell

    plain = Cell("cpu", "one-stage", "student", "gkd+bmfi")
    inheriting = Cell("cpu", "one-stage", "student", "gkd+bmfi (inherit)")
    assert inheriting.config() == {**plain.config(), "inherit": True}
    assert inheriting.directory() != plain.directory()


def test_last_quarter_gain_reads_the_end_of_the_curve():
    sys.path.insert(0, str(REPO / "benchmarks"))
    from convergence import last_quarter_gain

    # last quarter = 2 epochs; the line through 3.0, 3.3, 3.25 has slope (3.25 - 3.0) / 2, rising 0.25 over 2 epochs
    assert last_quarter_gain([1.0, 2.0, 3.0, 3.1, 3.2, 3.0, 3.3, 3.25]) == pytest.approx(0.25)
    assert last_quarter_gain([1.0, 5.0, 2.0, 4.0]) == pytest.approx(2.0)  # last quarter = the last epoch: 4.0 - 2.0
    noisy_plateau = [10.0 + (0.8 if i % 2 else -0.8) for i in range(40)]  # best-of would read +1.6 on any jitter
    assert abs(last_quarter_gain(noisy_plateau)) < 0.3
    assert last_quarter_gain([2.0]) == 0.0


def test_cells_start_once_what_they_need_is_finished(tmp_path, monkeypatch):
    """Students without KD start beside their teacher, KD students once it has finished, and a row chosen on
    validation as soon as the last single row it is chosen from is stored, all in one run."""
    sys.path.insert(0, str(REPO / "benchmarks"))
    import kd_cells
    import kd_table
    from kd_cells import SINGLE_ROWS, Cell
    from rich.console import Console

    monkeypatch.setattr(kd_cells, "CACHE", tmp_path / "cache")
    monkeypatch.setattr(kd_cells, "CELL_RESULTS", tmp_path / "results")
    (tmp_path / "results").mkdir()
    calls = []

    def fake_run(cell, console, need_checkpoint):  # stores what a finished cell leaves behind
        calls.append((cell.label, cell.seed, need_checkpoint))
        cell.directory().mkdir(parents=True, exist_ok=True)
        (cell.directory() / "best.pt").touch()
        (cell.directory() / "done").touch()
        row = {"AP": 1.0, "ap_per_epoch": [1.0]}
        (tmp_path / "results" / f"{cell.directory().name}.json").write_text(json.dumps(row))
        return row

    monkeypatch.setattr(kd_table, "run_cell", fake_run)
    monkeypatch.setattr(kd_table, "ProcessPoolExecutor", lambda *args, **kwargs: kd_table.InlineExecutor())
    for method in SINGLE_ROWS:  # every single row stored but one seed of fitnet
        for seed in range(3):
            if (method, seed) != ("fitnet", 2):
                fake_run(Cell("smoke", "one-stage", "student", method, seed), None, False)
    calls.clear()
    cells = [
        Cell("smoke", "one-stage", "teacher"),
        Cell("smoke", "one-stage", "student", "combined"),
        Cell("smoke", "one-stage", "student", "fitnet", 2),
        Cell("smoke", "one-stage", "student", "no KD"),
    ]
    rows = kd_table.run_cells(cells, 2, Console(quiet=True))
    assert calls == [("teacher", 0, True), ("no KD", 0, False), ("fitnet", 2, False), ("combined", 0, False)]
    assert all(row == {"AP": 1.0, "ap_per_epoch": [1.0]} for row in rows)

    calls.clear()
    later = [Cell("smoke", "one-stage", "student", "ssim", 3)]
    assert kd_table.run_cells(later, 2, Console(quiet=True), deadline=0.0) == [None]  # past the deadline: not run
    assert calls == []


def test_an_interrupted_teacher_run_is_resumed_before_its_kd_students_start(tmp_path, monkeypatch):
    """A teacher whose result is stored but whose run directory on this machine holds only an interrupted run
    (best.pt of its last completed epochs, no `done`) trains on before any KD student starts from it."""
    sys.path.insert(0, str(REPO / "benchmarks"))
    import kd_cells
    import kd_table
    from kd_cells import Cell

    monkeypatch.setattr(kd_cells, "CACHE", tmp_path / "cache")
    monkeypatch.setattr(kd_cells, "CELL_RESULTS", tmp_path / "results")
    (tmp_path / "results").mkdir()
    teacher, student = Cell("smoke", "one-stage", "teacher"), Cell("smoke", "one-stage", "student", "fitnet")
    (tmp_path / "results" / f"{teacher.directory().name}.json").write_text(json.dumps({"AP": 2.0}))
    teacher.directory().mkdir(parents=True)
    (teacher.directory() / "best.pt").touch()
    (teacher.directory() / "last.pt").touch()
    assert not kd_table.can_start(student, set())

    class Trains(Exception):
        pass

    def ensure_data(*args):  # the first step of training a cell
        raise Trains

    monkeypatch.setattr(kd_cells, "ensure_data", ensure_data)
    assert kd_cells.run_cell(teacher, need_checkpoint=False) == {"AP": 2.0}  # a result is all the table needs
    with pytest.raises(Trains):
        kd_cells.run_cell(teacher, need_checkpoint=True)
    (teacher.directory() / "done").touch()
    assert kd_cells.run_cell(teacher, need_checkpoint=True) == {"AP": 2.0}
    assert kd_table.can_start(student, set())
    assert not kd_table.can_start(student, {teacher})


def test_every_preset_pairs_models_of_the_zoo():
    sys.path.insert(0, str(REPO / "benchmarks"))
    from kd_cells import PRESETS

    from edgekd.models.zoo import ZOO

    for name, preset in PRESETS.items():
        for pair, models in preset.pairs.items():
            assert set(models) <= set(ZOO), (name, pair, models)


def test_gap_closed_only_where_the_teacher_leads_beyond_the_no_kd_seed_spread():
    sys.path.insert(0, str(REPO / "benchmarks"))
    from kd_table import summarize_pair

    def run(ap: float) -> dict:
        return {"AP": ap, "AP50": 0.0, "kitti_moderate_per_class": {}, "epoch_seconds": 1.0}

    rows = {"no KD": [run(25.0), run(25.2), run(25.4)], "global": [run(26.0), run(26.2), run(26.4)]}
    level = {row["method"]: row for row in summarize_pair({"teacher": run(25.5), "rows": rows})}
    assert level["global"]["gain"] == pytest.approx(1.0)
    assert np.isnan(level["global"]["gap_closed"])  # teacher leads by 0.3, inside the 0.4 spread of no KD
    ahead = {row["method"]: row for row in summarize_pair({"teacher": run(29.2), "rows": rows})}
    assert ahead["global"]["gap_closed"] == pytest.approx(0.25)  # 1.0 of a 4.0 gap


POOL_PARENT = """
import os, sys, time, multiprocessing
from concurrent.futures import ProcessPoolExecutor
sys.path.insert(0, sys.argv[1])
from kd_table import worker_start

if __name__ == "__main__":
    pool = ProcessPoolExecutor(1, multiprocessing.get_context("spawn"), initializer=worker_start, initargs=(1,))
    print(pool.submit(os.getpid).result(), flush=True)
    pool.submit(time.sleep, 300)
    time.sleep(300)
"""


def running(pid: int) -> bool:
    """Whether a process runs (a zombie left for a non-reaping init does not)."""
    stat = Path(f"/proc/{pid}/stat")
    if Path("/proc/self").exists():
        try:
            return stat.read_text().rsplit(")", 1)[1].split()[0] != "Z"
        except FileNotFoundError:
            return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def test_a_cell_process_ends_when_the_table_process_is_killed(tmp_path):
    import time

    script = tmp_path / "parent.py"
    script.write_text(POOL_PARENT)
    parent = subprocess.Popen(
        [sys.executable, str(script), str(REPO / "benchmarks")], stdout=subprocess.PIPE, text=True
    )
    try:
        worker = int(parent.stdout.readline())
        assert running(worker)
        parent.kill()
        parent.wait()
        deadline = time.monotonic() + 30
        while running(worker) and time.monotonic() < deadline:
            time.sleep(0.2)
        if running(worker):
            os.kill(worker, 9)
            pytest.fail("the cell process outlived the killed table process by 30 s")
    finally:
        parent.kill()
