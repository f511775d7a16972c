"""The training loop: warm-up + cosine, AMP on CUDA, rich progress, per-epoch validation, atomic checkpoints,
metrics.csv + plot, and exact `--resume` from last.pt.

Exact resume holds because nothing random is carried between epochs: the data order, the augmentation and
torch's global RNG are all re-seeded from (seed, epoch) at the start of every epoch.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from edgekd.data.records import Dataset
from edgekd.data.torch_dataset import DetectionDataset, make_loader
from edgekd.data.transforms import AugmentConfig
from edgekd.errors import EdgeKDError
from edgekd.evaluate import evaluate_detections
from edgekd.models.checkpoint import atomic_torch_save, detector_payload, read_checkpoint
from edgekd.models.inference import predict_dataset
from edgekd.train.history import plot_history, write_metrics_csv
from edgekd.train.objective import DetectionObjective, StepInfo
from edgekd.train.schedule import warmup_cosine


@dataclass
class TrainOptions:
    """Schedule and run options of `edgekd train` / `edgekd distill`."""

    epochs: int = 12
    batch_size: int = 8
    lr: float = 2e-3
    weight_decay: float = 0.05
    warmup_iters: int = 300
    grad_clip: float = 10.0
    seed: int = 0
    device: str = "cpu"
    amp: bool = True
    quiet: bool = False


def summarize(results: dict) -> dict[str, float]:
    """The headline numbers of an evaluation: COCO AP, AP50 and mean KITTI Moderate AP|R40 over classes."""
    summary = {"AP": results["coco"]["AP"], "AP50": results["coco"]["AP50"]}
    if results.get("kitti"):
        moderate = [per_class["moderate"] for per_class in results["kitti"].values()]
        summary["kitti_moderate"] = sum(moderate) / len(moderate)
    return summary


def _autocast(device: torch.device, enabled: bool) -> torch.autocast:
    dtype = torch.bfloat16 if device.type == "cuda" and torch.cuda.is_bf16_supported() else torch.float16
    return torch.autocast(device_type=device.type, dtype=dtype, enabled=enabled and device.type == "cuda")


class Trainer:
    """Trains `objective.detector` and writes RUN_DIR/{last.pt, best.pt, metrics.csv, metrics.png}."""

    def __init__(
        self,
        objective: DetectionObjective,
        train_data: Dataset,
        val_data: Dataset,
        out_dir: Path,
        options: TrainOptions,
        payload_extra: dict | None = None,
        augmentation: AugmentConfig | None = None,
    ) -> None:
        self.objective = objective
        self.detector = objective.detector
        self.options = options
        self.out_dir = out_dir
        self.device = torch.device(options.device)
        self.payload_extra = payload_extra or {}
        size = self.detector.config.input_size
        self.train_samples = DetectionDataset(train_data, size, augmentation or AugmentConfig(), options.seed)
        self.val_data = val_data
        self.val_samples = DetectionDataset(val_data, size)
        self.console = Console(quiet=options.quiet)
        self.objective.to(self.device)
        trainable = [p for p in self.objective.parameters() if p.requires_grad]
        self.optimizer = torch.optim.AdamW(trainable, lr=options.lr, weight_decay=options.weight_decay)
        self.iters_per_epoch = -(-len(self.train_samples) // options.batch_size)
        self.scheduler = warmup_cosine(self.optimizer, options.epochs * self.iters_per_epoch, options.warmup_iters)
        use_scaler = options.amp and self.device.type == "cuda" and not torch.cuda.is_bf16_supported()
        self.scaler = torch.amp.GradScaler("cuda", enabled=use_scaler)
        self.history: list[dict[str, float]] = []
        self.best_ap = -1.0
        self.start_epoch = 0

    def resume(self) -> None:
        """Continue from RUN_DIR/last.pt: weights, optimizer, schedule, history and epoch."""
        last = self.out_dir / "last.pt"
        payload = read_checkpoint(last)
        if payload["config"]["name"] != self.detector.config.name:
            raise EdgeKDError(f"--resume: {last} holds {payload['config']['name']}, not {self.detector.config.name}")
        self.detector.load_state_dict(payload["model"])
        self.objective.load_extra_state(payload["objective"])
        self.optimizer.load_state_dict(payload["optimizer"])
        self.scheduler.load_state_dict(payload["scheduler"])
        self.scaler.load_state_dict(payload["scaler"])
        self.history = payload["history"]
        self.best_ap = payload["best_ap"]
        self.start_epoch = payload["epoch"] + 1
        self.console.print(f"resuming {last} at epoch {self.start_epoch + 1}/{self.options.epochs}")

    def fit(self) -> list[dict[str, float]]:
        for epoch in range(self.start_epoch, self.options.epochs):
            torch.manual_seed(self.options.seed * 100003 + epoch)
            self.objective.on_epoch_start(epoch)
            row = {"epoch": epoch + 1, **self._train_epoch(epoch)}
            row.update(summarize(self.validate()))
            self.history.append(row)
            self._save(epoch, row)
            shown = "  ".join(f"{key} {row[key]:.2f}" for key in ("AP", "AP50", "kitti_moderate") if key in row)
            self.console.print(f"epoch {epoch + 1}/{self.options.epochs}: loss {row['loss']:.4f}  {shown}")
        return self.history

    def validate(self) -> dict:
        detections = predict_dataset(self.detector, self.val_samples, self.device, self.options.batch_size)
        return evaluate_detections(self.val_data, detections)

    def _train_epoch(self, epoch: int) -> dict[str, float]:
        self.objective.train()
        loader = make_loader(self.train_samples, self.options.batch_size, True, self.options.seed, epoch)
        sums: dict[str, float] = {}
        images_seen, started = 0, time.perf_counter()
        columns = (
            TextColumn("[bold]epoch {task.fields[epoch]}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[parts]}"),
            TextColumn("{task.fields[speed]} img/s"),
            TimeRemainingColumn(),
        )
        with Progress(*columns, console=self.console, transient=True, disable=self.options.quiet) as progress:
            task = progress.add_task(
                "train", total=len(loader), epoch=f"{epoch + 1}/{self.options.epochs}", parts="", speed="-"
            )
            for index, (images, targets, _, _) in enumerate(loader):
                info = StepInfo(epoch * self.iters_per_epoch + index, epoch, self.options.epochs)
                parts = self._step(images, targets, info)
                for name, value in parts.items():
                    sums[name] = sums.get(name, 0.0) + value
                images_seen += images.shape[0]
                speed = images_seen / (time.perf_counter() - started)
                shown = "  ".join(f"{k.removeprefix('loss_')} {v:.3f}" for k, v in parts.items())
                progress.update(task, advance=1, parts=shown, speed=f"{speed:.1f}")
        means = {name: value / len(loader) for name, value in sums.items()}
        means["lr"] = self.scheduler.get_last_lr()[0]
        means["train_seconds"] = time.perf_counter() - started
        return means

    def _step(self, images: torch.Tensor, targets: list[dict], info: StepInfo) -> dict[str, float]:
        images = images.to(self.device, non_blocking=True)
        targets = [{k: v.to(self.device) for k, v in t.items()} for t in targets]
        with _autocast(self.device, self.options.amp):
            total, parts = self.objective(images, targets, info)
        if not torch.isfinite(total):
            raise EdgeKDError(
                f"loss became {float(total)} at step {info.step} (parts: {parts}); lower --lr or check the data"
            )
        self.optimizer.zero_grad(set_to_none=True)
        self.scaler.scale(total).backward()
        self.scaler.unscale_(self.optimizer)
        trainable = [p for group in self.optimizer.param_groups for p in group["params"]]
        torch.nn.utils.clip_grad_norm_(trainable, self.options.grad_clip)
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.scheduler.step()
        return {"loss": float(total.detach()), **parts}

    def _save(self, epoch: int, row: dict[str, float]) -> None:
        improved = row["AP"] > self.best_ap
        if improved:
            self.best_ap = row["AP"]
        common = {"epoch": epoch, "metrics": row, **self.payload_extra}
        last = detector_payload(
            self.detector,
            **common,
            objective=self.objective.extra_state(),
            optimizer=self.optimizer.state_dict(),
            scheduler=self.scheduler.state_dict(),
            scaler=self.scaler.state_dict(),
            history=self.history,
            best_ap=self.best_ap,
            train_options=asdict(self.options),
        )
        atomic_torch_save(last, self.out_dir / "last.pt")
        if improved:
            atomic_torch_save(detector_payload(self.detector, **common), self.out_dir / "best.pt")
        write_metrics_csv(self.out_dir / "metrics.csv", self.history)
        plot_history(self.out_dir / "metrics.png", self.history)
