"""`edgekd train` end to end on tiny synthetic data: the loss falls, `edgekd eval` reads the checkpoint,
and `--resume` after an interruption gives exactly the weights of an uninterrupted run."""

from __future__ import annotations

import csv
import json

import pytest
import torch
from typer.testing import CliRunner

from edgekd.cli import app
from edgekd.train.trainer import Trainer

runner = CliRunner()
MODEL = "retinanet_mobilenet_v3_lite"


def _train_args(data, out, epochs):
    return ["train", MODEL, "--data", str(data), "-o", str(out), "--img-size", "160x64", "--epochs", str(epochs),
            "--batch", "4", "--lr", "0.003", "--device", "cpu", "--quiet"]  # fmt: skip


def test_train_loss_falls_and_eval_reads_the_checkpoint(tiny_kitti, tmp_path):
    out = tmp_path / "run"
    result = runner.invoke(app, _train_args(tiny_kitti, out, 4))
    assert result.exit_code == 0, result.output
    for name in ("best.pt", "last.pt", "metrics.csv", "metrics.png"):
        assert (out / name).is_file()
    rows = list(csv.DictReader((out / "metrics.csv").open()))
    assert len(rows) == 4
    assert float(rows[-1]["loss"]) < float(rows[0]["loss"])
    metrics = tmp_path / "metrics.json"
    result = runner.invoke(app, ["eval", str(out / "best.pt"), "--data", str(tiny_kitti), "--json", str(metrics)])
    assert result.exit_code == 0, result.output
    payload = json.loads(metrics.read_text())
    assert set(payload["coco"]) >= {"AP", "AP50", "AP75", "APs", "APm", "APl"}
    assert set(payload["kitti"]) == {"Car", "Pedestrian", "Cyclist"}


def test_resume_continues_exactly(tiny_kitti, tmp_path, monkeypatch):
    straight, interrupted = tmp_path / "straight", tmp_path / "interrupted"
    assert runner.invoke(app, _train_args(tiny_kitti, straight, 2)).exit_code == 0

    original = Trainer._train_epoch

    def stop_in_second_epoch(self, epoch):
        if epoch == 1:
            raise KeyboardInterrupt
        return original(self, epoch)

    monkeypatch.setattr(Trainer, "_train_epoch", stop_in_second_epoch)
    runner.invoke(app, _train_args(tiny_kitti, interrupted, 2))
    monkeypatch.setattr(Trainer, "_train_epoch", original)
    assert torch.load(interrupted / "last.pt", weights_only=True)["epoch"] == 0

    result = runner.invoke(app, [*_train_args(tiny_kitti, interrupted, 2), "--resume"])
    assert result.exit_code == 0, result.output
    expected = torch.load(straight / "last.pt", weights_only=True)["model"]
    actual = torch.load(interrupted / "last.pt", weights_only=True)["model"]
    assert expected.keys() == actual.keys()
    for key in expected:
        assert torch.equal(expected[key], actual[key]), key


def test_existing_run_is_not_overwritten_and_bad_options_fail_cleanly(tiny_kitti, tmp_path):
    out = tmp_path / "run"
    out.mkdir()
    (out / "last.pt").write_bytes(b"earlier run")
    result = runner.invoke(app, _train_args(tiny_kitti, out, 1))
    assert result.exit_code != 0 and "already holds a run" in str(result.exception)
    assert (out / "last.pt").read_bytes() == b"earlier run"
    bad_size = [*_train_args(tiny_kitti, tmp_path / "other", 1)]
    bad_size[bad_size.index("160x64")] = "160by64"
    result = runner.invoke(app, bad_size)
    assert "expected WIDTHxHEIGHT" in str(result.exception)


@pytest.mark.parametrize("model", ["fcos_mobilenet_v3_lite", "fasterrcnn_mobilenet_v3_lite"])
def test_other_families_train_one_epoch(tiny_kitti, tmp_path, model):
    args = _train_args(tiny_kitti, tmp_path / model, 1)
    args[1] = model
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
