"""Why is INT8 slower than FP32 on ONNX Runtime's CPU provider, and which quantiser options fix it?

retinanet_mobilenet_v3_lite (random weights: latency does not depend on them) at 320x96, batch 1, exported as
`edgekd export` does (raw graph, host NMS), then quantised by `edgekd.export.quantize.QdqQuantizer` in several
forms. In ONE process, interleaved round by round so that a shared machine's load falls on every variant alike:
- compute latency (`OnnxRunner.compute` on an input in place, perf_counter) per variant;
- ONNX Runtime's profiler per variant: kernel time per op type of the *optimised* graph (after ONNX Runtime
  fused Q/DQ pairs into QLinearConv etc.), and how many nodes of each type ran.

Writes benchmarks/results/int8_profile.json/.md. Usage: python benchmarks/int8_profile.py [--rounds 15] [--threads 1]
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import write_results  # noqa: E402

MODEL = "retinanet_mobilenet_v3_lite"
CONTRAST = "retinanet_resnet18_lite"
"""A student of ReLU convolutions (nothing between its convs that ONNX Runtime cannot run in INT8), for contrast."""
CONTRAST_VARIANTS = (
    "S8S8 per-channel, heads float (edgekd default, --int8-target tensorrt)",
    "U8S8 per-channel, heads float (--int8-target cpu)",
)
INPUT_SIZE = (96, 320)
CLASSES = ("Car", "Pedestrian", "Cyclist")
CALIBRATION_IMAGES = 16
FLAGS = ("avx2", "avx512f", "avx512_vnni", "avx_vnni", "avx512_bf16", "amx_tile", "amx_int8", "amx_bf16")


def variants() -> dict[str, tuple[object, bool]]:
    """Variant name -> (QuantSettings, heads kept in float as edgekd's --int8-keep auto does)."""
    from edgekd.export.quantize import QuantSettings

    every_op = ("Conv", "Gemm", "MatMul", "Add", "Mul", "GlobalAveragePool", "HardSigmoid", "Concat", "Resize")
    return {
        "S8S8 per-channel, heads float (edgekd default, --int8-target tensorrt)": (QuantSettings("tensorrt"), True),
        "S8S8 per-channel, all convs": (QuantSettings("tensorrt"), False),
        "U8S8 per-channel, heads float (--int8-target cpu)": (QuantSettings("cpu"), True),
        "U8S8 per-channel, all convs": (QuantSettings("cpu"), False),
        "U8S8 per-tensor, all convs": (QuantSettings("cpu", per_channel=False), False),
        "U8S8 per-channel, convs + Add/Mul/Pool/HardSigmoid/Concat/Resize": (
            QuantSettings("cpu", op_types=every_op),
            False,
        ),
        "U8S8 QOperator format, all convs": (QuantSettings("cpu", operator_format=True), False),
        "S8S8 QOperator format, all convs": (QuantSettings("tensorrt", operator_format=True), False),
    }


def cpu_flags() -> dict:
    """The CPU model and which of the INT8/BF16 instruction-set flags /proc/cpuinfo lists."""
    from edgekd.bench.system import cpu_model

    text = Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").is_file() else ""
    present = set()
    for line in text.splitlines():
        if line.startswith("flags"):
            present = set(line.split(":", 1)[1].split())
            break
    return {"model": cpu_model(), "flags": {flag: flag in present for flag in FLAGS}}


def load_average() -> str:
    return subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()


def profile(model_bytes: bytes, image: np.ndarray, threads: int, runs: int) -> dict:
    """ONNX Runtime profiler: kernel microseconds per run and node count per op type of the optimised graph."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.enable_profiling = True
    options.log_severity_level = 3
    with tempfile.TemporaryDirectory(prefix="edgekd-profile-") as folder:
        options.profile_file_prefix = str(Path(folder) / "profile")
        session = ort.InferenceSession(model_bytes, options, providers=["CPUExecutionProvider"])
        name = session.get_inputs()[0].name
        for _ in range(3):
            session.run(None, {name: image})
        for _ in range(runs):
            session.run(None, {name: image})
        events = json.loads(Path(session.end_profiling()).read_text())
    kernel_us: collections.Counter = collections.Counter()
    nodes: collections.Counter = collections.Counter()
    for event in events:
        if event.get("cat") == "Node" and event["name"].endswith("_kernel_time"):
            kernel_us[event["args"]["op_name"]] += event["dur"]
            nodes[event["args"]["op_name"]] += 1
    total = sum(kernel_us.values()) + 0.0
    calls = runs + 3
    return {
        "kernel_ms_per_run": total / calls / 1000,
        "ops": {
            op: {"ms_per_run": us / calls / 1000, "nodes": nodes[op] // calls, "share": us / total}
            for op, us in kernel_us.most_common()
        },
    }


def build(model: str, names: tuple[str, ...] | None = None) -> tuple[dict, np.ndarray, object]:
    """FP32 raw graph and every variant's model bytes, an input image from the calibration set, the metadata."""
    import torch

    from edgekd.data.loader import load_dataset
    from edgekd.data.synth import render_dataset
    from edgekd.export.onnx import build_onnx
    from edgekd.export.quantize import HEAD_OUTPUT_LAYERS, QdqQuantizer, float_nodes
    from edgekd.export.run import ExportOptions, _metadata
    from edgekd.models.detector import DetectorConfig
    from edgekd.models.zoo import build_detector
    from edgekd.runtime.metadata import BatchSpec
    from edgekd.runtime.preprocess import load_images

    torch.manual_seed(0)
    detector = build_detector(DetectorConfig(model, CLASSES, INPUT_SIZE)).eval()
    exported = build_onnx(detector, "none", BatchSpec.static(1), 17)
    models = {"FP32": exported.raw.SerializeToString()}
    with tempfile.TemporaryDirectory(prefix="edgekd-int8-profile-") as folder:
        render_dataset(folder, CALIBRATION_IMAGES, 1, size=(INPUT_SIZE[1], INPUT_SIZE[0]), seed=1, progress=False)
        records = load_dataset(folder, "train", classes=CLASSES).records
        image, _ = load_images(records[:1], INPUT_SIZE)
        for name, (settings, heads_float) in variants().items():
            if names is not None and name not in names:
                continue
            with QdqQuantizer(exported.raw, records, INPUT_SIZE, 1, "images", settings) as quantizer:
                keep = float_nodes(quantizer.model, HEAD_OUTPUT_LAYERS["retinanet"]) if heads_float else []
                models[name] = quantizer.quantize(keep).SerializeToString()
            print(f"quantised {model}: {name}", flush=True)
    return models, image, _metadata(detector, {}, ExportOptions(), exported.num_candidates)


def time_interleaved(models: dict, meta: object, threads: int, rounds: int, calls: int) -> dict:
    """Compute latency of every model, `calls` calls per model per round, models interleaved in each round."""
    from edgekd.runtime.onnx_runner import OnnxRunner

    runners = {}
    for name, data in models.items():
        runners[name] = OnnxRunner(data, meta, threads=threads)
        runners[name].prepare(1)
        for _ in range(5):
            runners[name].compute()
    times: dict[str, list[float]] = {name: [] for name in models}
    for _ in range(rounds):
        for name, runner in runners.items():
            for _ in range(calls):
                start = time.perf_counter()
                runner.compute()
                times[name].append(time.perf_counter() - start)
    return {
        name: {
            "p50_ms": float(np.median(values) * 1000),
            "p90_ms": float(np.percentile(values, 90) * 1000),
            "min_ms": float(np.min(values) * 1000),
            "calls": len(values),
        }
        for name, values in times.items()
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--calls", type=int, default=10, help="timed calls per variant per round")
    parser.add_argument("--threads", type=int, default=1, help="ONNX Runtime intra-op threads")
    parser.add_argument("--profile-runs", type=int, default=20)
    args = parser.parse_args()
    os.environ.setdefault("OMP_NUM_THREADS", str(args.threads))

    import onnxruntime

    load_before = load_average()
    rows = []
    for model, names in ((MODEL, None), (CONTRAST, CONTRAST_VARIANTS)):
        models, image, meta = build(model, names)
        latency = time_interleaved(models, meta, args.threads, args.rounds, args.calls)
        profiles = {name: profile(data, image, args.threads, args.profile_runs) for name, data in models.items()}
        fp32 = latency["FP32"]["p50_ms"]
        rows += [
            {
                "model": model,
                "variant": name,
                **latency[name],
                "speedup_vs_fp32": fp32 / latency[name]["p50_ms"],
                **profiles[name],
            }
            for name in models
        ]
    load_after = load_average()
    payload = {
        "model": MODEL,
        "input": f"1x3x{INPUT_SIZE[0]}x{INPUT_SIZE[1]}",
        "weights": "random (torch.manual_seed(0)); latency does not depend on them",
        "onnxruntime": onnxruntime.__version__,
        "threads": args.threads,
        "cpu": cpu_flags(),
        "load_before": load_before,
        "load_after": load_after,
        "rows": rows,
    }
    write_results("int8_profile", payload, markdown(payload))


def markdown(payload: dict) -> str:
    cpu = payload["cpu"]
    flags = ", ".join(f"{flag} {'yes' if ok else 'no'}" for flag, ok in cpu["flags"].items())
    lines = [
        f"# INT8 vs FP32 on ONNX Runtime CPU: {payload['model']} {payload['input']}",
        "",
        f"CPU: {cpu['model']}; {flags}. ONNX Runtime {payload['onnxruntime']}, {payload['threads']} intra-op "
        f"thread(s). Weights: {payload['weights']}.",
        "",
        f"Machine load (`uptime`) before: `{payload['load_before']}`; after: `{payload['load_after']}` (load "
        "averages lag by minutes). All variants were timed interleaved in one process, so any load falls on each "
        "alike; the speed-ups are the comparison, absolute milliseconds vary between runs on a virtual machine.",
        "",
        "## Compute latency (same process, interleaved)",
        "",
        "| model | variant | p50 ms | p90 ms | speed-up vs FP32 | kernel ms/run | convs fused / float |",
        "|---|---|---:|---:|---:|---:|---:|",
    ]
    for row in payload["rows"]:
        ops = row["ops"]
        fused = ops.get("QLinearConv", {}).get("nodes", 0)
        float_convs = ops.get("Conv", {}).get("nodes", 0) + ops.get("FusedConv", {}).get("nodes", 0)
        lines.append(
            f"| {row['model']} | {row['variant']} | {row['p50_ms']:.2f} | {row['p90_ms']:.2f} | "
            f"{row['speedup_vs_fp32']:.2f}x | {row['kernel_ms_per_run']:.2f} | {fused} / {float_convs} |"
        )
    lines += ["", "## Findings", "", *findings(payload["rows"])]
    lines += ["", "## Kernel time per op type (ONNX Runtime profiler, optimised graph)", ""]
    for row in payload["rows"]:
        top = list(row["ops"].items())[:10]
        cells = ", ".join(f"{op} {info['ms_per_run']:.2f} ms ({info['nodes']} nodes)" for op, info in top)
        lines += [f"- **{row['model']}, {row['variant']}**: {cells}"]
    return "\n".join(lines)


def findings(rows: list[dict]) -> list[str]:
    """What the table shows, with its numbers: why S8S8 is slow, what U8S8 gains, which student gains more."""
    by = {(row["model"], row["variant"].split(" (")[0]): row for row in rows}

    def ops(row: dict, op: str, key: str = "nodes") -> float:
        return row["ops"].get(op, {}).get(key, 0)

    s8 = by[(MODEL, "S8S8 per-channel, all convs")]
    s8_op = by[(MODEL, "S8S8 QOperator format, all convs")]
    u8 = by[(MODEL, "U8S8 per-channel, all convs")]
    u8_op = by[(MODEL, "U8S8 QOperator format, all convs")]
    u8_tensor = by[(MODEL, "U8S8 per-tensor, all convs")]
    u8_ops = by[(MODEL, "U8S8 per-channel, convs + Add/Mul/Pool/HardSigmoid/Concat/Resize")]
    fp32 = by[(MODEL, "FP32")]
    contrast = by[(CONTRAST, "U8S8 per-channel, heads float")]
    overhead = sum(ops(u8, op, "ms_per_run") for op in ("QuantizeLinear", "DequantizeLinear", "Transpose"))
    convs = int(ops(s8, "QLinearConv") + ops(s8, "Conv"))
    return [
        f"- **Signed activations (S8S8) are the cause.** With S8S8 QDQ, ONNX Runtime fuses only "
        f"{int(ops(s8, 'QLinearConv'))} of {convs} Q/DQ-wrapped convolutions into QLinearConv; the other "
        f"{int(ops(s8, 'Conv'))} run as float Conv whose weights pass a DequantizeLinear on every call "
        f"({int(ops(s8, 'DequantizeLinear'))} DequantizeLinear nodes per run): {s8['speedup_vs_fp32']:.2f}x FP32 "
        "speed. Forcing the fusion (QOperator format) shows why it is avoided: S8S8 QLinearConv takes "
        f"{ops(s8_op, 'QLinearConv', 'ms_per_run'):.1f} ms per run against "
        f"{ops(u8_op, 'QLinearConv', 'ms_per_run'):.1f} ms for U8S8 ({s8_op['speedup_vs_fp32']:.2f}x FP32): "
        "this CPU has AVX512-VNNI, yet ONNX Runtime's x86 INT8 convolution is fast only for unsigned activations.",
        f"- **U8S8 (`--int8-target cpu`) fuses every convolution** ({int(ops(u8, 'QLinearConv'))} QLinearConv) and "
        f"is {u8['speedup_vs_fp32']:.2f}x FP32 here; its convolutions take "
        f"{ops(u8, 'QLinearConv', 'ms_per_run'):.2f} ms against {ops(fp32, 'Conv', 'ms_per_run'):.2f} ms in FP32, "
        f"but {overhead:.2f} ms go to QuantizeLinear/DequantizeLinear/Transpose at the borders of what stays float.",
        f"- **What stays float in this architecture**: the RetinaNet head's GroupNorm (exported as "
        f"{int(ops(u8, 'InstanceNormalization'))} InstanceNormalization nodes with Reshapes; ONNX Runtime has no "
        "INT8 kernel for it) after every head convolution, and MobileNetV3's hard-swish / squeeze-excitation "
        "(HardSigmoid, Mul). Each forces a DequantizeLinear before and a QuantizeLinear after; at 320x96 these "
        "small tensors make the conversion cost comparable to the convolutions saved. Quantising more op types "
        f"(Add/Mul/Pool/HardSigmoid/Concat/Resize) does not help ({u8_ops['speedup_vs_fp32']:.2f}x); per-tensor "
        f"weights ({u8_tensor['speedup_vs_fp32']:.2f}x) and QOperator ({u8_op['speedup_vs_fp32']:.2f}x) change "
        "little. So the 1.3x aim is not reached by this student on this CPU with ONNX Runtime.",
        f"- **A student of ReLU convolutions gains**: {CONTRAST} (ReLU fuses into QLinearConv, no hard-swish) is "
        f"{contrast['speedup_vs_fp32']:.2f}x FP32 with U8S8 and the same float heads.",
        "- TensorRT needs S8S8 (`--int8-target tensorrt`, the default); its INT8 kernels have no such restriction, "
        "so the S8S8 slowdown above is specific to ONNX Runtime on CPU.",
    ]


if __name__ == "__main__":
    main()
