"""TensorBoard logging (RUN_DIR/tb/): the event files hold the values of metrics.csv, per-step losses and a
predictions sheet, read back with tensorboard's own EventAccumulator; a resumed run appends without duplicates;
without the tensorboard package nothing is written and nothing is said."""

from __future__ import annotations

import csv
import sys

import pytest
from typer.testing import CliRunner

from edgekd.cli import app
from edgekd.train.tensorboard import BOARD_DIR, TensorBoardLog

MODEL = "retinanet_mobilenet_v3_lite"


def _accumulator(folder):
    event_accumulator = pytest.importorskip("tensorboard.backend.event_processing.event_accumulator")
    accumulator = event_accumulator.EventAccumulator(str(folder), size_guidance={"scalars": 0, "images": 0})
    accumulator.Reload()
    return accumulator


def test_training_writes_the_metrics_csv_values_losses_and_a_predictions_sheet(tiny_kitti, tmp_path):
    pytest.importorskip("tensorboard")
    out = tmp_path / "run"
    args = ["train", MODEL, "--data", tiny_kitti, "-o", out, "--img-size", "160x64", "--epochs", "1", "--batch", "4"]
    result = CliRunner().invoke(app, [str(a) for a in args] + ["--device", "cpu", "--quiet"])
    assert result.exit_code == 0, result.output
    (row,) = list(csv.DictReader((out / "metrics.csv").open()))
    board = _accumulator(out / BOARD_DIR)
    tags = board.Tags()
    steps = 3  # 12 training images, batch 4
    pairs = {"loss/loss": "loss", "loss/loss_cls": "loss_cls", "train/lr": "lr", "val/AP": "AP"}
    pairs["val/kitti_moderate"] = "kitti_moderate"
    for tag, column in pairs.items():
        (event,) = board.Scalars(tag)
        assert event.step == steps
        assert event.value == pytest.approx(float(row[column]), rel=1e-6, abs=1e-7), tag
    (speed,) = board.Scalars("train/images_per_second")
    assert speed.value == pytest.approx(12 / float(row["train_seconds"]), rel=1e-3)
    assert [event.step for event in board.Scalars("step/loss")] == [1, 2, 3]
    assert "val/predictions" in tags["images"]
    (image,) = board.Images("val/predictions")
    assert image.step == steps and image.width > 0 and image.height > 0


def test_a_resumed_log_appends_and_drops_what_a_killed_run_wrote_after_its_last_epoch(tmp_path):
    pytest.importorskip("tensorboard")
    first = TensorBoardLog.open(tmp_path, 0)
    for step in (1, 2, 3):  # epoch 1 (2 steps) finished, then killed during epoch 2
        first.step({"loss": 10.0 + step}, step)
    first.epoch({"epoch": 1, "loss": 11.5}, 4.0, 2)
    first.close()
    resumed = TensorBoardLog.open(tmp_path, 2)
    for step in (3, 4):
        resumed.step({"loss": 20.0 + step}, step)
    resumed.epoch({"epoch": 2, "loss": 23.5}, 4.0, 4)
    resumed.close()
    board = _accumulator(tmp_path / BOARD_DIR)
    assert [(e.step, e.value) for e in board.Scalars("step/loss")] == [(1, 11.0), (2, 12.0), (3, 23.0), (4, 24.0)]
    assert [(e.step, e.value) for e in board.Scalars("loss/loss")] == [(2, 11.5), (4, 23.5)]


def test_without_tensorboard_nothing_is_written_and_nothing_said(tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", None)  # `import` of it now raises ImportError
    log = TensorBoardLog.open(tmp_path, 0)
    assert log.writer is None
    log.step({"loss": 1.0}, 1)
    log.epoch({"epoch": 1, "loss": 1.0, "AP": 0.0}, 1.0, 1)
    log.close()
    assert not (tmp_path / BOARD_DIR).exists()
    captured = capsys.readouterr()
    assert captured.out == captured.err == ""
