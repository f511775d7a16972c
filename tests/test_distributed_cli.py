"""The scale-out options of `edgekd train` / `edgekd distill` (--workers, --amp, --compile, --gpus) reach the
trainer or fail with a message naming the option; `--gpus N` relaunches the same command line under torchrun."""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch
import yaml
from typer.testing import CliRunner

from edgekd.cli import app
from edgekd.errors import EdgeKDError
from edgekd.models.checkpoint import atomic_torch_save, detector_payload
from edgekd.models.detector import DetectorConfig
from edgekd.models.zoo import build_detector
from edgekd.train import distributed
from edgekd.train.acceleration import compile_backbone
from edgekd.train.trainer import Trainer

runner = CliRunner()
MODEL = "retinanet_mobilenet_v3_lite"
CLASSES = ("Car", "Pedestrian", "Cyclist")


def _train_args(data, out):
    return ["train", MODEL, "--data", str(data), "-o", str(out), "--img-size", "160x64", "--epochs", "1",
            "--batch", "4", "--device", "cpu", "--quiet"]  # fmt: skip


def _distill_args(tmp_path, data, out):
    teacher, recipe = tmp_path / "teacher.pt", tmp_path / "recipe.yaml"
    atomic_torch_save(detector_payload(build_detector(DetectorConfig(MODEL, CLASSES, (64, 160)))), teacher)
    recipe.write_text(yaml.safe_dump({"losses": {"fitnet": {}}, "schedule": {"epochs": 1, "batch": 4}}))
    return ["distill", "--teacher", str(teacher), "--student", MODEL, "--recipe", str(recipe), "--data", str(data),
            "-o", str(out), "--device", "cpu", "--quiet"]  # fmt: skip


@pytest.fixture
def built_trainers(monkeypatch):
    """Trainers the command built; fit() only records them (no training)."""
    trainers = []
    monkeypatch.setattr(Trainer, "fit", lambda self: trainers.append(self) or [])
    return trainers


@pytest.mark.parametrize("command", ["train", "distill"])
def test_speed_options_reach_the_trainer(tiny_kitti, tmp_path, built_trainers, command):
    out = tmp_path / "run"
    args = _train_args(tiny_kitti, out) if command == "train" else _distill_args(tmp_path, tiny_kitti, out)
    result = runner.invoke(app, [*args, "--workers", "2", "--amp", "bf16", "--compile"])
    assert result.exit_code == 0, result.output
    (trainer,) = built_trainers
    assert (trainer.options.workers, trainer.options.amp, trainer.options.compile) == (2, "bf16", True)
    assert trainer.amp == "bf16"
    assert trainer.train_loader.num_workers == 2 and trainer.train_loader.persistent_workers
    assert trainer.detector.backbone._compiled_call_impl is not None  # compiled lazily, on the first forward
    assert trainer.model is trainer.objective  # one process: no DDP wrapper


def test_defaults_keep_single_process_loading_and_no_amp_on_cpu(tiny_kitti, tmp_path, built_trainers):
    assert runner.invoke(app, _train_args(tiny_kitti, tmp_path / "run")).exit_code == 0
    (trainer,) = built_trainers
    assert trainer.amp == "off" and trainer.train_loader.num_workers == 0
    assert trainer.detector.backbone._compiled_call_impl is None


def test_bad_speed_options_fail_before_the_run_folder_exists(tiny_kitti, tmp_path, built_trainers):
    out = tmp_path / "run"
    result = runner.invoke(app, [*_train_args(tiny_kitti, out), "--amp", "fp16"])
    assert isinstance(result.exception, EdgeKDError) and "--amp fp16 needs a CUDA device" in str(result.exception)
    result = runner.invoke(app, [*_train_args(tiny_kitti, out), "--amp", "fp8"])
    assert result.exit_code == 2 and "fp8" in result.output  # typer lists the choices
    assert not out.exists() and not built_trainers


def test_gpus_needs_that_many_gpus_and_no_torchrun_around_it(tiny_kitti, tmp_path, monkeypatch):
    args = [*_train_args(tiny_kitti, tmp_path / "run"), "--gpus", "2"]
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    result = runner.invoke(app, [arg for arg in args if arg not in ("--device", "cpu")])
    assert "--gpus 2: only 1 CUDA device(s) visible" in str(result.exception)
    result = runner.invoke(app, args)
    assert "--gpus 2 trains on cuda:0..1; leave out --device cpu" in str(result.exception)
    monkeypatch.setenv("RANK", "0")
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("LOCAL_RANK", "0")
    result = runner.invoke(app, [arg for arg in args if arg not in ("--device", "cpu")])
    assert "--gpus starts torchrun itself" in str(result.exception)


def test_gpus_relaunches_the_command_line_under_torchrun(tiny_kitti, tmp_path, monkeypatch):
    args = [arg for arg in _train_args(tiny_kitti, tmp_path / "run") if arg not in ("--device", "cpu")]
    launched = []
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 4)
    monkeypatch.setattr(subprocess, "run", lambda command, check: launched.append(command) or _Finished(3))
    monkeypatch.setattr(sys, "argv", ["edgekd", *args, "--gpus=4"])
    result = runner.invoke(app, [*args, "--gpus=4"])
    assert result.exit_code == 3  # torchrun's exit status
    assert launched == [[sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node=4",
                         "-m", "edgekd", *args]]  # fmt: skip
    assert distributed.torchrun_command(2, ["distill", "--gpus", "2", "--quiet"])[-2:] == ["distill", "--quiet"]


class _Finished:
    def __init__(self, returncode: int) -> None:
        self.returncode = returncode


def test_rank_devices_under_torchrun(monkeypatch):
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    ranks = distributed.DistEnv(rank=3, world_size=4, local_rank=1)
    assert distributed.rank_device("cuda", ranks) == "cuda:1"
    assert distributed.rank_device("cpu", ranks) == "cpu"
    assert distributed.rank_device("cuda:1", distributed.DistEnv()) == "cuda:1"  # one process: as asked
    with pytest.raises(EdgeKDError, match="under torchrun each rank uses cuda:LOCAL_RANK"):
        distributed.rank_device("cuda:0", ranks)
    with pytest.raises(EdgeKDError, match="LOCAL_RANK 2 has no GPU: 2 visible"):
        distributed.rank_device("cuda", distributed.DistEnv(rank=2, world_size=4, local_rank=2))


@pytest.mark.skipif(
    not torch.cuda.is_available(),
    reason="torch.compile on CPU takes over 15 s for this backbone even with backend='eager' (measured on a 2-core "
    "machine), too slow for the unit suite; runs where CUDA is visible",
)
def test_compiled_backbone_computes_what_the_eager_one_does():
    torch.manual_seed(0)
    detector = build_detector(DetectorConfig(MODEL, CLASSES, (64, 160))).cuda().eval()
    images = torch.rand(2, 3, 64, 160, device="cuda") * 255
    with torch.no_grad():
        eager = detector.features(detector.preprocess(images))
        compile_backbone(detector)
        compiled = detector.features(detector.preprocess(images))
    for a, b in zip(eager, compiled, strict=True):
        assert torch.allclose(a, b, atol=1e-3, rtol=1e-3)
