"""The training loop: warm-up + cosine, mixed precision and channels_last on CUDA, progress on stderr (a bar on a
terminal, periodic lines in a log), per-epoch validation, atomic checkpoints, metrics.csv + plot, TensorBoard
scalars and prediction sheets when tensorboard is installed (edgekd/train/tensorboard.py), exact `--resume` from
last.pt, and data parallelism over the ranks torchrun starts (see edgekd/train/distributed.py).

Exact resume holds because nothing random is carried between epochs: the data order, the augmentation and
torch's global RNG are all re-seeded from (seed, epoch) at the start of every epoch. The data order is a function
of (seed, epoch) over the global index list and each rank takes its strided share, so a run may resume with
another number of ranks.

Under DDP every rank steps on `batch_size / world_size` images; DDP averages gradients, BatchNorm is synchronised
over the global batch, logged losses are averaged over ranks, validation is sharded over the ranks and scored on
rank 0, and only rank 0 writes files.
"""

from __future__ import annotations

import hashlib
import json
import math
import time
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path

import torch
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, TextColumn, TimeRemainingColumn

from edgekd.data.loader import check_trainable
from edgekd.data.records import Dataset, Detections
from edgekd.data.torch_dataset import DetectionDataset, make_train_loader
from edgekd.data.transforms import AugmentConfig
from edgekd.errors import EdgeKDError
from edgekd.evaluate import EvalResult, evaluate_detections
from edgekd.models.checkpoint import atomic_torch_save, detector_payload, load_weights, read_checkpoint
from edgekd.models.inference import predict_dataset
from edgekd.progress import make_progress, progress_console
from edgekd.train import distributed
from edgekd.train.acceleration import autocast, channels_last, compile_backbone, grad_scaler, resolve_amp
from edgekd.train.history import plot_history, write_metrics_csv
from edgekd.train.objective import DetectionObjective, StepInfo
from edgekd.train.schedule import effective_warmup, warmup_cosine
from edgekd.train.tensorboard import TensorBoardLog


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


def check_options(options: TrainOptions) -> None:
    """Refuse a schedule that cannot train: each value named with its valid range."""
    whole = {"epochs": (options.epochs, 1), "batch_size": (options.batch_size, 1)}
    whole["warmup_iters"] = (options.warmup_iters, 0)
    for name, (value, low) in whole.items():
        if isinstance(value, bool) or not isinstance(value, int) or value < low:
            raise EdgeKDError(f"training option {name} {value!r}: must be a whole number >= {low}")
    for name, value, low_allowed in (("lr", options.lr, False), ("weight_decay", options.weight_decay, True)):
        if not math.isfinite(value) or value < 0 or (value == 0 and not low_allowed):
            raise EdgeKDError(
                f"training option {name} {value!r}: must be a finite number {'>=' if low_allowed else '>'} 0"
            )


@dataclass(frozen=True)
class DataFingerprint:
    """What identifies a dataset split for `--resume`: its folder, split name, image count and a hash of the
    image ids, sizes and labels."""

    path: str
    split: str
    images: int
    labels_sha256: str

    @classmethod
    def of(cls, dataset: Dataset) -> DataFingerprint:
        listing = [
            [
                record.image_id,
                record.width,
                record.height,
                [[o.type, *o.bbox, o.truncated, o.occluded] for o in record.objects],
            ]
            for record in dataset.records
        ]
        digest = hashlib.sha256(json.dumps(listing, default=float).encode()).hexdigest()
        return cls(str(Path(dataset.root).resolve()), dataset.split, len(dataset.records), digest)


@dataclass(frozen=True)
class RunFingerprint:
    """Everything a run's result depends on apart from its weights: `--resume` refuses to continue a run whose
    fingerprint differs (unless forced), naming each difference."""

    model: str
    input_size: str  # WIDTHxHEIGHT
    classes: tuple[str, ...]
    training_data: DataFingerprint
    validation_data: DataFingerprint
    schedule: str
    teacher: str | None
    kd_losses: str | None

    def to_dict(self) -> dict:
        return json.loads(json.dumps(asdict(self)))

    @classmethod
    def from_dict(cls, data: dict) -> RunFingerprint:
        values = dict(data)
        values["classes"] = tuple(values["classes"])
        for key in ("training_data", "validation_data"):
            values[key] = DataFingerprint(**values[key])
        return cls(**values)

    def differences(self, now: RunFingerprint) -> list[str]:
        """'what: X then, Y now' for each field that differs from `now`."""
        found = []
        for item in fields(self):
            then, current = getattr(self, item.name), getattr(now, item.name)
            label = item.name.replace("_", " ")
            if not isinstance(then, DataFingerprint):
                if then != current:
                    found.append(f"{label}: {_shown(then)} then, {_shown(current)} now")
                continue
            for part in fields(then):
                was, is_ = getattr(then, part.name), getattr(current, part.name)
                if part.name == "labels_sha256" and was != is_:
                    found.append(f"{label}: the image list or labels changed")
                elif was != is_:
                    found.append(f"{label} {part.name}: {was} then, {is_} now")
        return found


def _shown(value: object) -> str:
    return str(list(value) if isinstance(value, tuple) else value)


class Trainer:
    """Trains `objective.detector` and writes RUN_DIR/{last.pt, best.pt, metrics.csv, metrics.png} (and tb/)."""

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
        check_options(options)
        self.console = Console(quiet=options.quiet or not self.env.is_main)
        absent = check_trainable(train_data)
        if absent:
            self.console.print(
                f"[yellow]warning: the training split has no object of {', '.join(absent)}: the detector cannot "
                "learn them[/]"
            )
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
        total_iters = options.epochs * self.iters_per_epoch
        self.scheduler = warmup_cosine(self.optimizer, total_iters, options.warmup_iters)
        if effective_warmup(total_iters, options.warmup_iters) < options.warmup_iters:
            self.console.print(
                f"note: warm-up {options.warmup_iters} iterations capped at "
                f"{effective_warmup(total_iters, options.warmup_iters)}, 30% of this run's {total_iters}"
            )
        self.scaler = grad_scaler(self.amp)
        self.model = distributed.replicate(objective, objective.trainable_modules(), self.env, self.device)
        self.history: list[dict[str, float]] = []
        self.best_ap = -1.0
        self.best_epoch: int | None = None
        self.start_epoch = 0
        self.fingerprint = self._fingerprint(train_data, val_data)
        self.board = TensorBoardLog(None)
        self._val_detections: dict[str, Detections] = {}
        self._images_per_second = 0.0

    @property
    def best_path(self) -> Path:
        return self.out_dir / "best.pt"

    def _fingerprint(self, train_data: Dataset, val_data: Dataset) -> RunFingerprint:
        config, options, recipe = self.detector.config, self.options, self.payload_extra.get("recipe")
        teacher = self.payload_extra.get("teacher")
        return RunFingerprint(
            model=config.name,
            input_size=f"{config.input_size[1]}x{config.input_size[0]}",
            classes=tuple(config.classes),
            training_data=DataFingerprint.of(train_data),
            validation_data=DataFingerprint.of(val_data),
            schedule=(
                f"epochs {options.epochs}, batch {options.batch_size}, lr {options.lr:g}, weight decay "
                f"{options.weight_decay:g}, warm-up {options.warmup_iters}, grad clip {options.grad_clip:g}, "
                f"seed {options.seed}"
            ),
            teacher=str(Path(teacher).resolve()) if teacher else None,
            kd_losses=json.dumps({"losses": recipe["losses"], "inherit": recipe["inherit"]}, sort_keys=True)
            if recipe
            else None,
        )

    def resume(self, force: bool = False) -> None:
        """Continue from RUN_DIR/last.pt: weights, optimizer, schedule, history and epoch (rank 0 reads the file
        and sends it to the other ranks, whatever their number when it was written).

        Refuses a last.pt written for another model, input size, data, schedule or recipe unless `force`, and
        rewrites any file of the run folder an interruption left missing or stale (best.pt, metrics.csv/png)."""
        last = self.out_dir / "last.pt"
        payload = distributed.run_on_main(lambda: self._read_resumable(last, force))
        load_weights(self.detector, payload["model"], last)
        try:
            self.objective.load_extra_state(payload["objective"])
            self.optimizer.load_state_dict(payload["optimizer"])
            self.scheduler.load_state_dict(payload["scheduler"])
        except (KeyError, ValueError, RuntimeError) as error:
            raise EdgeKDError(f"--resume: the training state in {last} does not fit this run ({error})") from None
        if self.scaler.is_enabled() and payload["scaler"]:
            self.scaler.load_state_dict(payload["scaler"])
        self.history = payload["history"]
        self.best_ap = payload["best_ap"]
        self.best_epoch = payload.get("best_epoch", _best_epoch(self.history))
        self.start_epoch = payload["epoch"] + 1
        self.console.print(f"resuming {last} at epoch {self.start_epoch + 1}/{self.options.epochs}")

    def _read_resumable(self, last: Path, force: bool) -> dict:
        payload = read_checkpoint(last)
        missing = [key for key in _RESUME_KEYS if key not in payload]
        if missing:
            raise EdgeKDError(f"--resume: {last} cannot be resumed: it lacks {', '.join(missing)}")
        if payload["config"]["name"] != self.detector.config.name:
            raise EdgeKDError(f"--resume: {last} holds {payload['config']['name']}, not {self.detector.config.name}")
        if "run" in payload:
            try:
                then = RunFingerprint.from_dict(payload["run"])
            except (KeyError, TypeError, ValueError):
                raise EdgeKDError(f"--resume: {last} holds an unreadable run description ('run')") from None
            differences = then.differences(self.fingerprint)
            if differences and not force:
                raise EdgeKDError(
                    f"--resume: {last} was written for another run: {'; '.join(differences)}; "
                    "pass --force to continue it anyway, or choose another -o"
                )
            for difference in differences:
                self.console.print(f"[yellow]warning: --force: resuming although the {difference}[/]")
        else:
            self.console.print(
                f"[yellow]warning: {last} was written by an edgekd without run descriptions: whether the data, input "
                "size, schedule and recipe are unchanged cannot be checked[/]"
            )
        self._restore_outputs(payload, force)
        return payload

    def _restore_outputs(self, payload: dict, force: bool) -> None:
        """Rewrite what an interruption after last.pt may have left missing: best.pt (when last.pt holds the best
        epoch's weights), metrics.csv and metrics.png; delete the temporaries of writes a kill -9 cut short."""
        for name in _RUN_FILES:
            for temporary in self.out_dir.glob(f".{name}.*.tmp"):
                temporary.unlink(missing_ok=True)
        history, epoch = payload["history"], payload["epoch"]
        best_epoch = payload.get("best_epoch", _best_epoch(history))
        held = _checkpoint_epoch(self.best_path)
        if best_epoch is not None and held != best_epoch and (held is None or held <= epoch):
            if best_epoch == epoch:
                best = {key: payload[key] for key in ("format", "config", "model")}
                best.update(epoch=epoch, metrics=history[-1], **self.payload_extra)
                atomic_torch_save(best, self.best_path)
                self.console.print(f"restored {self.best_path} (epoch {epoch + 1}) from {self.out_dir / 'last.pt'}")
            elif not force:
                raise EdgeKDError(
                    f"--resume: {self.best_path} (the best epoch, {best_epoch + 1}) is missing or stale and cannot be "
                    f"rebuilt (last.pt holds epoch {epoch + 1}); pass --force to continue without it"
                )
            else:
                self.console.print(f"[yellow]warning: --force: {self.best_path} of epoch {best_epoch + 1} is lost[/]")
        write_metrics_csv(self.out_dir / "metrics.csv", history)
        plot_history(self.out_dir / "metrics.png", history)

    def fit(self) -> list[dict[str, float]]:
        self.board = TensorBoardLog.open(self.out_dir, self.start_epoch * self.iters_per_epoch, self.env.is_main)
        try:
            for epoch in range(self.start_epoch, self.options.epochs):
                torch.manual_seed(self.options.seed * 100003 + epoch + 7919 * self.env.rank)
                self.objective.on_epoch_start(epoch)
                row = {"epoch": epoch + 1, **self._train_epoch(epoch)}
                row.update(self.validate().summary())
                self.history.append(row)
                improved = row["AP"] > self.best_ap
                if improved:
                    self.best_ap, self.best_epoch = row["AP"], epoch
                if self.env.is_main:
                    self._save(epoch, row, improved)
                    step = (epoch + 1) * self.iters_per_epoch
                    self.board.epoch(row, self._images_per_second, step)
                    self.board.predictions(self.val_data, self._val_detections, step)
                shown = "  ".join(f"{key} {row[key]:.2f}" for key in ("AP", "AP50", "kitti_moderate") if key in row)
                self.console.print(f"epoch {epoch + 1}/{self.options.epochs}: loss {row['loss']:.4f}  {shown}")
        except BaseException:
            self.board.close()
            if not (self.out_dir / "last.pt").exists():  # no epoch finished: leave no log of a run that never was
                self.board.discard()
            raise
        self.board.close()
        distributed.barrier()
        return self.history

    def validate(self) -> EvalResult:
        """COCO + KITTI results on the validation split; each rank predicts its share, rank 0 scores them all."""
        detections = predict_dataset(self.detector, self.val_samples, self.device, self.options.batch_size)
        shares = distributed.gather_to_main(detections)
        results = None
        if shares is not None:
            merged: dict[str, Detections] = {}
            for share in shares:
                merged.update(share)
            results = evaluate_detections(self.val_data, merged)
            self._val_detections = merged
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
        status = progress_console(self.console.quiet)
        with make_progress(status, columns, detail="{parts}  {speed} img/s", transient=True) as progress:
            task = progress.add_task(
                "epoch {epoch}",
                total=self.iters_per_epoch,
                epoch=f"{epoch + 1}/{self.options.epochs}",
                parts="",
                speed="-",
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
                self.board.step(parts, info.step + 1)
                images_seen += images.shape[0] * world
                speed = images_seen / (time.perf_counter() - started)
                shown = "  ".join(f"{k.removeprefix('loss_')} {v:.3f}" for k, v in parts.items())
                progress.update(task, advance=1, parts=shown, speed=f"{speed:.1f}")
        means = distributed.mean_over_ranks({name: value / self.iters_per_epoch for name, value in sums.items()})
        means["lr"] = self.scheduler.get_last_lr()[0]
        means["train_seconds"] = time.perf_counter() - started
        means["data_seconds"] = data_seconds
        self._images_per_second = images_seen / means["train_seconds"]
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
        """best.pt first, then last.pt, then the metrics: a run stopped between any two writes resumes from
        last.pt with a best.pt at least as new, and `resume` rewrites the rest."""
        common = {"epoch": epoch, "metrics": row, **self.payload_extra}
        if improved:
            atomic_torch_save(detector_payload(self.detector, **common), self.best_path)
        last = detector_payload(
            self.detector,
            **common,
            objective=self.objective.extra_state(),
            optimizer=self.optimizer.state_dict(),
            scheduler=self.scheduler.state_dict(),
            scaler=self.scaler.state_dict(),
            history=self.history,
            best_ap=self.best_ap,
            best_epoch=self.best_epoch,
            run=self.fingerprint.to_dict(),
            train_options=asdict(self.options),
        )
        atomic_torch_save(last, self.out_dir / "last.pt")
        write_metrics_csv(self.out_dir / "metrics.csv", self.history)
        plot_history(self.out_dir / "metrics.png", self.history)


_RUN_FILES = ("best.pt", "last.pt", "metrics.csv", "metrics.png")
_RESUME_KEYS = ("epoch", "objective", "optimizer", "scheduler", "scaler", "history", "best_ap")


def _best_epoch(history: list[dict[str, float]]) -> int | None:
    """0-based index of the first epoch with the highest AP (the one best.pt holds), None before any epoch."""
    if not history:
        return None
    return max(range(len(history)), key=lambda index: history[index]["AP"])


def _checkpoint_epoch(path: Path) -> int | None:
    """The epoch a checkpoint in the run folder holds; None when it is missing or unreadable."""
    if not path.is_file():
        return None
    try:
        epoch = read_checkpoint(path).get("epoch")
    except EdgeKDError:
        return None
    return epoch if isinstance(epoch, int) else None
