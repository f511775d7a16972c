"""Latency of deployed artifacts: compute-only, device copies and end-to-end, per backend and batch size.

Phases (all after a first call, reported apart as first_call_ms, and `warmup` untimed calls):
- compute: the network alone on an input already in place (device memory on GPU), outputs left there;
- host_to_device / device_to_host (GPU): the input copy and the output copies, pinned host memory where the
  backend allows;
- end_to_end: a decoded frame in host memory -> resize to the network input -> inference (copies included) ->
  post-processing incl. NMS -> boxes in original pixels; its stages are timed inside the same runs.
Compute and copies use the backend's clock (CUDA events on the stream for torch/TensorRT on GPU, else
perf_counter around a call that returns when the work is done); end-to-end uses perf_counter.
Energy is measured over the timed calls of one phase (end-to-end where timed, what a deployed frame costs, else
compute), with the meter `edgekd.bench.energy.open_energy_meter` picks (docs/energy.md).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from edgekd.bench.energy import EnergyWindow, device_conditions, open_energy_meter
from edgekd.bench.frames import RANDOM_FRAME_SIZE, dataset_frames, preprocess_frames, random_frames
from edgekd.bench.memory import PeakRss
from edgekd.bench.onnx_complexity import onnx_complexity
from edgekd.bench.record import BenchRecord, BenchRun
from edgekd.bench.system import clock_warning, cpu_model, gpu_state, host_info
from edgekd.bench.timing import (
    Measurement,
    PerfCounterClock,
    Window,
    measure,
    stability_warning,
    summarize_measurement,
    summarize_times,
)
from edgekd.bench.trtexec import cross_check as trtexec_cross_check
from edgekd.data.records import Dataset, Detections
from edgekd.errors import EdgeKDError
from edgekd.runtime import (
    ModelInfo,
    Runner,
    RunnerOptions,
    check_artifact,
    check_dataset_classes,
    open_runner,
    predict_dataset,
    resolve_backend,
)
from edgekd.runtime.metadata import read_metadata

DEFAULT_SECONDS = 3.0
"""Time budget per phase when neither --iters nor --seconds is given."""
MAX_SECONDS = 86400.0
"""--seconds above a day per phase (or infinite, or NaN) is a typo, not a benchmark."""
STAGES: tuple[str, ...] = ("preprocess", "infer", "postprocess")


@dataclass
class BenchOptions:
    """Options of `edgekd bench` (see the command's help)."""

    backend: str = "auto"
    batches: tuple[int, ...] | None = None  # None: each artifact's own batch (exported batch, or 1)
    warmup: int = 10
    iters: int | None = None
    seconds: float | None = None  # None with iters None: DEFAULT_SECONDS
    end_to_end: bool = True
    data: Path | None = None
    split: str = "val"
    evaluate: bool = False
    backend_options: RunnerOptions = field(default_factory=RunnerOptions)

    def check(self) -> None:
        """Option combinations that cannot work, rejected before any model is loaded."""
        if self.iters is not None and self.seconds is not None:
            raise EdgeKDError("give either --iters N or --seconds S, not both")
        if self.iters is not None and self.iters < 2:
            raise EdgeKDError(f"--iters {self.iters}: need at least 2 timed calls for percentiles and spread")
        if self.seconds is not None and not 0 < self.seconds <= MAX_SECONDS:
            raise EdgeKDError(
                f"--seconds {self.seconds}: must be a positive number of seconds per phase, at most {MAX_SECONDS:g}"
            )
        if self.warmup < 0:
            raise EdgeKDError(f"--warmup {self.warmup}: must be 0 or more")
        if self.evaluate and self.data is None:
            raise EdgeKDError("--eval measures accuracy on a dataset: give --data DIR")
        threads = self.backend_options.threads
        if threads is not None and threads < 1:
            raise EdgeKDError(f"--threads {threads}: must be at least 1")
        for batch in self.batches or ():
            if batch < 1:
                raise EdgeKDError(f"--batch {batch}: batch sizes must be at least 1")

    @property
    def timed_iters(self) -> int | None:
        return self.iters

    @property
    def timed_seconds(self) -> float | None:
        """Seconds of timed calls per phase: --seconds, DEFAULT_SECONDS without --iters, None with --iters."""
        if self.seconds is not None:
            return self.seconds
        return DEFAULT_SECONDS if self.iters is None else None

    def settings(self) -> dict:
        return {
            "backend": self.backend,
            "batches": list(self.batches) if self.batches else None,
            "warmup": self.warmup,
            "iters": self.timed_iters,
            "seconds": self.timed_seconds,
            "end_to_end": self.end_to_end,
            "data": str(self.data) if self.data else None,
            "split": self.split if self.data else None,
            "evaluate": self.evaluate,
            **asdict(self.backend_options),
        }


def parse_batches(text: str) -> tuple[int, ...]:
    """'1,4,8' -> (1, 4, 8); order kept, duplicates dropped."""
    sizes: list[int] = []
    for part in text.split(","):
        part = part.strip()
        if not part.isdigit() or int(part) < 1:
            raise EdgeKDError(f"--batch '{text}': expected positive integers separated by commas, e.g. 1,4,8")
        if int(part) not in sizes:
            sizes.append(int(part))
    return tuple(sizes)


class _Timer:
    """`measure` with the options' warm-up and iteration budget (and a window around the timed calls)."""

    def __init__(self, options: BenchOptions) -> None:
        self.options = options

    def __call__(self, fn: Callable[[], object], clock, window: Window | None = None) -> Measurement:
        options = self.options
        return measure(
            fn, clock, warmup=options.warmup, iters=options.timed_iters, seconds=options.timed_seconds, window=window
        )


def time_end_to_end(
    runner: Runner, frames: list[np.ndarray], timer: _Timer, window: Window | None = None
) -> tuple[Measurement, dict[str, np.ndarray]]:
    """Time frames -> detections, with the seconds of each stage in the timed runs (inside `window`)."""
    stages: dict[str, list[float]] = {name: [] for name in STAGES}
    input_size = runner.info.input_size

    def pipeline() -> list[Detections]:
        start = time.perf_counter()
        images, scales = preprocess_frames(frames, input_size)
        preprocessed = time.perf_counter()
        outputs = runner.infer(images)
        inferred = time.perf_counter()
        detections = runner.decode(outputs, scales)
        done = time.perf_counter()
        for name, seconds in zip(STAGES, (preprocessed - start, inferred - preprocessed, done - inferred)):
            stages[name].append(seconds)
        return detections

    total = timer(pipeline, PerfCounterClock(), window)
    count = len(total.times)
    return total, {name: np.asarray(values[-count:]) for name, values in stages.items()}


def device_description(runner: Runner) -> str:
    """Where a runner runs, in words: the GPU's name, or the CPU model and its threads."""
    if runner.gpu:
        if runner.gpu_name:
            return runner.gpu_name
        state = gpu_state()
        return state["name"] if state else "CUDA GPU 0"
    return f"{cpu_model()} (threads={runner.threads or 'default'})"


class _Frames:
    """Decoded frames for end-to-end runs: the dataset's images with --data, else noise at KITTI resolution."""

    def __init__(self, options: BenchOptions) -> None:
        self.options = options
        self._datasets: dict[tuple[str, ...], Dataset] = {}

    def dataset(self, classes: tuple[str, ...]) -> Dataset:
        from edgekd.data.loader import load_dataset

        if classes not in self._datasets:
            self._datasets[classes] = load_dataset(self.options.data, self.options.split, classes=classes)
        return self._datasets[classes]

    def frames(self, classes: tuple[str, ...], count: int) -> tuple[list[np.ndarray], str]:
        if self.options.data is None:
            height, width = RANDOM_FRAME_SIZE
            return random_frames(count), f"uniform noise {width}x{height} (no --data)"
        dataset = self.dataset(classes)
        frames = dataset_frames(dataset, count)
        return frames, f"{self.options.data} ({self.options.split}), first {count} image(s)"


def bench_batch(runner: Runner, batch: int, options: BenchOptions, frames: _Frames, record: BenchRecord) -> None:
    """All phases of one batch size, with memory, GPU state, device conditions, energy and warnings, into
    `record`."""
    timer = _Timer(options)
    meter, record.energy_unavailable = open_energy_meter(runner.gpu)
    window = EnergyWindow(meter) if meter is not None else None
    energy_phase = "end_to_end" if options.end_to_end else "compute"
    peak = PeakRss()
    peak.start()
    runner.prepare(batch)
    runner.reset_device_peak()
    compute = timer(runner.compute, runner.clock, window if energy_phase == "compute" else None)
    phases = {"compute": summarize_measurement(compute, batch)}
    state = gpu_state() if runner.gpu else None  # clocks right after the compute loop
    record.conditions = device_conditions(runner.gpu)
    if runner.gpu:
        phases["host_to_device"] = summarize_measurement(timer(runner.host_to_device, runner.clock), batch)
        phases["device_to_host"] = summarize_measurement(timer(runner.device_to_host, runner.clock), batch)
    if options.end_to_end:
        images, record.frames = frames.frames(tuple(runner.info.classes), batch)
        total, stages = time_end_to_end(runner, images, timer, window)
        phases["end_to_end"] = {
            **summarize_measurement(total, batch),
            "stages": {name: summarize_times(times, batch) for name, times in stages.items()},
        }
    if window is not None:
        calls = phases[energy_phase]["iters"]
        record.energy, record.energy_unavailable = window.reading(energy_phase, calls * batch), window.problem
    throttling = record.conditions.gpu.throttling if record.conditions.gpu else ()
    warnings = [stability_warning(phase, stats) for phase, stats in phases.items()]
    warnings += [clock_warning(state, throttling), *record.conditions.warnings()]
    record.phases, record.gpu_state = phases, state
    record.memory = {**peak.to_dict(), **runner.device_memory()}
    record.warnings = [warning for warning in warnings if warning]


def bench_artifact(
    path: Path,
    backend: str,
    options: BenchOptions,
    frames: _Frames,
    progress: Callable[[str], None] | None = None,
) -> list[BenchRecord]:
    """Records of one artifact on one backend, one per batch size (skipped ones say why)."""
    baseline = PeakRss()
    baseline.start()
    with open_runner(path, backend, options.backend_options) as runner:
        if runner.info.kind == "onnx":
            runner.info.params, runner.info.gflops = onnx_complexity(path)
        records = []
        runnable = []
        for batch in options.batches or (runner.info.default_batch,):
            problem = runner.batch_problem(batch)
            if problem:
                records.append(BenchRecord.head(path, backend, batch, skipped=problem))
                continue
            if progress:
                progress(f"{path.name} [{backend}] batch {batch}")
            record = BenchRecord.head(path, backend, batch, device=device_description(runner), timer=runner.clock.name)
            record.file_size_mib = path.stat().st_size / 2**20
            record.describe(runner.info)
            bench_batch(runner, batch, options, frames, record)
            record.memory["baseline_rss_mib"] = baseline.baseline_mib
            if backend == "trt":  # trtexec times the same engine and batch (edgekd.bench.trtexec)
                compute = record.phases["compute"]
                record.trtexec = trtexec_cross_check(path, read_metadata(path), batch, compute, options.warmup)
                record.warnings += record.trtexec.warnings()
            records.append(record)
            runnable.append(batch)
        if options.evaluate and runnable:
            if progress:
                progress(f"{path.name} [{backend}] accuracy on {options.data}")
            dataset = frames.dataset(tuple(runner.info.classes))
            check_dataset_classes(runner.info.classes, dataset, path)
            accuracy = evaluate_runner(runner, dataset, runnable[0])
            for record in records:
                if record.skipped is None:
                    record.accuracy = accuracy
                    record.accuracy_data = f"{options.data} ({options.split}), batch {runnable[0]}"
    return records


def evaluate_runner(runner: Runner, dataset: Dataset, batch: int) -> dict:
    """COCO + KITTI metrics (the `edgekd eval` JSON layout) of the runner's own pipeline on `dataset`."""
    from edgekd.evaluate import evaluate_detections

    return evaluate_detections(dataset, predict_dataset(runner, dataset, batch)).to_dict()


GPU_BACKENDS = ("ort-cuda", "ort-trt", "trt")


@dataclass
class PlanItem:
    """One artifact on its backend: the batches it will measure, those it cannot run (batch -> why) and the
    phases timed per batch."""

    path: Path
    backend: str
    batches: tuple[int, ...]
    skipped: dict[int, str]
    phases: tuple[str, ...]


@dataclass
class BenchPlan:
    """What a bench will measure, worked out from the options and the artifacts' metadata before any model is
    loaded, so that its length and its skipped batches are known up front."""

    items: list[PlanItem]
    seconds: float | None  # timed seconds per phase; None with --iters
    iters: int | None
    warmup: int
    evaluate: bool

    @property
    def measurements(self) -> int:
        """Progress steps: one per measured batch, plus one accuracy run per artifact with --eval."""
        return sum(len(item.batches) + int(self.evaluate and bool(item.batches)) for item in self.items)

    @property
    def timed_seconds(self) -> float | None:
        """Seconds of timed calls in all, None with --iters (unknown before the first call)."""
        if self.seconds is None:
            return None
        return sum(len(item.batches) * len(item.phases) for item in self.items) * self.seconds

    def lines(self) -> list[str]:
        """The estimate and the skipped batches, in words."""
        budget = f"{self.seconds:g} s" if self.seconds is not None else f"{self.iters} calls"
        lines = []
        for item in self.items:
            batches = ",".join(str(batch) for batch in item.batches) or "none"
            lines.append(
                f"  {item.path} [{item.backend}]: batch {batches} x {len(item.phases)} phase(s) "
                f"({', '.join(item.phases)}) x {budget}"
            )
            for batch, why in item.skipped.items():
                lines.append(f"  {item.path} [{item.backend}]: batch {batch} will be skipped: {why}")
        total = sum(len(item.batches) * len(item.phases) for item in self.items)
        head = f"bench plan: {len(self.items)} artifact(s), {total} timed phase(s) of {budget} each"
        if self.timed_seconds is not None:
            head += f", about {_minutes(self.timed_seconds)} of timed calls"
        head += f" plus loading, first calls and {self.warmup} warm-up call(s) per phase"
        if self.evaluate:
            head += ", plus one accuracy run per artifact"
        return [head, *lines]


def _minutes(seconds: float) -> str:
    return f"{seconds:.0f} s" if seconds < 120 else f"{seconds / 60:.1f} min"


def _runs_on_gpu(backend: str, device: str) -> bool:
    if backend in GPU_BACKENDS:
        return True
    if backend != "torch" or device == "cpu":
        return False
    from edgekd.options import resolve_device

    return resolve_device(device).startswith("cuda")


def plan_bench(paths: list[Path], options: BenchOptions) -> BenchPlan:
    """Check the artifacts and work out the plan (see BenchPlan); an exported model's batch limits come from its
    metadata, a checkpoint runs any batch."""
    options.check()
    if not paths:
        raise EdgeKDError("give at least one artifact (.pt, .onnx or .engine)")
    items = []
    for path in paths:
        check_artifact(path)
        backend = resolve_backend(path, options.backend)
        info = None
        if path.suffix != ".pt":
            kind = "onnx" if path.suffix == ".onnx" else "engine"
            info = ModelInfo.from_metadata(read_metadata(path), kind, path.parent.name)
        wanted = options.batches or ((info.default_batch if info else 1),)
        skipped = {batch: info.batch_problem(batch) for batch in wanted if info and info.batch_problem(batch)}
        phases = ["compute"]
        if _runs_on_gpu(backend, options.backend_options.device):
            phases += ["host_to_device", "device_to_host"]
        if options.end_to_end:
            phases.append("end_to_end")
        runnable = tuple(batch for batch in wanted if batch not in skipped)
        items.append(PlanItem(path, backend, runnable, skipped, tuple(phases)))
    if not any(item.batches for item in items):
        reasons = "; ".join(f"{item.path} batch {b}: {why}" for item in items for b, why in item.skipped.items())
        raise EdgeKDError(f"no batch size could run: {reasons}")
    return BenchPlan(items, options.timed_seconds, options.timed_iters, options.warmup, options.evaluate)


def run_bench(
    paths: list[Path],
    options: BenchOptions,
    progress: Callable[[str], None] | None = None,
    command: str = "",
    plan: BenchPlan | None = None,
) -> BenchRun:
    """Benchmark every artifact (`BenchRun.to_dict` is the bench JSON, see `edgekd.bench.schema`); `plan` is
    `plan_bench(paths, options)`, worked out here when not given."""
    plan = plan or plan_bench(paths, options)
    frames = _Frames(options)
    records: list[BenchRecord] = []
    for item in plan.items:
        records += bench_artifact(item.path, item.backend, options, frames, progress)
    if all(record.skipped is not None for record in records):
        reasons = "; ".join(f"{record.artifact}: {record.skipped}" for record in records)
        raise EdgeKDError(f"no batch size could run: {reasons}")
    created = datetime.now(timezone.utc).isoformat(timespec="seconds")
    return BenchRun(created, command, host_info(), options.settings(), records)
