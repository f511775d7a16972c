"""The accuracy-vs-latency picture: COCO AP and KITTI Moderate AP against p50 latency, one point per artifact;
and, where bench records measured energy, the energy-vs-accuracy picture: COCO AP against mJ per frame.

Drawn on a bare matplotlib `Figure` with the Agg canvas (no pyplot, no global state, no display needed).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

MARKERS = {"fp32": "o", "fp16": "s", "int8": "^", "int8-qdq": "v"}
PANELS = (("coco_ap", "COCO AP (%)"), ("kitti_moderate", "KITTI Moderate AP (%), mean over classes"))
FIGURE_SIZE = (12.0, 5.0)  # inches
DPI = 100


@dataclass(frozen=True)
class PlotPoint:
    """One artifact on one backend: where it sits on both panels (None: not measured, not drawn)."""

    run: str
    artifact: str
    precision: str
    backend: str
    batch: int
    latency_ms: float
    coco_ap: float | None
    kitti_moderate: float | None
    mj_per_frame: float | None = None  # energy per frame where the bench measured it (docs/energy.md)

    @property
    def label(self) -> str:
        return f"{self.run} {self.precision} ({self.backend})"

    def to_dict(self) -> dict:
        return asdict(self)


def render_accuracy_latency(points: list[PlotPoint], path: Path, latency_name: str) -> Figure:
    """Draw both panels, save the PNG at `path` and return the figure (its axes hold the plotted data)."""
    figure = Figure(figsize=FIGURE_SIZE, dpi=DPI, layout="constrained")
    FigureCanvasAgg(figure)
    runs = sorted({p.run for p in points})
    colors = {run: f"C{i % 10}" for i, run in enumerate(runs)}
    for axes, (metric, title) in zip(figure.subplots(1, 2), PANELS):
        shown = [p for p in points if getattr(p, metric) is not None]
        groups: dict[tuple[str, str], list[PlotPoint]] = {}
        for point in shown:
            groups.setdefault((point.run, point.precision), []).append(point)
        for (run, precision), members in sorted(groups.items()):
            axes.scatter(
                [p.latency_ms for p in members],
                [getattr(p, metric) for p in members],
                color=colors[run],
                marker=MARKERS.get(precision, "D"),
                s=60,
                label=f"{run} {precision}",
            )
            for p in members:
                axes.annotate(
                    p.backend, (p.latency_ms, getattr(p, metric)), textcoords="offset points", xytext=(5, 4), fontsize=8
                )
        axes.set_title(title)
        axes.set_xlabel(f"{latency_name} p50 latency (ms)")
        axes.set_ylabel("AP (%)")
        if shown:  # from zero, with room for the labels right of and above the farthest points
            axes.set_xlim(0, 1.15 * max(p.latency_ms for p in shown))
            axes.set_ylim(0, max(1.12 * max(getattr(p, metric) for p in shown), 1.0))
        axes.grid(True, alpha=0.3)
        if shown:
            axes.legend(fontsize=8)
        else:
            axes.text(0.5, 0.5, "no results with this metric", ha="center", va="center", transform=axes.transAxes)
    figure.suptitle("Accuracy vs latency (one point per artifact and backend)")
    figure.savefig(path, format="png")
    return figure


def render_energy_accuracy(points: list[PlotPoint], path: Path) -> Figure:
    """COCO AP against energy per frame for the points that have both; save the PNG at `path`, return the figure."""
    shown = [p for p in points if p.mj_per_frame is not None and p.coco_ap is not None]
    figure = Figure(figsize=(FIGURE_SIZE[0] / 2, FIGURE_SIZE[1]), dpi=DPI, layout="constrained")
    FigureCanvasAgg(figure)
    axes = figure.subplots()
    colors = {run: f"C{i % 10}" for i, run in enumerate(sorted({p.run for p in shown}))}
    groups: dict[tuple[str, str], list[PlotPoint]] = {}
    for point in shown:
        groups.setdefault((point.run, point.precision), []).append(point)
    for (run, precision), members in sorted(groups.items()):
        axes.scatter(
            [p.mj_per_frame for p in members],
            [p.coco_ap for p in members],
            color=colors[run],
            marker=MARKERS.get(precision, "D"),
            s=60,
            label=f"{run} {precision}",
        )
        for p in members:
            axes.annotate(p.backend, (p.mj_per_frame, p.coco_ap), textcoords="offset points", xytext=(5, 4), fontsize=8)
    axes.set_xlabel("energy per frame (mJ)")
    axes.set_ylabel("COCO AP (%)")
    if shown:  # from zero, with room for the labels right of and above the farthest points
        axes.set_xlim(0, 1.15 * max(p.mj_per_frame for p in shown))
        axes.set_ylim(0, max(1.12 * max(p.coco_ap for p in shown), 1.0))
        axes.legend(fontsize=8)
    axes.grid(True, alpha=0.3)
    figure.suptitle("Accuracy vs energy per frame (one point per artifact and backend)")
    figure.savefig(path, format="png")
    return figure
