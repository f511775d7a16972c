"""Cached training runs (edgekd.pipeline, used by the demo and the benchmark cells): a finished run is reused, an
interrupted one continues from its last epoch to the weights an uninterrupted run reaches."""

from __future__ import annotations

import pytest
import torch
from rich.console import Console

from edgekd.data.loader import load_dataset
from edgekd.pipeline import train_cached
from edgekd.train.trainer import Trainer, TrainOptions

MODEL = "retinanet_mobilenet_v3_lite"


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def test_an_interrupted_cached_run_continues_exactly(tiny_kitti, tmp_path, monkeypatch):
    train, val = load_dataset(tiny_kitti, "train"), load_dataset(tiny_kitti, "val")
    options = TrainOptions(epochs=2, batch_size=4, lr=3e-3, warmup_iters=2, device="cpu", quiet=True)
    console = Console(quiet=True)
    straight = train_cached(tmp_path / "straight", MODEL, train, val, (64, 160), options, console)

    original = Trainer._train_epoch

    def stop_in_second_epoch(self, epoch):
        if epoch == 1:
            raise KeyboardInterrupt
        return original(self, epoch)

    monkeypatch.setattr(Trainer, "_train_epoch", stop_in_second_epoch)
    with pytest.raises(KeyboardInterrupt):
        train_cached(tmp_path / "cell", MODEL, train, val, (64, 160), options, console)
    monkeypatch.setattr(Trainer, "_train_epoch", original)
    assert not (tmp_path / "cell" / "done").exists()
    assert torch.load(tmp_path / "cell" / "last.pt", weights_only=True)["epoch"] == 0

    resumed = train_cached(tmp_path / "cell", MODEL, train, val, (64, 160), options, console)
    assert (tmp_path / "cell" / "done").is_file()
    expected = torch.load(straight, weights_only=True)["model"]
    actual = torch.load(resumed, weights_only=True)["model"]
    assert expected.keys() == actual.keys()
    for key in expected:
        assert torch.equal(expected[key], actual[key]), key
    stamp = resumed.stat().st_mtime_ns
    assert train_cached(tmp_path / "cell", MODEL, train, val, (64, 160), options, console) == resumed
    assert resumed.stat().st_mtime_ns == stamp  # finished: reused, not retrained
