"""Per-epoch metrics: metrics.csv and a PNG plot of loss and mAP."""

from __future__ import annotations

import csv
from pathlib import Path

import matplotlib

from edgekd.atomic import atomic_output

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def write_metrics_csv(path: Path, history: list[dict[str, float]]) -> None:
    """One row per epoch; columns are the union of all keys, in first-seen order. Written atomically."""
    columns: list[str] = []
    for row in history:
        columns += [key for key in row if key not in columns]
    with atomic_output(path) as temporary, temporary.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=columns)
        writer.writeheader()
        writer.writerows(history)


def plot_history(path: Path, history: list[dict[str, float]]) -> None:
    """Training loss (total and parts) and validation AP per epoch."""
    epochs = [row["epoch"] for row in history]
    figure, (loss_axis, ap_axis) = plt.subplots(1, 2, figsize=(11, 4))
    for key in [k for k in history[-1] if k.startswith("loss")]:
        loss_axis.plot(epochs, [row.get(key, float("nan")) for row in history], marker="o", label=key)
    loss_axis.set(xlabel="epoch", ylabel="training loss (epoch mean)", title="Loss")
    loss_axis.legend(fontsize=8)
    for key, label in (("AP", "COCO AP"), ("AP50", "COCO AP50"), ("kitti_moderate", "KITTI Moderate AP|R40")):
        if key in history[-1]:
            ap_axis.plot(epochs, [row.get(key, float("nan")) for row in history], marker="o", label=label)
    ap_axis.set(xlabel="epoch", ylabel="AP (%)", title="Validation")
    ap_axis.legend(fontsize=8)
    figure.tight_layout()
    try:
        with atomic_output(path) as temporary:
            figure.savefig(temporary, dpi=100, format="png")
    finally:
        plt.close(figure)
