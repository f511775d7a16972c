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


def test_demo_chain_runs_and_reuses_the_cached_teacher(tmp_path):
    console = Console(quiet=True)
    rows = run_demo(tmp_path, TINY, None, "cpu", console)
    assert [row["model"] for row in rows] == ["teacher", "student (no KD)", "student + KD (fgfi)"]
    assert rows[0]["params_m"] > rows[1]["params_m"] == rows[2]["params_m"]
    assert (tmp_path / "demo.json").is_file()
    teacher = tmp_path / "teacher_tiny" / "best.pt"
    stamp = teacher.stat().st_mtime_ns
    run_demo(tmp_path, TINY, None, "cpu", console)
    assert teacher.stat().st_mtime_ns == stamp  # trained once, then reused
    assert demo_table(rows).row_count == 3


def test_built_in_recipe_is_the_shipped_fgfi_recipe():
    shipped = load_recipe(Path(__file__).resolve().parent.parent / "recipes" / "fgfi.yaml")
    assert parse_recipe(DEFAULT_RECIPE, "built-in demo recipe").losses == shipped.losses
