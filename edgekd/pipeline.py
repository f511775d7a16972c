"""Building blocks shared by `edgekd demo` and the benchmark scripts: cached synthetic data, cached training
runs (reused only when their configuration is unchanged) and one evaluation row per checkpoint."""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from rich.console import Console

from edgekd.atomic import atomic_write_text
from edgekd.bench.timing import summarize_times, time_calls
from edgekd.data.records import Dataset
from edgekd.data.synth import render_dataset
from edgekd.data.synth_config import SynthConfig
from edgekd.distill.recipe import Recipe
from edgekd.distill.run import build_distill_trainer
from edgekd.errors import EdgeKDError
from edgekd.evaluate import EvalResult, evaluate_detections
from edgekd.models.checkpoint import read_checkpoint
from edgekd.models.detector import Detector, DetectorConfig
from edgekd.models.zoo import build_detector
from edgekd.runtime import predict_dataset
from edgekd.runtime.metadata import file_sha256
from edgekd.runtime.torch_runner import TorchRunner
from edgekd.train.objective import DetectionObjective
from edgekd.train.trainer import Trainer, TrainOptions


def ensure_synthetic(
    root: Path,
    size: tuple[int, int],
    n_train: int,
    n_val: int,
    seed: int,
    console: Console,
    config: SynthConfig | None = None,
    workers: int = 2,
    n_test: int = 0,
) -> None:
    """Render the synthetic set into `root` unless it already holds exactly this one."""
    config = config or SynthConfig()
    marker = root / "edgekd_synth.json"
    wanted = {"size": list(size), "n_train": n_train, "n_val": n_val, "seed": seed, "config": asdict(config)}
    if n_test:  # only when asked for, so the sets rendered before test splits existed are still reused
        wanted["n_test"] = n_test
    wanted = json.loads(json.dumps(wanted))  # tuples -> lists, as read back
    if marker.is_file() and json.loads(marker.read_text()) == wanted:
        console.print(f"[dim]reusing synthetic data in {root}[/]")
        return
    shutil.rmtree(root, ignore_errors=True)
    console.print(f"rendering {n_train}+{n_val}+{n_test} synthetic driving scenes at {size[0]}x{size[1]} into {root}")
    render_dataset(root, n_train, n_val, size, seed, workers, config, progress=not console.quiet, n_test=n_test)
    atomic_write_text(marker, json.dumps(wanted))


def run_key(trainer: Trainer) -> dict:
    """What a finished run's result depends on, as stored in its `done` file: the trainer's run fingerprint (model,
    input size, classes, data, schedule, teacher path, KD losses), the device and the teacher file's hash."""
    teacher = trainer.payload_extra.get("teacher")
    return {
        "run": trainer.fingerprint.to_dict(),
        "device": trainer.options.device,
        "teacher_sha256": file_sha256(teacher) if teacher else None,
    }


def _stored_run(checkpoint: Path) -> dict | None:
    """The run fingerprint a checkpoint of the run folder records; None when it is missing or unreadable."""
    try:
        return read_checkpoint(checkpoint).get("run")
    except EdgeKDError:
        return None


def finished_run(run_dir: Path) -> bool:
    """Whether run_dir holds a run that trained to its last epoch (best.pt and the `done` marker written after
    it), whatever its configuration; an interrupted run has a best.pt of its last completed epochs but no `done`."""
    return (run_dir / "best.pt").is_file() and (run_dir / "done").is_file()


def _finished_unchanged(run_dir: Path, key: dict) -> bool:
    """True when run_dir holds a finished run (`finished_run`) of exactly this configuration: `done` records
    `key`; a `done` left empty by an older edgekd is checked against last.pt's run fingerprint."""
    done = run_dir / "done"
    if not finished_run(run_dir):
        return False
    text = done.read_text().strip()
    if not text:
        return _stored_run(run_dir / "last.pt") == key["run"]
    try:
        return json.loads(text) == key
    except json.JSONDecodeError:
        return False


def _cached_run(run_dir: Path, reuse: bool, console: Console, title: str, make_trainer: Callable[[], Trainer]) -> Path:
    """Run the trainer into run_dir unless `reuse` and run_dir holds a finished run of the same configuration
    (`run_key`); returns best.pt. With `reuse`, an interrupted run of the same configuration (last.pt without
    `done`) continues from its last epoch, exactly; a run of another configuration is replaced."""
    best = run_dir / "best.pt"
    trainer = make_trainer()
    key = run_key(trainer)
    if reuse and _finished_unchanged(run_dir, key):
        console.print(f"[dim]reusing {best} (finished, same configuration)[/]")
        return best
    last = run_dir / "last.pt"
    interrupted = reuse and not (run_dir / "done").exists() and last.is_file() and _stored_run(last) == key["run"]
    if not interrupted:
        shutil.rmtree(run_dir, ignore_errors=True)
    console.rule(title)
    if interrupted:
        trainer.resume()
    trainer.fit()
    atomic_write_text(run_dir / "done", json.dumps(key, sort_keys=True) + "\n")
    return best


def train_cached(
    run_dir: Path,
    model: str,
    train: Dataset,
    val: Dataset,
    input_size: tuple[int, int],
    options: TrainOptions,
    console: Console,
    reuse: bool = True,
) -> Path:
    """Train `model` into run_dir (or reuse a finished run); returns best.pt."""

    def make_trainer() -> Trainer:
        torch.manual_seed(options.seed)
        detector = build_detector(DetectorConfig(model, train.classes, input_size))
        return Trainer(DetectionObjective(detector), train, val, run_dir, options)

    return _cached_run(run_dir, reuse, console, f"train {model}", make_trainer)


def distill_cached(
    run_dir: Path,
    teacher: Path,
    student: str,
    recipe: Recipe,
    train: Dataset,
    val: Dataset,
    options: TrainOptions,
    console: Console,
    reuse: bool = True,
) -> Path:
    """Distil `student` into run_dir (or reuse a finished run); returns best.pt."""
    return _cached_run(
        run_dir,
        reuse,
        console,
        f"distil {student} with {recipe.name}",
        lambda: build_distill_trainer(teacher, student, recipe, train, val, run_dir, options, console),
    )


def cpu_latency_ms(detector: Detector, iters: int = 20) -> float:
    """Median ms of one image through normalisation, the network and NMS on the CPU (batch 1)."""
    detector = detector.to("cpu").eval()
    height, width = detector.config.input_size
    images = torch.rand(1, 3, height, width) * 255
    return summarize_times(time_calls(lambda: detector.predict(images), warmup=3, iters=iters))["p50_ms"]


@dataclass
class CheckpointRow:
    """One checkpoint's row of the demo and KD tables: size, COCO + KITTI metrics on the validation split and CPU
    latency. `to_dict` keeps the stored layout, where the row's label is "model" and the zoo name "name"."""

    label: str
    model_name: str
    params_m: float
    gflops: float
    summary: dict[str, float]  # AP, AP50 and (KITTI data) kitti_moderate
    kitti_moderate_per_class: dict[str, float]
    result: EvalResult
    cpu_latency_ms: float

    def to_dict(self) -> dict:
        return {
            "model": self.label,
            "name": self.model_name,
            "params_m": self.params_m,
            "gflops": self.gflops,
            **self.summary,
            "kitti_moderate_per_class": self.kitti_moderate_per_class,
            "results": self.result.to_dict(),
            "cpu_latency_ms": self.cpu_latency_ms,
        }


def checkpoint_row(label: str, checkpoint: Path, val: Dataset, device: str) -> CheckpointRow:
    """Params, GFLOPs, COCO + KITTI metrics on `val` (through the PyTorch runner, as `edgekd eval` runs it) and
    CPU latency of a checkpoint."""
    with TorchRunner.open(checkpoint, device) as runner:
        result = evaluate_detections(val, predict_dataset(runner, val, batch=8))
        return CheckpointRow(
            label=label,
            model_name=runner.info.model,
            params_m=runner.info.params / 1e6,
            gflops=runner.info.gflops,
            summary=result.summary(),
            kitti_moderate_per_class={name: ap.r40.moderate for name, ap in (result.kitti or {}).items()},
            result=result,
            cpu_latency_ms=cpu_latency_ms(runner.detector),
        )
