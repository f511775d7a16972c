"""The INT8 float-fallback search on a trained student: AP and compute latency of FP32, plain INT8 and the searched
INT8, for each --int8-target, from `edgekd export --int8 --int8-ap-budget B` itself (its parity report).

Usage: python benchmarks/int8_search.py CKPT --data DIR [--budget 0.5] [--calib-images 200] [--threads 1]
Writes benchmarks/results/int8_search_<name>.json/.md (and keeps the exports under benchmarks/cache/int8_search/).
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import CACHE, write_results  # noqa: E402

TARGETS = ("tensorrt", "cpu")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("checkpoint", type=Path)
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("--budget", type=float, default=0.5)
    parser.add_argument("--calib-images", type=int, default=200)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--name", default="cpu_student")
    args = parser.parse_args()

    from edgekd.export.run import ExportOptions, export_checkpoint

    load_before = subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()
    runs = {}
    for target in TARGETS:
        options = ExportOptions(
            out_dir=CACHE / "int8_search" / f"{args.name}_{target}",
            int8=True,
            calib_images=args.calib_images,
            int8_ap_budget=args.budget,
            int8_target=target,
            data=args.data,
            threads=args.threads,
        )
        result = export_checkpoint(args.checkpoint, options)
        report = result.report.to_dict()
        runs[target] = {"search": report["int8_search"], "ap_rows": report["ap"]["rows"]}
    load_after = subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()
    payload = {
        "checkpoint": str(args.checkpoint),
        "data": str(args.data),
        "budget_ap": args.budget,
        "calibration_images": args.calib_images,
        "threads": args.threads,
        "load_before": load_before,
        "load_after": load_after,
        "runs": runs,
    }
    write_results(f"int8_search_{args.name}", payload, markdown(payload))


def markdown(payload: dict) -> str:
    lines = [
        f"# INT8 float-fallback search: `{payload['checkpoint']}`",
        "",
        f"`edgekd export --int8 --int8-ap-budget {payload['budget_ap']:g} --calib-images "
        f"{payload['calibration_images']}` on `{payload['data']}` (val), ONNX Runtime CPU, {payload['threads']} "
        f"thread(s). Machine load before: `{payload['load_before']}`; after: `{payload['load_after']}` (shared "
        "machine: latencies are short runs, compare within a row set).",
        "",
        "| target | model | float groups | COCO AP | AP vs FP32 | compute p50 ms |",
        "|---|---|---:|---:|---:|---:|",
    ]
    for target, run in payload["runs"].items():
        search = run["search"]
        steps = search["steps"]
        plain, chosen = steps[0], next(s for s in steps if s["kept"] == search["kept_groups"])
        fp32 = search["fp32"]
        rows = [
            ("FP32 export", "", fp32["AP"], 0.0, fp32["latency_ms"]),
            ("plain INT8", 0, plain["AP"], -plain["ap_loss"], plain["latency_ms"]),
            ("searched INT8", chosen["kept_count"], chosen["AP"], -chosen["ap_loss"], chosen["latency_ms"]),
        ]
        for name, kept, ap, delta, latency in rows:
            lines.append(f"| {target} | {name} | {kept} | {ap:.2f} | {delta:+.2f} | {latency:.2f} |")
    lines.append("")
    for target, run in payload["runs"].items():
        search = run["search"]
        kept = ", ".join(f"`{g}`" for g in search["kept_groups"]) or "none"
        lines.append(f"- {target}: kept in float ({len(search['kept_groups'])} of {search['groups']} groups): {kept}")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
