"""Data-parallel `edgekd distill` on CPU (gloo, 2 ranks): it trains what one process trains on the same global
batch, only rank 0 writes files, and a run stopped in one process resumes under torchrun on two and ends where the
uninterrupted run ends.

BatchNorm: torch's SyncBatchNorm is CUDA-only, so on CPU the trainer uses edgekd's CPUSyncBatchNorm; the real
student (MobileNetV3 backbone with trainable BN) is used as is. The recipe uses KD losses whose value is a mean over
images (FitNet, SSIM) and RetinaNet, whose detection losses are normalised per image, so the mean of the two
ranks' losses is the loss of the global batch.

Tolerances: the loss curve must match to 1e-4 (relative). Weights cannot match to float precision after a few
steps even between two single-process runs that differ only in their number of CPU threads: rounding differences
flip ReLU/min-max kinks and AdamW scales each update by the gradient's own magnitude, so near-zero gradients of
either sign make learning-rate-sized steps. Measured here: a 1- vs 2-thread run drifts by as much as two ranks do.
So the weights are compared as a fraction of how far the second epoch moved them, and the gradient of the first
step (DDP's average over ranks, before clipping) must equal the single process's to 1e-4.
"""

from __future__ import annotations

import csv
import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.multiprocessing as mp
import yaml
from typer.testing import CliRunner

from edgekd.cli import app
from edgekd.models.checkpoint import atomic_torch_save, detector_payload
from edgekd.models.detector import DetectorConfig
from edgekd.models.zoo import build_detector
from edgekd.train.trainer import Trainer

REPO = Path(__file__).resolve().parents[1]
CLASSES = ("Car", "Pedestrian", "Cyclist")
MODEL = "retinanet_mobilenet_v3_lite"
DRIFT_TOLERANCE = 0.02  # |W_parallel - W_single| / |W_single - W_epoch1|


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """8 training and 4 validation images at 192x64, a teacher checkpoint, a 2-epoch recipe (global batch 4),
    and two single-process runs of it: `straight` (2 epochs) and `stopped` (interrupted in epoch 2)."""
    from edgekd.data.synth import render_dataset

    root = tmp_path_factory.mktemp("ddp")
    render_dataset(root / "data", 8, 4, size=(192, 64), seed=11, workers=1, progress=False)
    torch.manual_seed(1)
    teacher = root / "teacher.pt"
    atomic_torch_save(detector_payload(build_detector(DetectorConfig(MODEL, CLASSES, (64, 96)))), teacher)
    recipe = root / "recipe.yaml"
    schedule = {"epochs": 2, "batch": 4, "lr": 0.003, "warmup_iters": 1}
    recipe.write_text(yaml.safe_dump({"losses": {"fitnet": {}, "ssim": {}}, "schedule": schedule}))
    setup = {"root": root, "data": root / "data", "teacher": teacher, "recipe": recipe}
    original = Trainer._train_epoch

    def stop_in_second_epoch(self, epoch):
        if epoch == 1:
            raise KeyboardInterrupt
        return original(self, epoch)

    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # like each rank; tiny convolutions gain nothing from more threads
    try:
        with pytest.MonkeyPatch.context() as patch:
            patch.setattr(torch.nn.utils, "clip_grad_norm_", _first_gradient_recorder(root / "gradient.pt"))
            result = CliRunner().invoke(app, _args(setup, root / "straight"))
        assert result.exit_code == 0, result.output
        with pytest.MonkeyPatch.context() as patch:
            patch.setattr(Trainer, "_train_epoch", stop_in_second_epoch)
            CliRunner().invoke(app, _args(setup, root / "stopped"))
    finally:
        torch.set_num_threads(threads)
    epoch_one = torch.load(root / "stopped" / "last.pt", weights_only=True)
    assert epoch_one["epoch"] == 0
    return {**setup, "straight": root / "straight", "stopped": root / "stopped", "epoch_one": epoch_one}


def _args(setup: dict, out: Path) -> list[str]:
    return ["distill", "--teacher", str(setup["teacher"]), "--student", MODEL, "--recipe", str(setup["recipe"]),
            "--data", str(setup["data"]), "-o", str(out), "--device", "cpu", "--quiet"]  # fmt: skip


def _free_port() -> int:
    with socket.socket() as handle:
        handle.bind(("127.0.0.1", 0))
        return handle.getsockname()[1]


def _first_gradient_recorder(path: Path):
    """A stand-in for clip_grad_norm_ that saves the gradients it is first given (the first step's, as the
    optimizer will see them before clipping), then clips as usual."""
    clip = torch.nn.utils.clip_grad_norm_

    def recorder(parameters, *args, **kwargs):
        parameters = list(parameters)
        if not path.exists():
            torch.save(torch.cat([p.grad.flatten() for p in parameters if p.grad is not None]), path)
        return clip(parameters, *args, **kwargs)

    return recorder


def _rank_main(rank: int, world: int, port: int, args: list[str], logs: str) -> None:
    """One rank, started as torchrun would (RANK/WORLD_SIZE/LOCAL_RANK), recording which rank writes files and
    the first step's gradient."""
    os.environ.update(RANK=str(rank), WORLD_SIZE=str(world), LOCAL_RANK=str(rank))
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(1)
    torch.nn.utils.clip_grad_norm_ = _first_gradient_recorder(Path(logs) / f"gradient{rank}.pt")
    write_log = Path(logs) / "writes.log"
    import edgekd.train.trainer as trainer_module

    def recording(write):
        def wrapper(*args):
            with open(write_log, "a") as log:
                log.write("".join(f"{rank} {arg.name}\n" for arg in args if isinstance(arg, Path)))
            return write(*args)

        return wrapper

    for name in ("atomic_torch_save", "write_metrics_csv", "plot_history"):
        setattr(trainer_module, name, recording(getattr(trainer_module, name)))
    result = CliRunner().invoke(app, args)
    if result.exit_code != 0:
        raise RuntimeError(f"rank {rank} failed: {result.output} {result.exception!r}")


def _losses(run: Path) -> list[float]:
    return [float(row["loss"]) for row in csv.DictReader((run / "metrics.csv").open())]


def _trained_vector(payload: dict) -> torch.Tensor:
    """Every float tensor the run trains (student and KD adaptation layers), as one vector."""
    states = (payload["model"], payload["objective"]["losses"])
    return torch.cat([value.flatten() for state in states for value in state.values() if value.is_floating_point()])


def _assert_same_training(setup: dict, actual: Path) -> None:
    expected = torch.load(setup["straight"] / "last.pt", weights_only=True)
    got = torch.load(actual / "last.pt", weights_only=True)
    assert expected["epoch"] == got["epoch"] == 1
    assert expected["model"].keys() == got["model"].keys()
    for key, value in expected["model"].items():
        if not value.is_floating_point():
            assert torch.equal(value, got["model"][key]), key  # num_batches_tracked: same number of BN steps
    single, parallel, start = (_trained_vector(p) for p in (expected, got, setup["epoch_one"]))
    drift = float((parallel - single).norm() / (single - start).norm())
    assert drift < DRIFT_TOLERANCE, f"weights differ by {drift:.3f} of the second epoch's update"
    columns = [key for key in expected["history"][0] if key.startswith(("loss", "fitnet/", "ssim/"))]
    for row_single, row_parallel in zip(expected["history"], got["history"], strict=True):
        for key in columns:
            assert row_parallel[key] == pytest.approx(row_single[key], rel=1e-3), key
        assert row_parallel["AP"] == pytest.approx(row_single["AP"], abs=0.05)
    assert _losses(actual) == pytest.approx(_losses(setup["straight"]), rel=1e-4)


def test_two_ranks_train_what_one_process_trains_and_only_rank_zero_writes(setup, tmp_path):
    parallel, logs = tmp_path / "parallel", tmp_path / "logs"
    logs.mkdir()
    mp.start_processes(
        _rank_main, args=(2, _free_port(), _args(setup, parallel), str(logs)), nprocs=2, start_method="spawn"
    )
    single = torch.load(setup["root"] / "gradient.pt", weights_only=True)
    rank0, rank1 = (torch.load(logs / f"gradient{r}.pt", weights_only=True) for r in range(2))
    assert torch.equal(rank0, rank1)  # DDP leaves every rank with the same averaged gradient
    assert float((rank0 - single).norm() / single.norm()) < 1e-4
    _assert_same_training(setup, parallel)
    writes = (logs / "writes.log").read_text().split("\n")[:-1]
    assert {line.split()[0] for line in writes} == {"0"}
    assert {line.split()[1] for line in writes} == {"last.pt", "best.pt", "metrics.csv", "metrics.png"}
    written = sorted(path.name for path in parallel.iterdir() if path.name != "tb")  # tb/: TensorBoard, if installed
    assert written == ["best.pt", "last.pt", "metrics.csv", "metrics.png"]


def test_run_stopped_in_one_process_resumes_on_two_under_torchrun(setup, tmp_path):
    resumed = tmp_path / "resumed"
    shutil.copytree(setup["stopped"], resumed)
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node=2"]
    environment = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    command = [*torchrun, "-m", "edgekd", *_args(setup, resumed), "--resume"]
    process = subprocess.run(command, env=environment, capture_output=True, text=True, timeout=300, check=False)
    assert process.returncode == 0, process.stdout + process.stderr
    assert process.stdout.count("best student checkpoint") == 1  # printed by rank 0 only
    _assert_same_training(setup, resumed)
