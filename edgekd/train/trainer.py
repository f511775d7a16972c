"""The training loop: warm-up + cosine, mixed precision and channels_last on CUDA, rich progress, per-epoch
validation, atomic checkpoints, metrics.csv + plot, exact `--resume` from last.pt, and data parallelism over the
ranks torchrun starts (see edgekd/train/distributed.py).

Exact resume holds because nothing random is carried between epochs: the data order, the augmentation and
torch's global RNG are all re-seeded from (seed, epoch) at the start of every epoch. The data order is a function
of (seed, epoch) over the global index list and each rank takes its strided share, so a run may resume with
another number of ranks.

Under DDP every rank steps on `batch_size / world_size` images; DDP averages gradients, BatchNorm is synchronised
over the global batch, logged losses are averaged over ranks, validation is sharded over the ranks and scored on
rank 0, and only rank 0 writes files.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import torch
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from edgekd.data.records import Dataset, Detections
from edgekd.data.torch_dataset import DetectionDataset, make_train_loader
from edgekd.data.transforms import AugmentConfig
from edgekd.errors import EdgeKDError
from edgekd.evaluate import evaluate_detections
from edgekd.models.checkpoint import atomic_torch_save, detector_payload, read_checkpoint
from edgekd.models.inference import predict_dataset
from edgekd.train import distributed
from edgekd.train.acceleration import autocast, channels_last, compile_backbone, grad_scaler, resolve_amp
from edgekd.train.history import plot_history, write_metrics_csv
from edgekd.train.objective import DetectionObjective, StepInfo
from edgekd.train.schedule import warmup_cosine


@dataclass
class TrainOptions:
    """Schedule and run options of `edgekd train` / `edgekd distill`."""

    epochs: int = 12
    batch_size: int = 8  # global: all ranks together
    lr: float = 2e-3
    weight_decay: float = 0.05
    warmup_iters: int = 300
    grad_clip: float = 10.0
    seed: int = 0
    device: str = "cpu"  # this rank's device
    amp: str = "auto"  # auto | off | bf16 | fp16 (see acceleration.resolve_amp)
    workers: int = 0  # data-loading worker processes per rank; 0 loads (and caches) in the training process
    compile: bool = False  # torch.compile the trained detector's backbone + FPN
    quiet: bool = False


def summarize(results: dict) -> dict[str, float]:
    """The headline numbers of an evaluation: COCO AP, AP50 and mean KITTI Moderate AP|R40 over classes."""
    summary = {"AP": results["coco"]["AP"], "AP50": results["coco"]["AP50"]}
    if results.get("kitti"):
        moderate = [per_class["moderate"] for per_class in results["kitti"].values()]
        summary["kitti_moderate"] = sum(moderate) / len(moderate)
    return summary


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
        self.env = distributed.current()
        self.device = torch.device(options.device)
        self.amp = resolve_amp(options.amp, self.device)
        self.payload_extra = payload_extra or {}
        size = self.detector.config.input_size
        self.train_samples = DetectionDataset(
            train_data, size, augmentation or AugmentConfig(), options.seed, cache=options.workers == 0
        )
        self.train_loader = make_train_loader(
            self.train_samples,
            distributed.per_rank_batch(options.batch_size, self.env.world_size),
            options.seed,
            self.env.rank,
            self.env.world_size,
            options.workers,
            pin_memory=self.device.type == "cuda",
        )
        self.val_data = val_data
        shard = replace(val_data, records=val_data.records[self.env.rank :: self.env.world_size])
        self.val_samples = DetectionDataset(shard, size)
        self.console = Console(quiet=options.quiet or not self.env.is_main)
        if self.env.distributed:
            distributed.synchronise_batchnorm(self.detector, self.device)
        channels_last(self.objective.to(self.device), self.device)
        if options.compile:
            compile_backbone(self.detector)
        if self.device.type == "cuda":
            torch.backends.cudnn.benchmark = True  # fixed input size: pick the fastest convolution once
        trainable = [p for p in self.objective.parameters() if p.requires_grad]
        self.optimizer = torch.optim.AdamW(trainable, lr=options.lr, weight_decay=options.weight_decay, foreach=True)
        self.iters_per_epoch = len(self.train_loader)
        self.scheduler = warmup_cosine(self.optimizer, options.epochs * self.iters_per_epoch, options.warmup_iters)
        self.scaler = grad_scaler(self.amp)
        self.model = distributed.replicate(objective, objective.trainable_modules(), self.env, self.device)
        self.history: list[dict[str, float]] = []
        self.best_ap = -1.0
        self.start_epoch = 0

    def resume(self) -> None:
        """Continue from RUN_DIR/last.pt: weights, optimizer, schedule, history and epoch (rank 0 reads the file
        and sends it to the other ranks, whatever their number when it was written)."""
        last = self.out_dir / "last.pt"
        payload = distributed.run_on_main(lambda: read_checkpoint(last))
        if payload["config"]["name"] != self.detector.config.name:
            raise EdgeKDError(f"--resume: {last} holds {payload['config']['name']}, not {self.detector.config.name}")
        self.detector.load_state_dict(payload["model"])
        self.objective.load_extra_state(payload["objective"])
        self.optimizer.load_state_dict(payload["optimizer"])
        self.scheduler.load_state_dict(payload["scheduler"])
        if self.scaler.is_enabled() and payload["scaler"]:
            self.scaler.load_state_dict(payload["scaler"])
        self.history = payload["history"]
        self.best_ap = payload["best_ap"]
        self.start_epoch = payload["epoch"] + 1
        self.console.print(f"resuming {last} at epoch {self.start_epoch + 1}/{self.options.epochs}")

    def fit(self) -> list[dict[str, float]]:
        for epoch in range(self.start_epoch, self.options.epochs):
            torch.manual_seed(self.options.seed * 100003 + epoch + 7919 * self.env.rank)
            self.objective.on_epoch_start(epoch)
            row = {"epoch": epoch + 1, **self._train_epoch(epoch)}
            row.update(summarize(self.validate()))
            self.history.append(row)
            improved = row["AP"] > self.best_ap
            self.best_ap = max(self.best_ap, row["AP"])
            if self.env.is_main:
                self._save(epoch, row, improved)
            shown = "  ".join(f"{key} {row[key]:.2f}" for key in ("AP", "AP50", "kitti_moderate") if key in row)
            self.console.print(f"epoch {epoch + 1}/{self.options.epochs}: loss {row['loss']:.4f}  {shown}")
        distributed.barrier()
        return self.history

    def validate(self) -> dict:
        """COCO + KITTI results on the validation split; each rank predicts its share, rank 0 scores them all."""
        detections = predict_dataset(self.detector, self.val_samples, self.device, self.options.batch_size)
        shares = distributed.gather_to_main(detections)
        results = None
        if shares is not None:
            merged: dict[str, Detections] = {}
            for share in shares:
                merged.update(share)
            results = evaluate_detections(self.val_data, merged)
        return distributed.broadcast_from_main(results)

    def _train_epoch(self, epoch: int) -> dict[str, float]:
        self.objective.train()
        self.train_loader.sampler.set_epoch(epoch)
        world = self.env.world_size
        sums: dict[str, float] = {}
        images_seen, data_seconds, started = 0, 0.0, time.perf_counter()
        columns = (
            TextColumn("[bold]epoch {task.fields[epoch]}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[parts]}"),
            TextColumn("{task.fields[speed]} img/s"),
            TimeRemainingColumn(),
        )
        with Progress(*columns, console=self.console, transient=True, disable=self.console.quiet) as progress:
            task = progress.add_task(
                "train", total=self.iters_per_epoch, epoch=f"{epoch + 1}/{self.options.epochs}", parts="", speed="-"
            )
            batches = iter(self.train_loader)
            for index in range(self.iters_per_epoch):
                waited = time.perf_counter()
                images, targets, _, _ = next(batches)
                data_seconds += time.perf_counter() - waited
                info = StepInfo(epoch * self.iters_per_epoch + index, epoch, self.options.epochs)
                parts = self.step(images, targets, info)
                for name, value in parts.items():
                    sums[name] = sums.get(name, 0.0) + value
                images_seen += images.shape[0] * world
                speed = images_seen / (time.perf_counter() - started)
                shown = "  ".join(f"{k.removeprefix('loss_')} {v:.3f}" for k, v in parts.items())
                progress.update(task, advance=1, parts=shown, speed=f"{speed:.1f}")
        means = distributed.mean_over_ranks({name: value / self.iters_per_epoch for name, value in sums.items()})
        means["lr"] = self.scheduler.get_last_lr()[0]
        means["train_seconds"] = time.perf_counter() - started
        means["data_seconds"] = data_seconds
        return means

    def step(self, images: torch.Tensor, targets: list[dict], info: StepInfo) -> dict[str, float]:
        """One optimisation step on this rank's batch; returns this rank's losses."""
        memory_format = torch.channels_last if self.device.type == "cuda" else torch.contiguous_format
        images = images.to(self.device, non_blocking=True, memory_format=memory_format)
        targets = [{k: v.to(self.device, non_blocking=True) for k, v in t.items()} for t in targets]
        with autocast(self.device, self.amp):
            total, parts = self.model(images, targets, info)
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

    def _save(self, epoch: int, row: dict[str, float], improved: bool) -> None:
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
