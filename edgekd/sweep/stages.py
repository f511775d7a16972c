"""The two stages of `edgekd sweep` (docs/sweep.md), each cached in the sweep folder so an interrupted sweep continues.

Stage 1 (latency, no training): every candidate is built with random weights, exported to ONNX as `edgekd export`
does (`export_checkpoint`, parity on random input) and timed by the bench (`run_bench`, the runtime's runners);
latency does not depend on the weights. Its bench record is added to `stage1.json` (atomically) as soon as it is
measured, so a rerun times only what is missing. With `--latency-from`, the records come from a bench JSON made
on the target instead. Params and GFLOPs come from the PyTorch model (`edgekd.models.complexity`).

Stage 2 (accuracy): the `top` candidates that meet every budget and can be distilled from the teacher, ranked by
GFLOPs (the capacity proxy: see `CAPACITY_PROXY`), are distilled with the recipe (`distill_cached`: a finished run
is reused, an interrupted one resumes from last.pt), exported with the parity gate on the validation split and
evaluated from the exported ONNX (COCO AP, KITTI AP|R40 per class and difficulty); each result is added to
`stage2.json` as it finishes.

Distillation needs the teacher's input size (features align cell for cell: `edgekd.distill.run.check_input_size`),
so candidates at other input sizes are timed and reported but not distilled.
"""

from __future__ import annotations

import hashlib
import json
import shlex
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

from rich.console import Console
from rich.markup import escape

from edgekd.atomic import atomic_write_text
from edgekd.bench.record import BenchRecord, BenchRun
from edgekd.errors import EdgeKDError
from edgekd.evaluate.result import EvalResult
from edgekd.sweep.budget import Budget, Verdict, judge
from edgekd.sweep.candidates import Candidate

T = TypeVar("T")

STAGE1_FORMAT = "edgekd-sweep-stage1-v1"
STAGE2_FORMAT = "edgekd-sweep-stage2-v1"
CAPACITY_PROXY = "gflops"
CAPACITY_REASON = (
    "candidates inside the budget are distilled in order of GFLOPs (most first): at the one input size distillation "
    "runs at, the compute a detector spends per image is its capacity, and GFLOPs see the dense FPN and head "
    "convolutions (the difference between a _lite and a full-width student) that the parameter count barely does"
)


@dataclass(frozen=True)
class SweepConfig:
    """Everything a sweep is asked to do (`edgekd sweep` options, parsed and checked)."""

    teacher: Path
    data: Path
    out: Path
    budgets: list[Budget]
    candidates: list[Candidate]
    recipe: Path
    backend: str = "ort-cpu"
    backend_given: bool = False
    batch: int = 1
    top: int = 3
    epochs: int | None = None
    train_batch: int | None = None
    device: str = "cpu"
    seed: int = 0
    warmup: int = 10
    iters: int = 100
    threads: int | None = None
    train_split: str = "train"
    val_split: str = "val"
    latency_from: Path | None = None
    export_only: bool = False


@dataclass
class Trained:
    """Stage 2 of one candidate: its run, its export (or why the parity gate refused it) and its accuracy."""

    run_dir: str
    checkpoint: str
    onnx: str | None
    parity_error: str | None
    result: EvalResult | None

    @property
    def score(self) -> float | None:
        """The accuracy the sweep ranks by: mean KITTI Moderate AP|R40 when the data are KITTI, else COCO AP."""
        if self.result is None:
            return None
        summary = self.result.summary()
        return summary.get("kitti_moderate", summary["AP"])

    def to_dict(self) -> dict:
        return {
            "run_dir": self.run_dir,
            "checkpoint": self.checkpoint,
            "onnx": self.onnx,
            "parity_error": self.parity_error,
            "result": None if self.result is None else self.result.to_dict(),
        }

    @classmethod
    def from_dict(cls, data: dict) -> Trained:
        result = None if data["result"] is None else EvalResult.from_dict(data["result"], "stage2.json")
        return cls(data["run_dir"], data["checkpoint"], data["onnx"], data["parity_error"], result)


@dataclass
class Row:
    """One candidate through the sweep: size, stage-1 record and verdict, whether and how it was distilled."""

    candidate: Candidate
    params: int
    gflops: float
    not_distillable: str | None
    record: BenchRecord | None = None
    verdict: Verdict | None = None
    selected: bool = False
    trained: Trained | None = None
    pareto: bool = False
    seconds: dict[str, float] = field(default_factory=dict)  # stage -> seconds its work took when it was done

    @property
    def met(self) -> bool:
        return self.verdict is not None and self.verdict.met


@dataclass
class SweepResult:
    """The sweep's rows, the recommended one (None when no trained candidate met the budget) and stage timings."""

    config: SweepConfig
    rows: list[Row]
    recommended: Row | None
    latency_source: str
    seconds: dict[str, float] = field(default_factory=dict)
    teacher_model: str = ""
    teacher_size: tuple[int, int] = (0, 0)


def fingerprint(data: object) -> str:
    """A short hash of a JSON-able value: what a cached result was made with."""
    return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()[:12]


@dataclass
class StageState:
    """A stage file's entries by candidate and the seconds each candidate's work took when it was done."""

    entries: dict = field(default_factory=dict)
    seconds: dict[str, float] = field(default_factory=dict)


def _read_state(path: Path, fmt: str, key: str, console: Console) -> StageState:
    """The cached entries of a stage file made with the same settings (`key`); empty when absent or stale."""
    if not path.is_file():
        return StageState()
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        console.print(f"[yellow]note:[/] {escape(str(path))} is unreadable; starting that stage afresh")
        return StageState()
    if not isinstance(data, dict) or data.get("format") != fmt or data.get("settings") != key:
        console.print(f"[yellow]note:[/] {escape(str(path))} was made with other settings; starting that stage afresh")
        return StageState()
    entries, seconds = data.get("candidates"), data.get("seconds")
    if not isinstance(entries, dict):
        return StageState()
    if not isinstance(seconds, dict):
        seconds = {}
    return StageState(entries, {name: float(value) for name, value in seconds.items() if name in entries})


def _cached_entry(entries: dict, key: str, parse: Callable[[dict], T], path: Path, console: Console) -> T | None:
    """The stored entry of candidate `key` parsed by `parse`; None when there is none or it cannot be read (then
    the candidate is done again, with a note)."""
    cached = entries.get(key)
    if cached is None:
        return None
    try:
        return parse(cached)
    except (TypeError, KeyError, AttributeError, EdgeKDError):
        console.print(f"[yellow]note:[/] {escape(str(path))}: unreadable entry for {key}; doing it again")
        return None


def _write_state(path: Path, fmt: str, key: str, state: StageState) -> None:
    payload = {"format": fmt, "settings": key, "candidates": state.entries, "seconds": state.seconds}
    atomic_write_text(path, json.dumps(payload, indent=2, allow_nan=False) + "\n")


# ---------------------------------------------------------------- stage 1


def _build_rows(config: SweepConfig, teacher: object, console: Console) -> list[Row]:
    """Params, GFLOPs and the recipe's pairing check of every candidate (PyTorch models, random weights)."""
    import torch

    from edgekd.distill.losses import build_loss
    from edgekd.distill.pairing import check_losses, check_pair
    from edgekd.distill.recipe import load_recipe
    from edgekd.models.complexity import count_parameters, gflops
    from edgekd.models.detector import DetectorConfig
    from edgekd.models.zoo import build_detector

    recipe = load_recipe(config.recipe)
    teacher_size = tuple(teacher.config.input_size)
    size_text = f"{teacher_size[1]}x{teacher_size[0]}"
    rows = []
    for candidate in config.candidates:
        torch.manual_seed(config.seed)
        student = build_detector(DetectorConfig(candidate.model, tuple(teacher.config.classes), candidate.input_size))
        problem = None
        if candidate.input_size != teacher_size:
            problem = f"input size {candidate.size_text} is not the teacher's ({size_text})"
        else:
            try:
                check_pair(teacher, student)
                student_channels = [student.out_channels] * len(student.strides)
                teacher_channels = [teacher.out_channels] * len(teacher.strides)
                losses = {
                    name: build_loss(name, options, student_channels, teacher_channels, recipe.path)
                    for name, options in recipe.losses.items()
                }
                check_losses(teacher, student, losses, recipe.path)
            except EdgeKDError as error:
                problem = str(error)
        rows.append(Row(candidate, count_parameters(student), gflops(student), problem))
    return rows


def _untrained_onnx(config: SweepConfig, candidate: Candidate, classes: tuple[str, ...]) -> Path:
    """The candidate with random weights (seeded), exported to ONNX as `edgekd export` does; reused when present."""
    import torch

    from edgekd.export.run import ExportOptions, export_checkpoint
    from edgekd.models.checkpoint import atomic_torch_save, detector_payload
    from edgekd.models.detector import DetectorConfig
    from edgekd.models.zoo import build_detector
    from edgekd.runtime.metadata import BatchSpec, metadata_path, read_metadata

    folder = config.out / "candidates" / candidate.key
    onnx = folder / "onnx" / "model.onnx"
    if onnx.is_file() and metadata_path(onnx).is_file():
        try:
            meta = read_metadata(onnx)
        except EdgeKDError:
            meta = None
        wanted = (candidate.model, list(candidate.input_size), BatchSpec.static(config.batch), list(classes))
        if meta is not None and (meta.model, list(meta.input_size), meta.batch, list(meta.classes)) == wanted:
            return onnx
    torch.manual_seed(config.seed)
    detector = build_detector(DetectorConfig(candidate.model, classes, candidate.input_size)).eval()
    checkpoint = folder / "untrained.pt"
    atomic_torch_save(detector_payload(detector), checkpoint)
    options = ExportOptions(out_dir=onnx.parent, batch=BatchSpec.static(config.batch), threads=config.threads)
    return export_checkpoint(checkpoint, options, Console(quiet=True)).onnx


def bench_command(config: SweepConfig, paths: list[Path], json_path: Path) -> str:
    """The one `edgekd bench` command that times every candidate ONNX (run on the target, then --latency-from)."""
    parts = ["edgekd", "bench", *(str(p) for p in paths), "--backend", config.backend, "--batch", str(config.batch)]
    parts += ["--warmup", str(config.warmup), "--iters", str(config.iters), "--json", str(json_path)]
    if config.threads is not None:
        parts += ["--threads", str(config.threads)]
    return " ".join(shlex.quote(part) for part in parts)


def export_candidates(
    config: SweepConfig, rows: list[Row], classes: tuple[str, ...], console: Console
) -> tuple[list[Path], str]:
    """`--export-only`: every candidate's untrained ONNX, and the bench command to run on the target (also written
    to bench_command.txt in the sweep folder)."""
    paths = []
    for row in rows:
        console.print(f"exporting {row.candidate.key}")
        paths.append(_untrained_onnx(config, row.candidate, classes))
    command = bench_command(config, paths, config.out / "candidates.bench.json")
    atomic_write_text(config.out / "bench_command.txt", command + "\n")
    return paths, command


def measure_latency(config: SweepConfig, rows: list[Row], classes: tuple[str, ...], console: Console) -> None:
    """Stage 1 on this machine: export and time each candidate not yet in stage1.json; add each record as it ends."""
    from edgekd.bench.latency import BenchOptions, run_bench
    from edgekd.runtime import RunnerOptions

    options = BenchOptions(
        backend=config.backend,
        batches=(config.batch,),
        warmup=config.warmup,
        iters=config.iters,
        backend_options=RunnerOptions(threads=config.threads),
    )
    options.check()
    key = fingerprint({"bench": options.settings(), "classes": list(classes), "seed": config.seed})
    path = config.out / "stage1.json"
    state = _read_state(path, STAGE1_FORMAT, key, console)
    for index, row in enumerate(rows, 1):
        name = row.candidate.key
        row.record = _cached_entry(state.entries, name, BenchRecord.from_dict, path, console)
        if row.record is None:
            console.print(f"stage 1 [{index}/{len(rows)}]: export and time {name} on {config.backend}")
            start = time.perf_counter()
            onnx = _untrained_onnx(config, row.candidate, classes)
            row.record = run_bench([onnx], options).records[0]
            state.entries[name], state.seconds[name] = row.record.to_dict(), time.perf_counter() - start
            _write_state(path, STAGE1_FORMAT, key, state)
        if name in state.seconds:
            row.seconds["stage1"] = state.seconds[name]


def load_latency(config: SweepConfig, rows: list[Row]) -> str:
    """Stage 1 from a bench JSON made elsewhere (`--latency-from`): each candidate's record, matched by model, input
    size and batch (and backend with --backend). Returns where the records were measured, in words."""
    from edgekd.bench.schema import validate_bench_payload

    path = config.latency_from
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise EdgeKDError(f"--latency-from {path}: cannot read JSON ({error})") from None
    validate_bench_payload(data, f"--latency-from {path}")
    run = BenchRun.from_dict(data)
    missing = []
    for row in rows:
        candidate = row.candidate
        found = [
            record
            for record in run.records
            if record.skipped is None
            and record.model == candidate.model
            and tuple(record.input_size) == candidate.input_size
            and record.batch == config.batch
            and (not config.backend_given or record.backend == config.backend)
        ]
        if not found:
            missing.append(candidate.key)
            continue
        if len({record.backend for record in found}) > 1:
            backends = ", ".join(sorted({record.backend for record in found}))
            raise EdgeKDError(
                f"--latency-from {path}: {candidate.key} was timed on several backends ({backends}); "
                "choose one with --backend"
            )
        row.record = found[0]
    if missing:
        raise EdgeKDError(
            f"--latency-from {path}: no timed record at batch {config.batch}"
            + (f" on {config.backend}" if config.backend_given else "")
            + f" for {', '.join(missing)} (run the command in bench_command.txt of `edgekd sweep --export-only`)"
        )
    devices = sorted({row.record.device for row in rows})
    backends = sorted({row.record.backend for row in rows})
    return f"{path} ({', '.join(backends)} on {', '.join(devices)}; bench of {run.created})"


# ---------------------------------------------------------------- stage 2


def select(rows: list[Row], top: int) -> list[Row]:
    """The `top` rows inside the budget that can be distilled, most GFLOPs first (ties: more params, then name)."""
    eligible = [row for row in rows if row.met and row.not_distillable is None]
    eligible.sort(key=lambda row: (-row.gflops, -row.params, row.candidate.key))
    for row in eligible[:top]:
        row.selected = True
    return eligible[:top]


def _train_options(config: SweepConfig, recipe: object) -> object:
    from edgekd.distill.run import schedule_options
    from edgekd.train.trainer import TrainOptions

    base = TrainOptions(seed=config.seed, device=config.device, quiet=True)
    return schedule_options(recipe, base, {"epochs": config.epochs, "batch": config.train_batch})


def distill_selected(
    config: SweepConfig,
    selected: list[Row],
    teacher_sha: str,
    console: Console,
    datasets: Callable[[], tuple[object, object]],
) -> None:
    """Stage 2: distil, export (parity gate on the validation split) and evaluate each selected row; a finished
    candidate (in stage2.json, with the same settings) is reused, a finished run is not re-trained."""
    from dataclasses import asdict

    from edgekd.distill.recipe import load_recipe

    recipe = load_recipe(config.recipe)
    options = _train_options(config, recipe)
    settings = {
        "teacher_sha256": teacher_sha,
        "recipe": {**recipe.to_dict(), "path": None},
        "train": {key: value for key, value in asdict(options).items() if key not in ("device", "quiet", "workers")},
        "data": str(config.data.resolve()),
        "splits": [config.train_split, config.val_split],
        "batch": config.batch,
    }
    key = fingerprint(settings)
    path = config.out / "stage2.json"
    state = _read_state(path, STAGE2_FORMAT, key, console)
    for index, row in enumerate(selected, 1):
        row.trained = _cached_entry(state.entries, row.candidate.key, Trained.from_dict, path, console)
        if row.trained is None:
            start = time.perf_counter()
            row.trained = _distill_one(config, row, recipe, options, key, datasets, console, f"{index}/{len(selected)}")
            state.entries[row.candidate.key] = row.trained.to_dict()
            state.seconds[row.candidate.key] = time.perf_counter() - start
            _write_state(path, STAGE2_FORMAT, key, state)
        if row.candidate.key in state.seconds:
            row.seconds["stage2"] = state.seconds[row.candidate.key]


def _distill_one(
    config: SweepConfig,
    row: Row,
    recipe: object,
    options: object,
    key: str,
    datasets: Callable[[], tuple[object, object]],
    console: Console,
    position: str,
) -> Trained:
    """Distil one selected candidate, export its best checkpoint through the parity gate and evaluate the ONNX."""
    from edgekd.evaluate import evaluate_detections
    from edgekd.export.run import ExportOptions, export_checkpoint
    from edgekd.pipeline import distill_cached
    from edgekd.runtime import predict_artifact
    from edgekd.runtime.metadata import BatchSpec

    train, val = datasets()
    run_dir = config.out / "runs" / f"{row.candidate.key}-{key}"
    console.print(f"stage 2 [{position}]: distil {row.candidate.key} with {recipe.name}")
    best = distill_cached(run_dir, config.teacher, row.candidate.model, recipe, train, val, options, console)
    export = ExportOptions(
        out_dir=run_dir / "export",
        batch=BatchSpec.static(config.batch),
        data=config.data,
        split=config.val_split,
        threads=config.threads,
    )
    onnx, parity_error, result = None, None, None
    try:
        onnx = export_checkpoint(best, export, Console(quiet=True)).onnx
    except EdgeKDError as error:
        parity_error = str(error)
        console.print(f"[yellow]warning:[/] {escape(row.candidate.key)}: {escape(parity_error)}")
    if onnx is not None:
        result = evaluate_detections(val, predict_artifact(onnx, val, threads=config.threads))
    return Trained(str(run_dir), str(best), None if onnx is None else str(onnx), parity_error, result)


def mark_pareto(rows: list[Row], budget: Budget) -> None:
    """Mark the trained rows no other trained row beats on both the latency budget's value and accuracy."""
    points = [row for row in rows if row.trained is not None and row.trained.score is not None and row.record]
    for row in points:
        latency, score = budget.value(row.record), row.trained.score
        row.pareto = not any(
            budget.value(other.record) <= latency
            and other.trained.score >= score
            and (budget.value(other.record) < latency or other.trained.score > score)
            for other in points
        )


def recommend(rows: list[Row], budget: Budget) -> Row | None:
    """The most accurate trained row that met every budget and passed the parity gate (ties: the faster one on
    the latency `budget`'s measure)."""
    ready = [row for row in rows if row.met and row.trained is not None and row.trained.score is not None]
    if not ready:
        return None
    return max(ready, key=lambda row: (row.trained.score, -budget.value(row.record)))


# ---------------------------------------------------------------- the sweep


def _prepare(config: SweepConfig, console: Console) -> tuple[object, list[Row]]:
    from edgekd.models.checkpoint import load_detector

    teacher, _ = load_detector(config.teacher)
    return teacher, _build_rows(config, teacher, console)


def run_export_only(config: SweepConfig, console: Console) -> tuple[list[Path], str]:
    """`--export-only`: the candidates' untrained ONNX files and the bench command to run on the target."""
    teacher, rows = _prepare(config, console)
    return export_candidates(config, rows, tuple(teacher.config.classes), console)


def run_sweep(config: SweepConfig, console: Console) -> SweepResult:
    """Stage 1 (timed here, or read from `latency_from`), the budget verdicts, then stage 2 and the recommendation."""
    from edgekd.data.loader import load_dataset
    from edgekd.runtime.metadata import file_sha256

    seconds: dict[str, float] = {}
    start = time.perf_counter()
    teacher, rows = _prepare(config, console)
    classes = tuple(teacher.config.classes)
    if config.latency_from is not None:
        source = load_latency(config, rows)
    else:
        measure_latency(config, rows, classes, console)
        devices = ", ".join(sorted({row.record.device for row in rows}))
        source = f"measured here by edgekd sweep ({config.backend} on {devices})"
    for row in rows:
        if row.record.skipped is not None:
            row.verdict = Verdict({}, False, (f"not timed: {row.record.skipped}",))
        else:
            row.verdict = judge(row.record, config.budgets)
    seconds["stage1"] = time.perf_counter() - start

    start = time.perf_counter()
    loaded: list[tuple[object, object]] = []

    def datasets() -> tuple[object, object]:
        if not loaded:
            train = load_dataset(config.data, config.train_split, classes=classes)
            loaded.append((train, load_dataset(config.data, config.val_split, classes=classes)))
        return loaded[0]

    selected = select(rows, config.top)
    distill_selected(config, selected, file_sha256(config.teacher), console, datasets)
    seconds["stage2"] = time.perf_counter() - start
    latency_budget = next(budget for budget in config.budgets if budget.kind == "latency")
    mark_pareto(rows, latency_budget)
    size = tuple(teacher.config.input_size)
    return SweepResult(config, rows, recommend(rows, latency_budget), source, seconds, teacher.config.name, size)
