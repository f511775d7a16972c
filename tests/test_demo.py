"""`edgekd demo`'s chain on a tiny preset: data, teacher, student without and with KD, one table."""

from __future__ import annotations

from pathlib import Path

from rich.console import Console

from edgekd.demo import DEFAULT_RECIPE, DemoPreset, demo_table, run_demo
from edgekd.distill.recipe import load_recipe, parse_recipe

TINY = DemoPreset(
    "tiny", (320, 96), (64, 160), 8, 4, "retinanet_resnet18_lite", "retinanet_mobilenet_v3_lite", 1, 1, 4, 3e-3,
    near_range=True,
)  # fmt: skip


def test_demo_chain_runs_and_a_second_run_reuses_every_unchanged_stage(tmp_path):
    console = Console(quiet=True)
    rows = run_demo(tmp_path, TINY, None, "cpu", console)
    assert [row["model"] for row in rows] == ["teacher", "student (no KD)", "student + KD (fgfi)"]
    assert rows[0]["params_m"] > rows[1]["params_m"] == rows[2]["params_m"]
    assert (tmp_path / "demo.json").is_file()
    runs = [tmp_path / name / "best.pt" for name in ("teacher_tiny", "student", "student_kd")]
    stamps = [run.stat().st_mtime_ns for run in runs]
    again = run_demo(tmp_path, TINY, None, "cpu", console)
    assert [run.stat().st_mtime_ns for run in runs] == stamps  # trained once, then reused
    assert [row["AP"] for row in again] == [row["AP"] for row in rows]
    assert demo_table(rows).row_count == 3
    changed = tmp_path / "changed.yaml"  # another KD weight: only the distilled student is retrained
    changed.write_text("name: fgfi\nlosses:\n  fgfi: {weight: 0.02, feature_norm: teacher_rms}\n")
    run_demo(tmp_path, TINY, changed, "cpu", console)
    after = [run.stat().st_mtime_ns for run in runs]
    assert after[:2] == stamps[:2] and after[2] != stamps[2]


def test_built_in_recipe_is_the_shipped_fgfi_recipe():
    shipped = load_recipe(Path(__file__).resolve().parent.parent / "recipes" / "fgfi.yaml")
    assert parse_recipe(DEFAULT_RECIPE, "built-in demo recipe").losses == shipped.losses
