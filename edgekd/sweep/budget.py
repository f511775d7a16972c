"""Sweep budgets: `p99<=10ms` (latency of a bench phase) and `mJ<=50` (energy per frame), checked on bench records.

A latency budget names a statistic of a bench phase (`edgekd.bench.schema.STAT_KEYS`): min, mean, p50, p90, p99
or max, optionally prefixed by the phase, `end_to_end.` (the default: decoded frame in, boxes out, what a deadline
means) or `compute.` (the network alone); units ms, us or s. An energy budget reads the record's energy per frame
(`energy.mj_per_frame`, written by benches that measure energy); without it the budget is refused.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

from edgekd.bench.record import BenchRecord
from edgekd.errors import EdgeKDError

PHASES: tuple[str, ...] = ("end_to_end", "compute")
STATS: tuple[str, ...] = ("min", "mean", "p50", "p90", "p99", "max")
_UNITS_MS = {"ms": 1.0, "us": 1e-3, "s": 1e3}
_NUMBER = r"(?P<value>[-+]?[0-9.]+(?:[eE][-+]?[0-9]+)?)"
_LATENCY = re.compile(r"(?:(?P<phase>[a-z_]+)\.)?(?P<stat>[a-z0-9]+)(?P<op><=|<)" + _NUMBER + r"(?P<unit>[a-zA-Z]*)")
_ENERGY = re.compile(r"mJ(?P<op><=|<)" + _NUMBER + r"(?:mJ)?")
SYNTAX = (
    "expected STAT<=VALUE UNIT such as 'p99<=10ms' or 'compute.p50<=4ms' (STAT: min, mean, p50, p90, p99, max), "
    "or 'mJ<=50'"
)


@dataclass(frozen=True)
class Budget:
    """One limit: `kind` "latency" (a phase's statistic, in ms) or "energy" (mJ per frame); `strict` for '<'."""

    text: str
    kind: str
    limit: float
    strict: bool = False
    phase: str = "end_to_end"
    stat: str = "p99"

    @property
    def unit(self) -> str:
        return "ms" if self.kind == "latency" else "mJ"

    @property
    def label(self) -> str:
        """'end_to_end p99' or 'energy': what the value measures."""
        return f"{self.phase} {self.stat}" if self.kind == "latency" else "energy per frame"

    def value(self, record: BenchRecord) -> float | None:
        """The record's measured value for this budget, None when the record does not have it."""
        if self.kind == "energy":
            return record_energy_mj(record)
        stats = record.phases.get(self.phase)
        return None if stats is None else float(stats[f"{self.stat}_ms"])

    def holds(self, value: float) -> bool:
        return value < self.limit if self.strict else value <= self.limit

    def to_dict(self) -> dict:
        return {"budget": self.text, "kind": self.kind, "phase": self.phase if self.kind == "latency" else None,
                "stat": self.stat if self.kind == "latency" else None, "limit": self.limit, "unit": self.unit,
                "strict": self.strict}  # fmt: skip


def record_energy_mj(record: BenchRecord) -> float | None:
    """Energy per frame (mJ) of a bench record (`BenchRecord.energy`), None where not measured."""
    return None if record.energy is None else record.energy.mj_per_frame


def _number(text: str, budget: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise EdgeKDError(f"--budget '{budget}': '{text.strip()}' is not a number; {SYNTAX}") from None
    if not math.isfinite(value) or value <= 0:
        raise EdgeKDError(f"--budget '{budget}': the limit must be a positive finite number, got {text.strip()}")
    return value


def parse_budget(text: str) -> Budget:
    """One `--budget` value; a malformed one is an EdgeKDError quoting it and the expected syntax."""
    compact = "".join(text.split())
    energy = _ENERGY.fullmatch(compact)
    if energy:
        return Budget(text, "energy", _number(energy["value"], text), energy["op"] == "<")
    latency = _LATENCY.fullmatch(compact)
    if not latency:
        raise EdgeKDError(f"--budget '{text}': {SYNTAX}")
    phase = latency["phase"] or "end_to_end"
    if phase not in PHASES:
        raise EdgeKDError(f"--budget '{text}': unknown phase '{phase}' (phases: {', '.join(PHASES)})")
    if latency["stat"] not in STATS:
        raise EdgeKDError(f"--budget '{text}': unknown statistic '{latency['stat']}' (statistics: {', '.join(STATS)})")
    unit = latency["unit"]
    if unit not in _UNITS_MS:
        shown = f"'{unit}'" if unit else "none"
        raise EdgeKDError(f"--budget '{text}': latency unit {shown}; give ms, us or s (e.g. 'p99<=10ms')")
    limit = _number(latency["value"], text) * _UNITS_MS[unit]
    return Budget(text, "latency", limit, latency["op"] == "<", phase, latency["stat"])


def parse_budgets(texts: list[str]) -> list[Budget]:
    """Every `--budget`; at least one is needed, and a latency budget must come with any energy budget (the front
    is drawn against latency)."""
    if not texts:
        raise EdgeKDError("--budget: give at least one, e.g. --budget 'p99<=10ms'")
    budgets = [parse_budget(text) for text in texts]
    if not any(budget.kind == "latency" for budget in budgets):
        raise EdgeKDError("--budget: give a latency budget (e.g. 'p99<=10ms') with the energy one")
    return budgets


@dataclass(frozen=True)
class Verdict:
    """A candidate against every budget: the measured values (None: not measured) and whether all hold."""

    values: dict[str, float | None]
    met: bool
    failed: tuple[str, ...]


def judge(record: BenchRecord, budgets: list[Budget]) -> Verdict:
    """Check a timed record against the budgets; an energy budget on a record without energy is an error."""
    values: dict[str, float | None] = {}
    failed = []
    for budget in budgets:
        value = budget.value(record)
        if value is None:
            if budget.kind == "energy":
                raise EdgeKDError(
                    f"--budget '{budget.text}': the bench record of {record.where} has no energy measurement "
                    "(field 'energy.mj_per_frame'); bench where energy is measured, or drop the energy budget"
                )
            raise EdgeKDError(
                f"--budget '{budget.text}': the bench record of {record.where} has no '{budget.phase}' phase "
                "(bench with end-to-end timing, or budget 'compute.' latency)"
            )
        values[budget.text] = value
        if not budget.holds(value):
            failed.append(f"{budget.label} {value:.3f} {budget.unit} over the budget '{budget.text}'")
    return Verdict(values, not failed, tuple(failed))
