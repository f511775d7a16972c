"""Building blocks shared by `edgekd demo` and the benchmark scripts: cached synthetic data, cached training
runs and one evaluation row per checkpoint."""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path

import torch
from rich.console import Console

from edgekd.bench.timing import summarize_times, time_calls
from edgekd.data.records import Dataset
from edgekd.data.synth import render_dataset
from edgekd.data.synth_config import SynthConfig
from edgekd.distill.recipe import Recipe
from edgekd.distill.run import build_distill_trainer
from edgekd.evaluate import evaluate_detections
from edgekd.models.checkpoint import load_detector
from edgekd.models.complexity import count_parameters, gflops
from edgekd.models.detector import Detector, DetectorConfig
from edgekd.models.inference import predict_dataset
from edgekd.models.zoo import build_detector
from edgekd.train.objective import DetectionObjective
from edgekd.train.trainer import Trainer, TrainOptions, summarize


def ensure_synthetic(
    root: Path,
    size: tuple[int, int],
    n_train: int,
    n_val: int,
    seed: int,
    console: Console,
    config: SynthConfig | None = None,
    workers: int = 2,
) -> None:
    """Render the synthetic set into `root` unless it already holds exactly this one."""
    config = config or SynthConfig()
    marker = root / "edgekd_synth.json"
    wanted = {"size": list(size), "n_train": n_train, "n_val": n_val, "seed": seed, "config": asdict(config)}
    wanted = json.loads(json.dumps(wanted))  # tuples -> lists, as read back
    if marker.is_file() and json.loads(marker.read_text()) == wanted:
        console.print(f"[dim]reusing synthetic data in {root}[/]")
        return
    shutil.rmtree(root, ignore_errors=True)
    console.print(f"rendering {n_train}+{n_val} synthetic driving scenes at {size[0]}x{size[1]} into {root}")
    render_dataset(root, n_train, n_val, size, seed, workers, config, progress=not console.quiet)
    marker.write_text(json.dumps(wanted))


def _cached_run(run_dir: Path, reuse: bool, console: Console, title: str, make_trainer: Callable[[], Trainer]) -> Path:
    """Run the trainer into run_dir unless `reuse` and an earlier run there finished; returns best.pt."""
    best = run_dir / "best.pt"
    if reuse and best.is_file() and (run_dir / "done").is_file():
        console.print(f"[dim]reusing {best}[/]")
        return best
    shutil.rmtree(run_dir, ignore_errors=True)
    console.rule(title)
    make_trainer().fit()
    (run_dir / "done").touch()
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


def checkpoint_row(label: str, checkpoint: Path, val: Dataset, device: str) -> dict:
    """Params, GFLOPs, COCO + KITTI metrics on `val` and CPU latency of a checkpoint."""
    detector, payload = load_detector(checkpoint, device)
    results = evaluate_detections(val, predict_dataset(detector, val, device))
    return {
        "model": label,
        "name": detector.config.name,
        "params_m": count_parameters(detector) / 1e6,
        "gflops": gflops(detector),
        **summarize(results),
        "kitti_moderate_per_class": {c: v["moderate"] for c, v in results.get("kitti", {}).items()},
        "results": results,
        "cpu_latency_ms": cpu_latency_ms(detector),
    }
