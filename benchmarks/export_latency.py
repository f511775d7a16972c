"""PyTorch eager vs ONNX Runtime (FP32 and INT8 QDQ) on CPU for one checkpoint: latency at batch 1, AP, parity.

Exports the checkpoint (NMS on the host, static batch 1, INT8 QDQ calibrated on --calib-images training images,
parity report against PyTorch on the validation split), then times, in this one process and with the same thread
count for both frameworks, interleaved over several rounds:
- compute only: the network on a preprocessed (1, 3, H, W) batch (PyTorch `Detector.raw`, ONNX Runtime session);
- end to end: image file decode + resize, network, post-processing (score threshold, top-k, class-wise NMS).
Writes benchmarks/results/<stem>.json and .md with the exact command.

    python benchmarks/export_latency.py runs/student/best.pt --data data/synth
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch
from rich.console import Console

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import CACHE, write_results  # noqa: E402

from edgekd.bench.timing import summarize_times, time_calls  # noqa: E402
from edgekd.data.loader import load_dataset  # noqa: E402
from edgekd.export.run import ExportOptions, export_checkpoint  # noqa: E402
from edgekd.models.checkpoint import load_detector  # noqa: E402
from edgekd.runtime import Runner, RunnerOptions, open_runner  # noqa: E402
from edgekd.runtime.metadata import read_metadata  # noqa: E402
from edgekd.runtime.preprocess import load_images  # noqa: E402

SPEEDUP_AIM = 1.5
INT8_LOSS_AIM = 1.0


def _arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("checkpoint", type=Path)
    parser.add_argument("--data", type=Path, required=True, help="dataset (KITTI folder or COCO JSON)")
    parser.add_argument("--split", default="val", help="split for AP and parity")
    parser.add_argument("--calib-split", default="train", help="split the INT8 calibration images come from")
    parser.add_argument("--calib-images", type=int, default=300)
    parser.add_argument("--threads", type=int, default=torch.get_num_threads(), help="threads for both frameworks")
    parser.add_argument("--warmup", type=int, default=10)
    parser.add_argument("--iters", type=int, default=50, help="timed calls per backend per round")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds (drift hits every backend alike)")
    parser.add_argument("--stem", default=None, help="results file name (default export_latency_<model>)")
    return parser.parse_args()


def _timers(detector, artifacts: dict[str, Runner], record, input_size) -> dict[str, dict]:
    """Compute-only and end-to-end callables per backend, on the same image."""
    images, _ = load_images([record], input_size)
    tensor = torch.from_numpy(images)

    def torch_compute() -> object:
        with torch.no_grad():
            return detector.raw(tensor)

    def torch_end_to_end() -> object:
        fresh, fresh_scales = load_images([record], input_size)
        with torch.no_grad():
            return detector.predict(torch.from_numpy(fresh), torch.from_numpy(fresh_scales))

    timers = {"PyTorch eager FP32": {"compute": torch_compute, "end_to_end": torch_end_to_end}}
    for name, artifact in artifacts.items():

        def compute(artifact: Runner = artifact) -> object:
            return artifact.infer(images)

        def end_to_end(artifact: Runner = artifact) -> object:
            fresh, fresh_scales = load_images([record], input_size)
            return artifact.predict(fresh, fresh_scales)

        timers[name] = {"compute": compute, "end_to_end": end_to_end}
    return timers


def _time(timers: dict[str, dict], warmup: int, iters: int, rounds: int) -> dict[str, dict]:
    samples: dict[str, dict[str, list[np.ndarray]]] = {name: {"compute": [], "end_to_end": []} for name in timers}
    for _ in range(rounds):
        for name, calls in timers.items():
            for kind, call in calls.items():
                samples[name][kind].append(time_calls(call, warmup=warmup, iters=iters))
    return {
        name: {kind: summarize_times(np.concatenate(times)) for kind, times in kinds.items()}
        for name, kinds in samples.items()
    }


def _markdown(payload: dict) -> str:
    latency, ap = payload["latency_ms"], payload["ap"]
    lines = [
        f"# Export latency and accuracy: {payload['model']} ({payload['input_size'][1]}x{payload['input_size'][0]})",
        "",
        f"CPU, batch 1, {payload['threads']} threads for every backend; p50 (p90) in ms over "
        f"{payload['timed_calls']} timed calls per backend, interleaved rounds.",
        "",
        "| backend | compute p50 (p90) | end-to-end p50 (p90) | speed-up vs PyTorch (compute / e2e) | AP | KITTI Mod |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for name, row in latency.items():
        compute, e2e = row["compute"], row["end_to_end"]
        speedup = payload["speedup_vs_pytorch"].get(name)
        ratio = f"{speedup['compute']:.2f}x / {speedup['end_to_end']:.2f}x" if speedup else "1.00x"
        accuracy = ap.get(name, {})
        lines.append(
            f"| {name} | {compute['p50_ms']:.1f} ({compute['p90_ms']:.1f}) | {e2e['p50_ms']:.1f} ({e2e['p90_ms']:.1f}) "
            f"| {ratio} | {accuracy.get('AP', float('nan')):.2f} | {accuracy.get('kitti_moderate', float('nan')):.2f} |"
        )
    raw = payload["parity"]["raw"]
    lines += [
        "",
        f"Parity (FP32 ONNX vs PyTorch, {raw['inputs']}): boxes max |diff| {raw['boxes_max_abs']:.2e} px, scores max "
        f"|diff| {raw['scores_max_abs']:.2e}; verdict: {'passed' if payload['parity']['passed'] else 'FAILED'}.",
        f"Aims: ONNX Runtime >= {SPEEDUP_AIM}x PyTorch eager (compute): {payload['aims']['onnxruntime_speedup']}; "
        f"INT8 loses < {INT8_LOSS_AIM} AP point: {payload['aims']['int8_ap_loss']}.",
    ]
    return "\n".join(lines)


def main() -> None:
    args = _arguments()
    console = Console()
    torch.set_num_threads(args.threads)
    detector, _ = load_detector(args.checkpoint)
    out_dir = CACHE / "export_latency" / detector.config.name
    options = ExportOptions(
        out_dir=out_dir,
        int8=True,
        calib_split=args.calib_split,
        calib_images=args.calib_images,
        data=args.data,
        split=args.split,
        threads=args.threads,
    )
    result = export_checkpoint(args.checkpoint, options, console)
    artifacts = {
        "ONNX Runtime FP32": open_runner(result.onnx, "ort-cpu", RunnerOptions(threads=args.threads)),
        "ONNX Runtime INT8 QDQ": open_runner(result.int8_onnx, "ort-cpu", RunnerOptions(threads=args.threads)),
    }
    record = load_dataset(args.data, args.split, classes=tuple(detector.config.classes)).records[0]
    timers = _timers(detector, artifacts, record, detector.config.input_size)
    console.print(f"timing {len(timers)} backends x {args.rounds} rounds x {args.iters} calls ...")
    latency = _time(timers, args.warmup, args.iters, args.rounds)
    reference = latency["PyTorch eager FP32"]
    speedup = {
        name: {kind: reference[kind]["p50_ms"] / row[kind]["p50_ms"] for kind in row}
        for name, row in latency.items()
        if name != "PyTorch eager FP32"
    }
    report = result.report.to_dict()
    rows = {row["name"]: row for row in report["ap"]["rows"]}
    fp32_row = next(row for name, row in rows.items() if name.startswith("ONNX Runtime FP32"))
    int8_row = next(row for name, row in rows.items() if "INT8" in name)
    ap = {
        "PyTorch eager FP32": rows["PyTorch eager FP32"],
        "ONNX Runtime FP32": fp32_row,
        "ONNX Runtime INT8 QDQ": int8_row,
    }
    int8_loss = fp32_row["AP"] - int8_row["AP"]
    payload = {
        "model": detector.config.name,
        "checkpoint": str(args.checkpoint),
        "input_size": list(detector.config.input_size),
        "threads": args.threads,
        "timed_calls": args.iters * args.rounds,
        "torch": torch.__version__,
        "latency_ms": latency,
        "speedup_vs_pytorch": speedup,
        "ap": {name: {k: row[k] for k in ("AP", "AP50", "kitti_moderate") if k in row} for name, row in ap.items()},
        "int8_ap_loss_vs_fp32": int8_loss,
        "parity": {"raw": report["raw"], "passed": report["passed"]},
        "int8_quantization": read_metadata(result.int8_onnx).quantization,
        "aims": {
            "onnxruntime_speedup": "met" if speedup["ONNX Runtime FP32"]["compute"] >= SPEEDUP_AIM else "not met",
            "int8_ap_loss": "met" if int8_loss < INT8_LOSS_AIM else "not met",
        },
    }
    json_path, md_path = write_results(
        args.stem or f"export_latency_{detector.config.name}", payload, _markdown(payload)
    )
    console.print(_markdown(payload))
    console.print(f"written: {json_path}, {md_path}")


if __name__ == "__main__":
    main()
