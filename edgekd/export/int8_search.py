"""INT8 float-fallback search (`edgekd export --int8 --int8-ap-budget B`): which layer groups to keep in float so
the QDQ model's COCO AP on `--data` is within B points of the FP32 export's.

"Within" is |AP difference| <= B, both ways, as the export's parity gate: an AP *gain* from quantisation on a
validation set is noise the search must not mistake for headroom (it would overfit the kept set to `--data`).

1. Plain INT8 (every group quantised) is measured first; within the budget, nothing is kept in float.
2. Sensitivity, one group quantised at a time (all others in float): each group's AP loss on its own. This is
   chosen over leave-one-out (all quantised but one) because it is the faster of the two here: both need one
   quantisation and one AP run per group, but a one-group model carries the Q/DQ pairs of a single group and
   runs at about FP32 speed on ONNX Runtime's CPU provider, while a leave-one-out model runs at full-INT8 speed,
   which on CPUs is often *slower* than FP32 (see benchmarks/results/int8_profile.md). The change is measured as
   AP itself on `--data` (no proxy: the budget is in AP, and `--data` is required anyway); groups are ranked by
   |AP change|, ties (groups that do not move AP on their own) broken by |KITTI Moderate| and |AP50| changes,
   then by depth in the graph (deeper first: detection heads are where post-training quantisation loses most).
3. Greedy fallback: the k most sensitive groups are kept in float. AP falls as k shrinks, so the smallest k within
   the budget is found by bisection over k (log2 of the group count AP runs instead of one per group); every
   evaluated k is a step of the report, with its AP and compute latency. With every group in float the model is
   the float graph, so a budget of 0 is always met (at worst by keeping everything).

Calibration runs once (`QdqQuantizer` reuses its tensor ranges for every variant). The QDQ variants are built with
ONNX Runtime's quantiser (`nodes_to_exclude`); this module only searches.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from rich.table import Table

from edgekd.errors import EdgeKDError

_LEVEL_SUFFIX = re.compile(r"_\d+$")
_INDEXED = re.compile(r"\.\d+$")
MAX_GROUP_DEPTH = 4
AP_EPSILON = 1e-9
"""AP losses within this of the budget count as within it (float sums of the COCO evaluation)."""


@dataclass(frozen=True)
class LayerGroup:
    """Quantisable nodes sharing a module scope (a backbone block, an FPN layer, one head tower)."""

    name: str
    nodes: tuple[str, ...]


def group_name(node: str) -> str:
    """The group of an ONNX node name from the PyTorch exporter (`/backbone/body/body.3/block/.../Conv`): its
    scope up to the first indexed module (`body.3`, `inner_blocks.0`, `conv.1`), at most MAX_GROUP_DEPTH deep,
    with the `_N` suffix of modules shared across pyramid levels dropped (`cls_logits_2` -> `cls_logits`)."""
    parts = [_LEVEL_SUFFIX.sub("", part) for part in node.strip("/").split("/")[:-1]]
    if not parts:
        return node
    kept = []
    for part in parts[:MAX_GROUP_DEPTH]:
        kept.append(part)
        if _INDEXED.search(part):
            break
    return "/" + "/".join(kept)


def layer_groups(nodes: Sequence[str]) -> list[LayerGroup]:
    """Quantisable node names grouped by `group_name`, groups in order of their first node in the graph."""
    grouped: dict[str, list[str]] = {}
    for node in nodes:
        grouped.setdefault(group_name(node), []).append(node)
    return [LayerGroup(name, tuple(members)) for name, members in grouped.items()]


@dataclass
class Measured:
    """AP metrics (percent: AP, AP50, kitti_moderate) of one QDQ variant and, when timed, its compute p50."""

    metrics: dict[str, float]
    latency_ms: float | None = None


Measure = Callable[[tuple[str, ...], bool], Measured]
"""(groups kept in float, time it?) -> the variant's metrics."""


@dataclass
class Sensitivity:
    """AP loss (points vs the FP32 export) with only `group` quantised."""

    group: str
    nodes: int
    metrics: dict[str, float]
    loss: dict[str, float]

    def to_dict(self) -> dict:
        return {"group": self.group, "nodes": self.nodes, **self.metrics, "loss": self.loss}


@dataclass
class SearchStep:
    """One evaluated variant: the `kept` groups in float (the most sensitive first), its AP and latency."""

    kept: tuple[str, ...]
    metrics: dict[str, float]
    ap_loss: float
    latency_ms: float | None
    within: bool

    def to_dict(self) -> dict:
        return {
            "kept_count": len(self.kept),
            "kept": list(self.kept),
            **self.metrics,
            "ap_loss": self.ap_loss,
            "latency_ms": self.latency_ms,
            "within_budget": self.within,
        }


@dataclass
class Int8Search:
    """The outcome of the search: reference, ranking, evaluated steps and the chosen step."""

    budget: float
    reference: dict[str, float]
    reference_latency_ms: float | None
    groups: list[LayerGroup]
    sensitivity: list[Sensitivity] = field(default_factory=list)
    steps: list[SearchStep] = field(default_factory=list)
    chosen: SearchStep | None = None

    @property
    def kept_nodes(self) -> list[str]:
        """Node names of the chosen float groups (what `nodes_to_exclude` got)."""
        members = {group.name: group.nodes for group in self.groups}
        return [node for name in self.chosen.kept for node in members[name]]

    def to_dict(self) -> dict:
        return {
            "budget_ap": self.budget,
            "method": "sensitivity: one group quantised at a time, AP on --data; fallback: bisection over the "
            "k most sensitive groups kept in float",
            "fp32": {**self.reference, "latency_ms": self.reference_latency_ms},
            "groups": len(self.groups),
            "sensitivity": [row.to_dict() for row in self.sensitivity],
            "steps": [step.to_dict() for step in sorted(self.steps, key=lambda s: len(s.kept))],
            "kept_groups": list(self.chosen.kept),
            "ap": self.chosen.metrics.get("AP"),
            "ap_loss": self.chosen.ap_loss,
            "latency_ms": self.chosen.latency_ms,
        }


def _loss(reference: dict[str, float], metrics: dict[str, float]) -> dict[str, float]:
    return {key: reference[key] - metrics[key] for key in reference if key in metrics}


def _rank(sensitivity: list[Sensitivity], order: dict[str, int]) -> list[Sensitivity]:
    def key(row: Sensitivity) -> tuple:
        changes = [-abs(row.loss.get(name, 0.0)) for name in ("AP", "kitti_moderate", "AP50")]
        return (*changes, -order[row.group])

    return sorted(sensitivity, key=key)


def search_fallback(
    groups: Sequence[LayerGroup],
    reference: dict[str, float],
    budget: float,
    measure: Measure,
    reference_latency_ms: float | None = None,
    progress: Callable[[str], None] | None = None,
) -> Int8Search:
    """Find the fewest most-sensitive groups to keep in float for an AP within `budget` points of the reference.

    `reference`: the FP32 export's metrics; `measure(kept, timed)` quantises all groups but `kept` and measures
    the variant. See the module docstring for the procedure.
    """
    if not budget >= 0:
        raise EdgeKDError(f"--int8-ap-budget {budget}: must be a number of AP points, 0 or more")
    if not groups:
        raise EdgeKDError("--int8-ap-budget: the graph has no quantisable Conv/Gemm/MatMul node")
    say = progress or (lambda text: None)
    search = Int8Search(budget, dict(reference), reference_latency_ms, list(groups))
    names = [group.name for group in groups]
    evaluated: dict[int, SearchStep] = {}

    def step(kept: tuple[str, ...]) -> SearchStep:
        measured = measure(kept, True)
        loss = reference["AP"] - measured.metrics["AP"]
        result = SearchStep(kept, measured.metrics, loss, measured.latency_ms, abs(loss) <= budget + AP_EPSILON)
        search.steps.append(result)
        say(f"INT8 search: {len(kept)} of {len(names)} groups in float: AP {measured.metrics['AP']:.2f} ({-loss:+.2f})")
        return result

    evaluated[0] = step(())
    if evaluated[0].within:
        search.chosen = evaluated[0]
        return search
    order = {name: index for index, name in enumerate(names)}
    for group in groups:
        measured = measure(tuple(name for name in names if name != group.name), False)
        row = Sensitivity(group.name, len(group.nodes), measured.metrics, _loss(reference, measured.metrics))
        search.sensitivity.append(row)
        say(f"INT8 sensitivity: {group.name} alone in INT8: AP loss {row.loss['AP']:+.2f}")
    search.sensitivity = _rank(search.sensitivity, order)
    ranked = tuple(row.group for row in search.sensitivity)
    low, high = 0, len(ranked)
    while high - low > 1:
        middle = (low + high) // 2
        evaluated[middle] = step(ranked[:middle])
        if evaluated[middle].within:
            high = middle
        else:
            low = middle
    if high not in evaluated:
        evaluated[high] = step(ranked[:high])
    search.chosen = evaluated[high]
    return search


def search_table(search: Int8Search) -> Table:
    """The evaluated steps as a rich table (groups kept in float, AP, loss, latency)."""
    table = Table(title=f"INT8 float-fallback search (budget {search.budget:g} AP points vs FP32 export)")
    for column in ("float groups", "AP", "AP loss", "compute p50 ms", "within", "last group kept"):
        table.add_column(column, justify="left" if column == "last group kept" else "right")
    table.add_row("FP32 export", f"{search.reference['AP']:.2f}", "", _ms(search.reference_latency_ms), "", "")
    for row in _step_rows(search):
        table.add_row(*row)
    table.caption = f"chosen: {len(search.chosen.kept)} of {len(search.groups)} groups in float"
    return table


def _ms(value: float | None) -> str:
    return "" if value is None else f"{value:.2f}"


def _step_rows(search: Int8Search) -> list[list[str]]:
    rows = []
    for step in sorted(search.steps, key=lambda s: len(s.kept)):
        mark = "yes" if step.within else "no"
        if step is search.chosen:
            mark += " (chosen)"
        last = step.kept[-1] if step.kept else ""
        rows.append(
            [str(len(step.kept)), f"{step.metrics['AP']:.2f}", f"{step.ap_loss:.2f}", _ms(step.latency_ms), mark, last]
        )
    return rows


def search_markdown(search: Int8Search, plot: str | None) -> str:
    """The parity report's INT8 search section: steps, the kept groups and the sensitivity ranking."""
    lines = [
        "## INT8 float-fallback search",
        "",
        f"Budget: {search.budget:g} COCO AP points against the FP32 export (AP {search.reference['AP']:.2f}, "
        f"compute p50 {_ms(search.reference_latency_ms) or 'n/a'} ms); {len(search.groups)} layer groups.",
        "",
        "| float groups | AP | AP loss | compute p50 ms | within budget | last group kept |",
        "|---:|---:|---:|---:|---|---|",
    ]
    lines += ["| " + " | ".join(row) + " |" for row in _step_rows(search)]
    kept = ", ".join(f"`{name}`" for name in search.chosen.kept) or "none"
    lines += ["", f"Kept in float: {kept} ({len(search.kept_nodes)} nodes)."]
    if plot:
        lines += ["", f"![AP vs groups kept in float]({plot})"]
    if search.sensitivity:
        lines += [
            "",
            "Sensitivity (one group quantised at a time), most sensitive first:",
            "",
            "| group | nodes | AP loss | KITTI Mod loss | AP50 loss |",
            "|---|---:|---:|---:|---:|",
        ]
        for row in search.sensitivity:
            loss = row.loss
            cells = [f"{loss.get(key, float('nan')):.2f}" for key in ("AP", "kitti_moderate", "AP50")]
            lines.append(f"| `{row.group}` | {row.nodes} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def plot_search(search: Int8Search, path: Path) -> None:
    """PNG of AP against the number of groups kept in float, the FP32 AP and the budget line."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from edgekd.atomic import atomic_output

    steps = sorted(search.steps, key=lambda s: len(s.kept))
    figure, axis = plt.subplots(figsize=(6, 3.5))
    axis.plot([len(s.kept) for s in steps], [s.metrics["AP"] for s in steps], "o-", label="INT8 QDQ")
    chosen = search.chosen
    axis.plot([len(chosen.kept)], [chosen.metrics["AP"]], "r*", markersize=14, label="chosen")
    reference = search.reference["AP"]
    axis.axhline(reference, color="gray", linestyle="--", label="FP32 export")
    axis.axhline(reference - search.budget, color="orange", linestyle=":", label=f"budget {search.budget:g}")
    axis.set_xlabel(f"layer groups kept in float (of {len(search.groups)})")
    axis.set_ylabel("COCO AP (%)")
    axis.legend(fontsize=8)
    figure.tight_layout()
    with atomic_output(path) as temporary:
        figure.savefig(temporary, format="png", dpi=100)
    plt.close(figure)
