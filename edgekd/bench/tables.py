"""The terminal tables of `edgekd bench`: compute-only statistics, then end-to-end stages, copies, memory and
energy per frame (where measured, docs/energy.md)."""

from __future__ import annotations

from pathlib import Path

from rich.markup import escape
from rich.table import Table

from edgekd.bench.record import BenchRecord, BenchRun
from edgekd.bench.timing import CV_WARN


def _fmt_ms(value: float) -> str:
    return f"{value:.3f}" if value < 1 else f"{value:.2f}" if value < 100 else f"{value:.1f}"


def _ms(stats: dict | None, key: str = "p50_ms") -> str:
    return "-" if stats is None else _fmt_ms(stats[key])


def _name(record: BenchRecord) -> str:
    path = Path(record.artifact)
    return escape(f"{path.parent.name}/{path.name}" if path.parent.name else path.name)


def _device_memory(memory: dict) -> str:
    for key in ("device_peak_mib", "device_used_mib"):
        if memory.get(key) is not None:
            return f"{memory[key]:.0f}"
    return "-"


def _mj(record: BenchRecord) -> str:
    return "-" if record.energy is None else f"{record.energy.mj_per_frame:.3f}"


def _table(title: str, caption: str | None, columns: tuple[str, ...], left: int = 2) -> Table:
    table = Table(title=title, caption=caption)
    for index, name in enumerate(columns):
        table.add_column(name, justify="left" if index < left else "right")
    return table


def bench_table(run: BenchRun) -> Table:
    """Compute-only latency (ms) per artifact, backend and batch; skipped batches say why."""
    table = _table(
        "Compute-only latency, ms (network alone, input already in place)",
        f"first call + {run.settings['warmup']} warm-up calls excluded; img/s = batch / p50; "
        f"CV = std / mean, over {CV_WARN:.0%} flagged",
        ("artifact", "backend", "prec", "batch", "min", "p50", "p90", "p99", "mean ± std", "CV", "img/s"),
    )
    for record in run.records:
        if record.skipped is not None:
            table.add_row(_name(record), record.backend, "", str(record.batch), "[yellow]skipped[/]")
            continue
        compute = record.phases["compute"]
        cv = f"{compute['cv']:.1%}"
        table.add_row(
            _name(record),
            record.backend,
            record.precision,
            str(record.batch),
            _ms(compute, "min_ms"),
            _ms(compute),
            _ms(compute, "p90_ms"),
            _ms(compute, "p99_ms"),
            f"{_fmt_ms(compute['mean_ms'])} ± {_fmt_ms(compute['std_ms'])}",
            f"[yellow]{cv}[/]" if compute["cv"] > CV_WARN else cv,
            f"{compute['throughput_ips']:.1f}",
        )
    return table


def detail_table(run: BenchRun) -> Table:
    """End-to-end p50/p99 and its stages' p50, device copies, first call, memory and, where any record measured
    it, energy per frame (mJ)."""
    energy = any(record.energy is not None for record in run.records)
    caption = "stages are p50 of the same runs; first = the first compute call (initialisation, autotuning)"
    if energy:
        caption += "; mJ = energy per frame over the timed calls of the record's energy phase"
    table = _table(
        "End-to-end (decoded frame -> boxes incl. NMS), copies and memory; ms / MiB",
        caption,
        (
            "artifact",
            "backend",
            "batch",
            "e2e p50",
            "e2e p99",
            "pre",
            "infer",
            "post",
            "H2D",
            "D2H",
            "first",
            "RSS",
            "GPU",
            *(["mJ"] if energy else []),
        ),
    )
    for record in run.records:
        if record.skipped is not None:
            continue
        phases = record.phases
        e2e = phases.get("end_to_end")
        stages = e2e["stages"] if e2e else {}
        table.add_row(
            _name(record),
            record.backend,
            str(record.batch),
            _ms(e2e),
            _ms(e2e, "p99_ms"),
            _ms(stages.get("preprocess")),
            _ms(stages.get("infer")),
            _ms(stages.get("postprocess")),
            _ms(phases.get("host_to_device"), "p50_ms"),
            _ms(phases.get("device_to_host"), "p50_ms"),
            _ms(phases["compute"], "first_call_ms"),
            f"{record.memory['peak_rss_mib']:.0f}",
            _device_memory(record.memory),
            *([_mj(record)] if energy else []),
        )
    return table
