"""Check `edgekd bench`'s timer against the runtimes' own: its compute-only p50 must agree within 10%.

CPU (runs here): a small detector is exported with `edgekd export` (random weights: timing does not depend on
them), then, interleaved over several rounds in this one process with the same thread count:
- ours: `run_bench` with --backend ort-cpu, compute-only, batch 1 (what `edgekd bench` reports);
- plain loop: a fresh `onnxruntime.InferenceSession` and `session.run` timed with perf_counter;
- ONNX Runtime's profiler: the `model_run` durations it records itself (SessionOptions.enable_profiling), against
  edgekd's clock around the very same runs (profiling slows a session, so a separate loop would not compare).
Then ONNX Runtime's own perf tool shipped in the wheel, `python -m onnxruntime.tools.onnxruntime_test MODEL N`
(mean of N runs at its default threads, no warm-up), against our mean at default threads, in the same rounds.

GPU (--checkpoint for torch on CUDA, --engine for TensorRT): our CUDA-event p50 against a plain CUDA-event loop
around the same call (torch.cuda.Event; cuda-python events around execute_async_v3). Needs a GPU.

    python benchmarks/timer_check.py                          # CPU check, writes results/timer_check.*
    python benchmarks/timer_check.py --engine export/student/model_fp16.engine --checkpoint runs/student/best.pt
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from rich.console import Console

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import CACHE, write_results  # noqa: E402

from edgekd.bench.latency import BenchOptions, run_bench  # noqa: E402
from edgekd.bench.timing import PerfCounterClock, measure  # noqa: E402
from edgekd.runtime import RunnerOptions  # noqa: E402

TOLERANCE = 0.10
CLASSES = ("Car", "Pedestrian", "Cyclist")


def _arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="retinanet_mobilenet_v3_lite", help="zoo model exported for the CPU check")
    parser.add_argument("--img-size", default="640x192", help="network input WIDTHxHEIGHT")
    parser.add_argument("--threads", type=int, default=1, help="ONNX Runtime intra-op threads (CPU check)")
    parser.add_argument("--iters", type=int, default=30, help="timed calls per method and round")
    parser.add_argument("--warmup", type=int, default=10)
    parser.add_argument("--rounds", type=int, default=10, help="interleaved rounds (median of per-round ratios)")
    parser.add_argument("--tool-iters", type=int, default=50, help="runs of onnxruntime_test per round")
    parser.add_argument("--checkpoint", type=Path, help="GPU check: a .pt timed with torch on CUDA")
    parser.add_argument("--engine", type=Path, help="GPU check: a TensorRT .engine")
    return parser.parse_args()


def export_model(model: str, img_size: str, console: Console) -> Path:
    """A random-weight checkpoint of `model` exported to ONNX (static batch 1, host NMS); cached."""
    import torch

    from edgekd.export.run import ExportOptions, export_checkpoint
    from edgekd.models.checkpoint import atomic_torch_save, detector_payload
    from edgekd.models.detector import DetectorConfig
    from edgekd.models.zoo import build_detector
    from edgekd.options import parse_size

    root = CACHE / "timer_check" / f"{model}_{img_size}"
    onnx_path = root / "export" / "model.onnx"
    if onnx_path.is_file():
        console.print(f"[dim]reusing {onnx_path}[/]")
        return onnx_path
    torch.manual_seed(0)
    detector = build_detector(DetectorConfig(model, CLASSES, parse_size(img_size)))
    checkpoint = root / "runs" / "timer_check" / "best.pt"
    atomic_torch_save(detector_payload(detector), checkpoint)
    return export_checkpoint(checkpoint, ExportOptions(out_dir=onnx_path.parent), console).onnx


def _input(model: Path) -> np.ndarray:
    from edgekd.runtime.metadata import read_metadata

    height, width = read_metadata(model).input_size
    return np.random.default_rng(0).uniform(0, 255, (1, 3, height, width)).astype(np.float32)


def _session(model: Path, threads: int | None, profile_dir: str | None = None):
    import onnxruntime as ort

    options = ort.SessionOptions()
    if threads is not None:
        options.intra_op_num_threads = threads
    if profile_dir is not None:
        options.enable_profiling = True
        options.profile_file_prefix = str(Path(profile_dir) / "ort_profile")
    return ort.InferenceSession(str(model), sess_options=options, providers=["CPUExecutionProvider"])


def ours(model: Path, threads: int | None, warmup: int, iters: int) -> dict:
    options = BenchOptions(
        backend="ort-cpu",
        batches=(1,),
        warmup=warmup,
        iters=iters,
        end_to_end=False,
        backend_options=RunnerOptions(threads=threads),
    )
    return run_bench([model], options).records[0].phases["compute"]


def plain_loop(model: Path, threads: int | None, warmup: int, iters: int) -> np.ndarray:
    """Milliseconds of `session.run` calls, perf_counter around each."""
    session = _session(model, threads)
    feed = {session.get_inputs()[0].name: _input(model)}
    for _ in range(warmup + 1):
        session.run(None, feed)
    times = []
    for _ in range(iters):
        start = time.perf_counter()
        session.run(None, feed)
        times.append(time.perf_counter() - start)
    return np.asarray(times) * 1000


def profiler_loop(model: Path, threads: int | None, warmup: int, iters: int) -> tuple[np.ndarray, np.ndarray]:
    """The same `session.run` calls timed twice: by edgekd's clock (`measure` + PerfCounterClock, as `edgekd
    bench` times ort-cpu) and by ONNX Runtime's own profiler (its `model_run` events); ms, warm-up dropped.
    Profiling slows every run a little, so this compares the two clocks on identical runs."""
    with tempfile.TemporaryDirectory() as folder:
        session = _session(model, threads, folder)
        feed = {session.get_inputs()[0].name: _input(model)}
        mine = measure(lambda: session.run(None, feed), PerfCounterClock(), warmup=warmup, iters=iters).times
        trace = json.loads(Path(session.end_profiling()).read_text())
    runs = [event["dur"] for event in trace if event.get("cat") == "Session" and event.get("name") == "model_run"]
    return mine * 1000, np.asarray(runs[-iters:], dtype=np.float64) / 1000  # profiler: microseconds


def perf_tool(model: Path, iters: int) -> float:
    """Mean ms from `python -m onnxruntime.tools.onnxruntime_test MODEL N` (ONNX Runtime's perf tool)."""
    result = subprocess.run(
        [sys.executable, "-m", "onnxruntime.tools.onnxruntime_test", str(model), str(iters)],
        capture_output=True,
        text=True,
        check=True,
    )
    match = re.search(r"avg latency: ([0-9.eE+-]+) ms", result.stdout)
    if match is None:
        raise RuntimeError(f"onnxruntime_test printed no latency:\n{result.stdout}\n{result.stderr}")
    return float(match.group(1))


def _row(name: str, statistic: str, reference: list[float], mine: list[float], threads: int | None) -> dict:
    """Agreement of paired per-round values: the median over rounds of ours / reference (pairing each round
    cancels the machine's slow drift, which separate long runs would mix into the comparison)."""
    ratios = np.asarray(mine) / np.asarray(reference)
    ratio = float(np.median(ratios))
    return {
        "reference": name,
        "statistic": statistic,
        "threads": threads if threads is not None else "default",
        "reference_ms": float(np.median(reference)),
        "ours_ms": float(np.median(mine)),
        "ratio": ratio,
        "round_ratios": ratios.tolist(),
        "agrees": abs(ratio - 1) <= TOLERANCE,
    }


def cpu_check(model: Path, args: argparse.Namespace, console: Console) -> tuple[list[dict], dict]:
    """Short interleaved rounds: ours and the plain loop (their order alternating), the profiler with our clock on
    the same runs, then the perf tool and ours at default threads (the tool has no thread option)."""
    names = ("ours", "plain", "ours_profiled", "profiler", "tool", "ours_default")
    samples: dict[str, list[float]] = {name: [] for name in names}
    timing = (model, args.threads, args.warmup, args.iters)
    for round_index in range(args.rounds):
        console.print(f"round {round_index + 1}/{args.rounds}")
        pair = [
            ("ours", lambda: ours(*timing)["p50_ms"]),
            ("plain", lambda: float(np.percentile(plain_loop(*timing), 50))),
        ]
        for name, run in pair if round_index % 2 == 0 else pair[::-1]:
            samples[name].append(run())
        profiled, profiler = profiler_loop(*timing)
        samples["ours_profiled"].append(float(np.percentile(profiled, 50)))
        samples["profiler"].append(float(np.percentile(profiler, 50)))
        samples["tool"].append(perf_tool(model, args.tool_iters))
        samples["ours_default"].append(ours(model, None, args.warmup, args.tool_iters)["mean_ms"])
    rows = [
        _row("plain session.run loop (perf_counter)", "p50", samples["plain"], samples["ours"], args.threads),
        _row("ONNX Runtime profiler model_run events (same runs, profiling on)", "p50", samples["profiler"],
             samples["ours_profiled"], args.threads),
        _row(f"python -m onnxruntime.tools.onnxruntime_test MODEL {args.tool_iters}", "mean", samples["tool"],
             samples["ours_default"], None),
    ]  # fmt: skip
    return rows, samples


def torch_cuda_check(checkpoint: Path, args: argparse.Namespace) -> dict:
    """Our torch backend's CUDA-event p50 against a plain torch.cuda.Event loop around `raw`."""
    import torch

    from edgekd.models.checkpoint import load_detector

    options = BenchOptions(
        backend="torch",
        batches=(1,),
        warmup=args.warmup,
        iters=args.iters,
        end_to_end=False,
        backend_options=RunnerOptions(device="cuda"),
    )
    mine = run_bench([checkpoint], options).records[0].phases["compute"]["p50_ms"]
    detector, _ = load_detector(checkpoint, "cuda")
    height, width = detector.config.input_size
    images = torch.rand(1, 3, height, width, device="cuda") * 255
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    times = []
    with torch.inference_mode():
        for index in range(args.warmup + 1 + args.iters):
            start.record()
            detector.raw(images)
            end.record()
            end.synchronize()
            if index > args.warmup:
                times.append(start.elapsed_time(end))
    return _row("plain torch.cuda.Event loop around Detector.raw", "p50", [float(np.median(times))], [mine], None)


def engine_check(engine: Path, args: argparse.Namespace) -> dict:
    """Our TensorRT backend's CUDA-event p50 against a plain cuda-python event loop around execute_async_v3."""
    import tensorrt as trt
    from cuda.bindings import runtime as cudart

    from edgekd.runtime.metadata import read_metadata

    batch = read_metadata(engine).batch.opt
    options = BenchOptions(backend="trt", batches=(batch,), warmup=args.warmup, iters=args.iters, end_to_end=False)
    mine = run_bench([engine], options).records[0].phases["compute"]["p50_ms"]
    logger = trt.Logger(trt.Logger.WARNING)
    trt.init_libnvinfer_plugins(logger, "")
    runtime = trt.Runtime(logger)
    cuda_engine = runtime.deserialize_cuda_engine(engine.read_bytes())
    context = cuda_engine.create_execution_context()
    _, stream = cudart.cudaStreamCreate()
    names = [cuda_engine.get_tensor_name(i) for i in range(cuda_engine.num_io_tensors)]
    input_name = next(n for n in names if cuda_engine.get_tensor_mode(n) == trt.TensorIOMode.INPUT)
    shape = list(cuda_engine.get_tensor_shape(input_name))
    shape[0] = batch
    context.set_input_shape(input_name, shape)
    pointers = []
    for name in names:
        size = (
            int(np.prod(context.get_tensor_shape(name)))
            * np.dtype(trt.nptype(cuda_engine.get_tensor_dtype(name))).itemsize
        )
        _, pointer = cudart.cudaMalloc(size)
        pointers.append(pointer)
        context.set_tensor_address(name, pointer)
    _, start = cudart.cudaEventCreate()
    _, end = cudart.cudaEventCreate()
    times = []
    for index in range(args.warmup + 1 + args.iters):
        cudart.cudaEventRecord(start, stream)
        context.execute_async_v3(int(stream))
        cudart.cudaEventRecord(end, stream)
        cudart.cudaEventSynchronize(end)
        if index > args.warmup:
            times.append(cudart.cudaEventElapsedTime(start, end)[1])
    for pointer in pointers:
        cudart.cudaFree(pointer)
    reference = [float(np.median(times))]
    return _row("plain cuda-python event loop around execute_async_v3", "p50", reference, [mine], None)


def _markdown(rows: list[dict], gpu: list[dict], model: str, args: argparse.Namespace, gpu_note: str) -> str:
    lines = [
        "# Timer check: `edgekd bench` compute-only vs the runtimes' own timing",
        "",
        f"CPU: {model} exported to ONNX (static batch 1, host NMS, random weights), input {args.img_size}, "
        f"{args.rounds} interleaved rounds of {args.iters} timed calls after {args.warmup} warm-up calls (the perf "
        f"tool: {args.tool_iters} runs, its mean includes its first run). Times: medians over rounds; ratio: median "
        f"of the per-round ratios edgekd / reference. Agreement required: within {TOLERANCE:.0%}.",
        "",
        "| reference | statistic | threads | reference (ms) | edgekd bench (ms) | ratio | agrees |",
        "|---|---|---|---|---|---|---|",
    ]
    for row in rows + gpu:
        lines.append(
            f"| {row['reference']} | {row['statistic']} | {row['threads']} | {row['reference_ms']:.3f} | "
            f"{row['ours_ms']:.3f} | {row['ratio']:.3f} | {'yes' if row['agrees'] else '**no**'} |"
        )
    lines += ["", f"GPU: {gpu_note}"]
    return "\n".join(lines)


def main() -> None:
    args = _arguments()
    console = Console()
    model = export_model(args.model, args.img_size, console)
    load_before = os.getloadavg()
    rows, rounds = cpu_check(model, args, console)
    load_after = os.getloadavg()
    gpu = []
    if args.checkpoint is not None:
        gpu.append(torch_cuda_check(args.checkpoint, args))
    if args.engine is not None:
        gpu.append(engine_check(args.engine, args))
    gpu_note = (
        "compared on " + ", ".join(str(p) for p in (args.checkpoint, args.engine) if p is not None)
        if gpu
        else "pending: no GPU in this run (rerun with --checkpoint CKPT.pt and/or --engine MODEL.engine on the device)"
    )
    load = f"1-minute load average {load_before[0]:.1f} before, {load_after[0]:.1f} after ({os.cpu_count()} cores)"
    markdown = _markdown(rows, gpu, args.model, args, gpu_note) + f"\n\nMachine load during the CPU check: {load}."
    payload = {"model": args.model, "img_size": args.img_size, "onnx": str(model), "tolerance": TOLERANCE,
               "cpu": rows, "cpu_rounds_ms": rounds, "load": load, "gpu": gpu,
               "gpu_status": gpu_note}  # fmt: skip
    json_path, md_path = write_results("timer_check", payload, markdown)
    console.print(markdown)
    console.print(f"written {json_path} and {md_path}")
    if not all(row["agrees"] for row in rows + gpu):
        sys.exit(1)


if __name__ == "__main__":
    main()
