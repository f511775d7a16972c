"""`edgekd report`: eval and bench JSONs -> one Markdown page, an accuracy-vs-latency PNG and report.json; where
bench records measured energy, a mJ/frame column beside latency and an energy-vs-accuracy PNG (docs/energy.md).

Finding the files: each input is a bench/eval JSON file (recognised by content) or a folder searched
recursively for `*.bench.json` and `*.eval.json`, and for JSON files of other names that hold a bench run or an eval
result naming its artifact (so `edgekd eval --json runs/student/eval.json` is found).

Pairing accuracy with latency (first rule that applies):
1. a bench record made with `edgekd bench --data DIR --eval` carries its own accuracy (same backend, same run);
2. an eval JSON with an "artifact" (or "model") field naming a file pairs with the bench records of that file;
3. `<artifact file name>.eval.json` (e.g. `model.onnx.eval.json`) pairs with the artifact of that name in the
   eval file's folder;
4. `NAME.eval.json` pairs with `NAME.bench.json` in the same folder when that bench file holds one artifact.
Paths are compared resolved (absolute). Eval files that pair with nothing are listed in the report's notes.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

from edgekd.bench.plots import PlotPoint, render_accuracy_latency, render_energy_accuracy
from edgekd.bench.record import BenchRecord, BenchRun
from edgekd.bench.schema import validate_bench_payload
from edgekd.errors import EdgeKDError
from edgekd.evaluate.report import validate_eval_payload

BENCH_SUFFIX = ".bench.json"
EVAL_SUFFIX = ".eval.json"
ARTIFACT_SUFFIXES = (".pt", ".onnx", ".engine")
LATENCY_PHASES = {"compute": "compute-only", "end_to_end": "end-to-end"}
PRECISION_ORDER = ("fp32", "fp16", "int8", "int8-qdq")
ENERGY_PLOT = "energy_accuracy.png"


@dataclass
class Inputs:
    """The JSON files a report combines, loaded: path -> payload."""

    bench: dict[Path, BenchRun] = field(default_factory=dict)
    evals: dict[Path, dict] = field(default_factory=dict)


def _load_json(path: Path) -> object:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise EdgeKDError(f"{path}: cannot read JSON ({error})") from None


def _is_eval(data: object) -> bool:
    return isinstance(data, dict) and isinstance(data.get("coco"), dict)


def _add(inputs: Inputs, path: Path, explicit: bool) -> None:
    data = _load_json(path)
    if isinstance(data, dict) and "format" in data and str(data["format"]).startswith("edgekd-bench"):
        validate_bench_payload(data, str(path))
        inputs.bench[path.resolve()] = BenchRun.from_dict(data)
    elif _is_eval(data):
        validate_eval_payload(data, str(path))
        inputs.evals[path.resolve()] = data
    elif explicit or path.name.endswith((BENCH_SUFFIX, EVAL_SUFFIX)):
        raise EdgeKDError(
            f"{path}: neither a bench JSON (`edgekd bench --json`) nor an eval JSON (`edgekd eval --json`, "
            "with a 'coco' section)"
        )


def _add_if_named(inputs: Inputs, path: Path) -> None:
    """A JSON file found in a folder under another name: kept when it is a bench JSON or an eval JSON that names
    its artifact (`edgekd eval --json` anywhere), silently passed over otherwise (other tools' JSON files)."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return
    is_bench = isinstance(data, dict) and str(data.get("format", "")).startswith("edgekd-bench")
    if is_bench or (_is_eval(data) and any(isinstance(data.get(key), str) for key in ("artifact", "model"))):
        _add(inputs, path, explicit=True)


def find_inputs(paths: list[Path]) -> Inputs:
    """Load every bench and eval JSON named or found under the given paths."""
    if not paths:
        raise EdgeKDError("give at least one run folder or bench/eval JSON file")
    inputs = Inputs()
    for path in paths:
        if not path.exists():
            raise EdgeKDError(f"report input not found: {path}")
        if path.is_dir():
            for found in sorted(path.rglob("*.json")):
                if found.name.endswith((BENCH_SUFFIX, EVAL_SUFFIX)):
                    _add(inputs, found, explicit=False)
                else:
                    _add_if_named(inputs, found)
        else:
            _add(inputs, path, explicit=True)
    if not inputs.bench:
        raise EdgeKDError(
            "no bench JSON found in " + ", ".join(map(str, paths)) + " (write one with `edgekd bench ... --json "
            "RUN/NAME.bench.json`)"
        )
    return inputs


def eval_artifact(path: Path, data: dict, inputs: Inputs) -> tuple[str | None, str]:
    """The resolved artifact path an eval JSON belongs to (or None) and how it was paired / why not."""
    for key in ("artifact", "model"):
        if isinstance(data.get(key), str):
            return str(Path(data[key]).resolve()), f"its '{key}' field"
    stem = path.name[: -len(EVAL_SUFFIX)] if path.name.endswith(EVAL_SUFFIX) else path.stem
    if Path(stem).suffix in ARTIFACT_SUFFIXES:
        return str((path.parent / stem).resolve()), f"its name ({stem})"
    sibling = (path.parent / f"{stem}{BENCH_SUFFIX}").resolve()
    if sibling in inputs.bench:
        artifacts = {record.artifact_path for record in inputs.bench[sibling].records}
        if len(artifacts) == 1:
            return artifacts.pop(), f"{sibling.name} beside it"
        count = len(artifacts)
        return None, f"{sibling.name} beside it holds {count} artifacts: name the eval file <artifact>{EVAL_SUFFIX}"
    return None, f"no 'artifact' field, no artifact-named file name and no {stem}{BENCH_SUFFIX} beside it"


@dataclass
class Row:
    """One timed bench record with the accuracy paired to it."""

    record: BenchRecord
    created: str
    bench_file: Path
    accuracy: dict | None = None
    accuracy_source: str | None = None
    filled: list[str] = field(default_factory=list)  # fields copied from a sibling artifact of the same checkpoint

    @property
    def key(self) -> tuple[str, str, int]:
        return self.record.artifact_path, self.record.backend, self.record.batch

    @property
    def display(self) -> str:
        path = Path(self.record.artifact)
        return f"{path.parent.name}/{path.name}" if path.parent.name else path.name

    def latency(self, phase: str) -> dict | None:
        return self.record.latency(phase)

    @property
    def mj_per_frame(self) -> float | None:
        return None if self.record.energy is None else self.record.energy.mj_per_frame


def coco_ap(accuracy: dict | None, metric: str = "AP") -> float | None:
    if not accuracy or "coco" not in accuracy:
        return None
    return accuracy["coco"].get(metric)


def kitti_moderate(accuracy: dict | None) -> tuple[float | None, dict[str, float]]:
    """Mean KITTI Moderate AP over the evaluated classes and the per-class values (AP|R40, percent)."""
    if not accuracy or not accuracy.get("kitti"):
        return None, {}
    per_class = {
        cls: values["moderate"] for cls, values in accuracy["kitti"].items() if values.get("moderate") is not None
    }
    if not per_class:
        return None, {}
    return sum(per_class.values()) / len(per_class), per_class


@dataclass
class Report:
    rows: list[Row]
    inputs: Inputs
    notes: list[str]
    energy_plot: Path | None = None  # energy_accuracy.png, written where records have energy and accuracy


def _sort_key(row: Row) -> tuple:
    precision = row.record.precision
    rank = PRECISION_ORDER.index(precision) if precision in PRECISION_ORDER else len(PRECISION_ORDER)
    return row.record.run, rank, row.record.backend, row.display, row.record.batch


def _fill_complexity(rows: list[Row]) -> None:
    """Engines carry no graph to count: take params/GFLOPs from an ONNX model (else the checkpoint) exported from
    the same source checkpoint (same sha256)."""
    donors: dict[str, BenchRecord] = {}
    for row in sorted(rows, key=lambda r: r.record.kind != "onnx"):
        sha = row.record.source_sha256
        if sha and row.record.gflops is not None and sha not in donors:
            donors[sha] = row.record
    for row in rows:
        donor = donors.get(row.record.source_sha256 or "")
        if donor is None:
            continue
        for key in ("params", "gflops"):
            if getattr(row.record, key) is None and getattr(donor, key) is not None:
                setattr(row.record, key, getattr(donor, key))
                row.filled.append(key)


def _latest_rows(inputs: Inputs, notes: list[str]) -> dict[tuple, Row]:
    """Timed records as rows, the latest per (artifact, backend, batch); skipped and duplicate ones noted."""
    rows: dict[tuple, Row] = {}
    for path, run in inputs.bench.items():
        for record in run.records:
            if record.skipped is not None:
                notes.append(f"{record.where}: skipped in {path.name}: {record.skipped}")
                continue
            row = Row(record, run.created, path)
            if record.accuracy:
                row.accuracy, row.accuracy_source = record.accuracy, f"bench --eval ({record.accuracy_data})"
            previous = rows.get(row.key)
            if previous is not None:
                newer, older = (row, previous) if row.created >= previous.created else (previous, row)
                notes.append(
                    f"{record.where}: measured twice; kept {newer.bench_file.name} ({newer.created}), "
                    f"dropped {older.bench_file.name} ({older.created})"
                )
                row = newer
            rows[row.key] = row
    return rows


def _pair_evals(inputs: Inputs, rows: list[Row], notes: list[str]) -> None:
    """Give rows without accuracy the eval JSON paired with their artifact (see the module doc)."""
    by_artifact: dict[str, list[Row]] = {}
    for row in rows:
        by_artifact.setdefault(row.record.artifact_path, []).append(row)
    for path, data in inputs.evals.items():
        artifact, how = eval_artifact(path, data, inputs)
        if artifact is None or artifact not in by_artifact:
            reason = how if artifact is None else f"paired by {how} with {artifact}, which no bench record measured"
            notes.append(f"eval file {path} not paired: {reason}")
            continue
        kept = sorted({row.accuracy_source for row in by_artifact[artifact] if row.accuracy is not None})
        for row in by_artifact[artifact]:
            if row.accuracy is None:
                row.accuracy, row.accuracy_source = data, f"{path.name} (paired by {how})"
        if kept:
            notes.append(
                f"eval file {path.name}: {Path(artifact).name} records with accuracy from {'; '.join(kept)} kept it"
            )


def build_report(inputs: Inputs) -> Report:
    """Rows (latest record per artifact, backend and batch) with accuracy paired as the module doc says."""
    notes: list[str] = []
    rows = sorted(_latest_rows(inputs, notes).values(), key=_sort_key)
    for row in rows:
        notes += [f"{row.record.where}: {warning}" for warning in row.record.warnings]
    _pair_evals(inputs, rows, notes)
    _fill_complexity(rows)
    return Report(rows, inputs, notes)


def plot_rows(report: Report, batch: int | None = None) -> list[Row]:
    """One row per artifact and backend: at `batch`, or at the smallest batch measured."""
    chosen: dict[tuple[str, str], Row] = {}
    for row in report.rows:
        if batch is not None and row.record.batch != batch:
            continue
        key = (row.record.artifact_path, row.record.backend)
        if key not in chosen or row.record.batch < chosen[key].record.batch:
            chosen[key] = row
    return [row for row in report.rows if chosen.get((row.record.artifact_path, row.record.backend)) is row]


def plot_points(rows: list[Row], phase: str) -> list[PlotPoint]:
    """Points from report rows (one per artifact and backend, see `plot_rows`), latency = `phase` p50."""
    points = []
    for row in rows:
        stats = row.latency(phase)
        if stats is None:
            continue
        points.append(
            PlotPoint(
                run=row.record.run,
                artifact=row.display,
                precision=row.record.precision,
                backend=row.record.backend,
                batch=row.record.batch,
                latency_ms=float(stats["p50_ms"]),
                coco_ap=coco_ap(row.accuracy),
                kitti_moderate=kitti_moderate(row.accuracy)[0],
                mj_per_frame=row.mj_per_frame,
            )
        )
    return points


def _fmt(value: float | None, digits: int = 2) -> str:
    return "n/a" if value is None else f"{value:.{digits}f}"


def _fmt_ms(value: float | None) -> str:
    """Milliseconds with three significant decimals below 1 ms, two below 100 ms, one above."""
    if value is None:
        return "n/a"
    return f"{value:.3f}" if value < 1 else f"{value:.2f}" if value < 100 else f"{value:.1f}"


def _markdown_table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(cells) + " |" for cells in rows]
    return "\n".join(lines)


def _has_energy(rows: list[Row]) -> bool:
    return any(row.mj_per_frame is not None for row in rows)


def summary_table(rows: list[Row], phase: str) -> str:
    """The reviewer's table: accuracy, size and latency per artifact and backend (and energy per frame where any
    row measured it)."""
    energy = _has_energy(rows)
    classes = list(dict.fromkeys(cls for row in rows for cls in kitti_moderate(row.accuracy)[1]))  # first seen
    header = [
        "run",
        "artifact",
        "precision",
        "backend",
        "device",
        "batch",
        "params (M)",
        "GFLOPs",
        "size (MiB)",
        "COCO AP",
        "AP50",
        "KITTI Mod AP",
        *[f"Mod {cls}" for cls in classes],
        f"{LATENCY_PHASES[phase]} p50 (ms)",
        "p90",
        "p99",
        "img/s",
        "CV",
        *(["mJ/frame"] if energy else []),
    ]
    body = []
    for row in rows:
        record, stats = row.record, row.latency(phase)
        moderate, per_class = kitti_moderate(row.accuracy)
        params = None if record.params is None else record.params / 1e6
        body.append(
            [
                record.run,
                row.display,
                record.precision,
                record.backend,
                record.device,
                str(record.batch),
                _fmt(params) + ("*" if "params" in row.filled else ""),
                _fmt(record.gflops, 3) + ("*" if "gflops" in row.filled else ""),
                _fmt(record.file_size_mib, 1),
                _fmt(coco_ap(row.accuracy)),
                _fmt(coco_ap(row.accuracy, "AP50")),
                _fmt(moderate),
                *[_fmt(per_class.get(cls)) for cls in classes],
                *(
                    ["n/a"] * 5
                    if stats is None
                    else [
                        _fmt_ms(stats["p50_ms"]),
                        _fmt_ms(stats["p90_ms"]),
                        _fmt_ms(stats["p99_ms"]),
                        _fmt(stats["throughput_ips"], 1),
                        f"{stats['cv']:.1%}",
                    ]
                ),
                *([_fmt(row.mj_per_frame, 3)] if energy else []),
            ]
        )
    return _markdown_table(header, body)


def batch_table(rows: list[Row]) -> str:
    """Every batch size: compute-only and end-to-end latency, copies, memory (and energy per frame where any row
    measured it)."""
    energy = _has_energy(rows)
    header = [
        "run",
        "artifact",
        "backend",
        "batch",
        "compute p50",
        "compute p99",
        "img/s",
        "e2e p50",
        "e2e p99",
        "e2e img/s",
        "H2D p50",
        "D2H p50",
        "peak RSS (MiB)",
        "GPU (MiB)",
        *(["mJ/frame"] if energy else []),
    ]
    body = []
    for row in rows:
        phases, memory = row.record.phases, row.record.memory
        compute, e2e = phases["compute"], phases.get("end_to_end")
        h2d, d2h = phases.get("host_to_device"), phases.get("device_to_host")
        gpu = next((memory[k] for k in ("device_peak_mib", "device_used_mib") if memory.get(k) is not None), None)
        body.append(
            [
                row.record.run,
                row.display,
                row.record.backend,
                str(row.record.batch),
                _fmt_ms(compute["p50_ms"]),
                _fmt_ms(compute["p99_ms"]),
                _fmt(compute["throughput_ips"], 1),
                _fmt_ms(e2e and e2e["p50_ms"]),
                _fmt_ms(e2e and e2e["p99_ms"]),
                _fmt(e2e and e2e["throughput_ips"], 1),
                _fmt_ms(h2d and h2d["p50_ms"]),
                _fmt_ms(d2h and d2h["p50_ms"]),
                _fmt(memory.get("peak_rss_mib"), 0),
                _fmt(gpu, 0),
                *([_fmt(row.mj_per_frame, 3)] if energy else []),
            ]
        )
    return _markdown_table(header, body)


def _hosts(inputs: Inputs) -> list[str]:
    lines = []
    for path, run in inputs.bench.items():
        host = run.host
        gpu = host.get("gpu") or {}
        gpu_text = f", GPU {gpu.get('name')} (driver {gpu.get('driver_version')})" if gpu else ""
        lines.append(
            f"- `{path.name}` ({run.created}): {host.get('cpu')}, {host.get('cpu_count')} cores"
            f"{gpu_text}; `{run.command or 'command not recorded'}`"
        )
    return lines


def _energy_lines(rows: list[Row]) -> list[str]:
    """How each row's energy was measured, or why it was not (docs/energy.md)."""
    lines = []
    for row in rows:
        energy, where = row.record.energy, f"{row.display} [{row.record.backend}] batch {row.record.batch}"
        if energy is not None:
            lines.append(
                f"- {where}: {energy.mj_per_frame:.3f} mJ/frame, {energy.mean_power_w:.2f} W over "
                f"{energy.window_s:.2f} s of {energy.phase} timed calls; {energy.method}; {energy.scope}"
            )
        elif row.record.energy_unavailable:
            lines.append(f"- {where}: not measured, {row.record.energy_unavailable}")
    return lines


def report_markdown(
    report: Report, plot_name: str, phase: str, batch: int | None, energy_plot: str | None = None
) -> str:
    chosen = plot_rows(report, batch)
    batch_text = f"batch {batch}" if batch is not None else "each artifact's smallest benchmarked batch"
    lines = [
        "# edgekd report: accuracy vs latency",
        "",
        f"Generated {datetime.now(timezone.utc).isoformat(timespec='seconds')} from "
        f"{len(report.inputs.bench)} bench file(s) and {len(report.inputs.evals)} eval file(s).",
        "",
        f"![accuracy vs latency]({plot_name})",
        "",
        *([f"![accuracy vs energy per frame]({energy_plot})", ""] if energy_plot else []),
        f"## Accuracy and latency ({batch_text}; latency = {LATENCY_PHASES[phase]} p50)",
        "",
        summary_table(chosen, phase),
        "",
        "## Latency by batch size (ms)",
        "",
        batch_table(report.rows),
        "",
        "## How the numbers were made",
        "",
        "- compute-only: the network alone, input already in (device) memory, outputs left there; end-to-end: a "
        "decoded frame in host memory -> resize -> inference incl. copies -> NMS -> boxes in original pixels.",
        "- first call and warm-up calls are excluded; GPU compute and copies are timed with CUDA events, the rest "
        "with a synchronised perf_counter; img/s = batch / p50; CV = std / mean (over 5% is flagged).",
        "- COCO AP: AP@[.5:.95] (%); KITTI Mod AP: AP|R40 at Moderate difficulty, mean over the evaluated classes.",
        "- params/GFLOPs: GFLOPs per image counting convolutions and matrix products (multiply-add = 2); ONNX "
        "counts are after batch-norm folding; * = taken from an export of the same checkpoint.",
        *(
            [
                "- mJ/frame: energy of the timed calls of one phase (end-to-end where timed) / (calls x batch), from "
                "the meter and over the scope each record names below (RAPL: the whole CPU package; NVML: the GPU "
                "board; Jetson: the whole module), all processes included.",
                "",
                "Energy:",
                "",
                *_energy_lines(report.rows),
            ]
            if _has_energy(report.rows)
            else []
        ),
        "",
        "Accuracy sources:",
        "",
        *[
            f"- {row.display} [{row.record.backend}]: {row.accuracy_source or 'none (no eval paired)'}"
            for row in chosen
        ],
        "",
        "Benchmark hosts:",
        "",
        *_hosts(report.inputs),
    ]
    if report.notes:
        lines += ["", "## Notes and warnings", "", *[f"- {note}" for note in report.notes]]
    return "\n".join(lines) + "\n"


def report_json(report: Report, phase: str, batch: int | None) -> dict:
    """The rows as data: what the table and the plot show."""
    return {
        "format": "edgekd-report-v1",
        "latency_phase": phase,
        "batch": batch,
        "points": [point.to_dict() for point in plot_points(plot_rows(report, batch), phase)],
        "rows": [
            {
                "record": row.record.to_dict(),
                "accuracy": row.accuracy,
                "accuracy_source": row.accuracy_source,
                "bench_file": str(row.bench_file),
            }
            for row in report.rows
        ],
        "notes": report.notes,
    }


def write_report(
    paths: list[Path], out_dir: Path, phase: str = "compute", batch: int | None = None
) -> tuple[Path, Path, Report]:
    """report.md, accuracy_latency.png, energy_accuracy.png (where records have energy and COCO AP:
    `report.energy_plot`) and report.json in `out_dir`; returns (markdown, png, report)."""
    from edgekd.atomic import atomic_output, atomic_write_text, output_dir

    if phase not in LATENCY_PHASES:
        raise EdgeKDError(f"--latency {phase}: expected one of {', '.join(LATENCY_PHASES)}")
    if batch is not None and batch < 1:
        raise EdgeKDError(f"--batch {batch}: must be at least 1")
    report = build_report(find_inputs(paths))
    if batch is not None and not plot_rows(report, batch):
        batches = sorted({row.record.batch for row in report.rows})
        raise EdgeKDError(f"--batch {batch}: no record at that batch size (measured: {batches})")
    output_dir(out_dir, "-o")
    png = out_dir / "accuracy_latency.png"
    points = plot_points(plot_rows(report, batch), phase)
    with atomic_output(png) as temporary:
        render_accuracy_latency(points, temporary, LATENCY_PHASES[phase])
    if any(point.mj_per_frame is not None and point.coco_ap is not None for point in points):
        report.energy_plot = out_dir / ENERGY_PLOT
        with atomic_output(report.energy_plot) as temporary:
            render_energy_accuracy(points, temporary)
    markdown = out_dir / "report.md"
    energy_name = report.energy_plot.name if report.energy_plot else None
    atomic_write_text(markdown, report_markdown(report, png.name, phase, batch, energy_name))
    atomic_write_text(out_dir / "report.json", json.dumps(report_json(report, phase, batch), indent=2) + "\n")
    return markdown, png, report
