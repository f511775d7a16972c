"""TensorBoard logging of a training run into RUN_DIR/tb/ (`tensorboard --logdir runs`), through
torch.utils.tensorboard, when the `tensorboard` package is installed (`pip install -e ".[tb]"`); without it every
call does nothing, silently. metrics.csv stays the run's record: TensorBoard is for watching a run live.

Every value is logged at the optimisation step it follows (1-based), so the per-step losses and the per-epoch
values share one axis: per step, each loss part (`step/...`); per epoch, the epoch's mean loss parts (`loss/...`),
the learning rate, throughput and time (`train/...`), the validation metrics (`val/...`) and a sheet of the first
validation images with the predictions coloured by their KITTI outcome (`edgekd show`'s drawing). A resumed run
appends to the same folder; events a killed run wrote after the epoch it resumes from are dropped.
"""

from __future__ import annotations

import shutil
from dataclasses import replace
from pathlib import Path

import numpy as np

from edgekd.data.records import Dataset, Detections

BOARD_DIR = "tb"
PREVIEW_IMAGES = 4
PREVIEW_SCORE = 0.3
_TRAIN_KEYS = {"lr": "train/lr", "train_seconds": "train/epoch_seconds", "data_seconds": "train/data_wait_seconds"}


class TensorBoardLog:
    """A SummaryWriter on RUN_DIR/tb/, or nothing (`writer` None) when tensorboard is missing or on ranks > 0."""

    def __init__(self, writer: object | None) -> None:
        self.writer = writer

    @classmethod
    def open(cls, run_dir: Path, first_step: int, enabled: bool = True) -> TensorBoardLog:
        """The log of `run_dir`, continuing at `first_step` (0 for a new run; later events of a resumed run are
        purged); a no-op log when not `enabled` or when tensorboard is not installed."""
        if not enabled:
            return cls(None)
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError:
            return cls(None)
        return cls(SummaryWriter(log_dir=str(run_dir / BOARD_DIR), purge_step=first_step + 1 if first_step else None))

    def step(self, parts: dict[str, float], step: int) -> None:
        """The losses of one optimisation step (`step` 1-based)."""
        if self.writer is None:
            return
        for name, value in parts.items():
            self.writer.add_scalar(f"step/{name}", value, step)

    def epoch(self, row: dict[str, float], images_per_second: float, step: int) -> None:
        """One epoch's row of metrics.csv (mean losses, lr, times, validation metrics) and its throughput."""
        if self.writer is None:
            return
        for name, value in row.items():
            if name == "epoch":
                continue
            tag = f"loss/{name}" if name.startswith("loss") else _TRAIN_KEYS.get(name, f"val/{name}")
            self.writer.add_scalar(tag, value, step)
        self.writer.add_scalar("train/images_per_second", images_per_second, step)
        self.writer.flush()

    def predictions(self, dataset: Dataset, detections: dict[str, Detections], step: int) -> None:
        """The first PREVIEW_IMAGES validation images: ground truth beside the predictions scoring at least
        PREVIEW_SCORE, coloured by their KITTI outcome (KITTI-format data only)."""
        if self.writer is None or dataset.format != "kitti":
            return
        from edgekd.evaluate.kitti import MIN_OVERLAP
        from edgekd.evaluate.visualize import judge_images, render_outcomes

        if not any(name in MIN_OVERLAP for name in dataset.classes):
            return
        shown = replace(dataset, records=dataset.records[:PREVIEW_IMAGES])
        judged = judge_images(shown, detections, PREVIEW_SCORE)
        if not judged:
            return
        sheet = render_outcomes(judged, "moderate", PREVIEW_SCORE, max_width=1280).image
        self.writer.add_image("val/predictions", np.asarray(sheet), step, dataformats="HWC")
        self.writer.flush()

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()

    def discard(self) -> None:
        """Delete the run's log folder (a run that failed before its first epoch ended leaves nothing behind)."""
        if self.writer is not None:
            shutil.rmtree(self.writer.log_dir, ignore_errors=True)
