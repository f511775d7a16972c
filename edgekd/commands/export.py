"""`edgekd export`: a checkpoint to ONNX (+ INT8 QDQ, + TensorRT engine) with metadata and a parity report."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape

from edgekd.errors import EdgeKDError


def parse_keep(text: str) -> tuple[str, ...] | None:
    """--int8-keep: 'auto' (the family's head output layers), 'none', or comma-separated node-name fragments."""
    value = text.strip()
    if value == "auto":
        return None
    if value == "none":
        return ()
    parts = tuple(part.strip() for part in value.split(",") if part.strip())
    if not parts:
        raise EdgeKDError(f"--int8-keep '{text}': expected auto, none or comma-separated node-name fragments")
    return parts


def export_command(
    checkpoint: Annotated[Path, typer.Argument(help="Checkpoint (.pt) to export.")],
    out: Annotated[
        Path | None,
        typer.Option(
            "-o",
            "--out",
            help="Output folder (default: export/<run-name>/). It is replaced as a whole: the export is written "
            "beside it and swapped in at the end, so no file of an earlier export stays and a failed export leaves "
            "it as it was; a folder holding files other than an export's is refused.",
        ),
    ] = None,
    trt: Annotated[
        bool,
        typer.Option(
            "--trt",
            help="Also build a TensorRT engine (needs TensorRT + a GPU); where they are missing, the ONNX export "
            "still completes and the trtexec command that builds the engine on the target device is printed.",
        ),
    ] = False,
    fp16: Annotated[
        bool,
        typer.Option(
            "--fp16",
            help="FP16: model_fp16.onnx (checked on ONNX Runtime against FP16 bounds), and an FP16 engine with --trt.",
        ),
    ] = False,
    int8: Annotated[
        bool, typer.Option("--int8", help="INT8: ONNX Runtime QDQ model, and an INT8 engine with --trt.")
    ] = False,
    calib_data: Annotated[
        Path | None, typer.Option("--calib-data", help="Dataset of calibration images (default: --data).")
    ] = None,
    calib_split: Annotated[str, typer.Option("--calib-split", help="Split of --calib-data.")] = "train",
    calib_images: Annotated[int, typer.Option("--calib-images", help="Calibration images.")] = 300,
    int8_keep: Annotated[
        str,
        typer.Option("--int8-keep", help="Layers kept in float under INT8: auto (head outputs), none, or NAME,NAME."),
    ] = "auto",
    int8_ap_budget: Annotated[
        float | None,
        typer.Option(
            "--int8-ap-budget",
            help="INT8: AP points the QDQ model may differ from the FP32 export by on --data; the layers kept in "
            "float are searched (per-group sensitivity, then fallback) instead of --int8-keep.",
        ),
    ] = None,
    int8_target: Annotated[
        str,
        typer.Option(
            "--int8-target",
            help="INT8 QDQ form: tensorrt (symmetric signed activations, what TensorRT accepts) or cpu (unsigned "
            "activations, which ONNX Runtime's x86 kernels fuse: faster on CPU; not for TensorRT).",
        ),
    ] = "tensorrt",
    batch: Annotated[int | None, typer.Option("--batch", help="Static batch size (default 1).")] = None,
    dynamic_batch: Annotated[
        str | None, typer.Option("--dynamic-batch", help="Dynamic batch MIN:OPT:MAX, e.g. 1:4:8 (RetinaNet, FCOS).")
    ] = None,
    nms: Annotated[
        str,
        typer.Option("--nms", help="NMS: none (host, numpy), onnx (NonMaxSuppression), trt-plugin (EfficientNMS_TRT)."),
    ] = "none",
    opset: Annotated[int, typer.Option("--opset", help="ONNX opset (13 to 20).")] = 17,
    data: Annotated[
        Path | None, typer.Option("--data", help="Dataset for parity (AP vs PyTorch); without it AP is skipped.")
    ] = None,
    split: Annotated[str, typer.Option("--split", help="Split of --data used for parity.")] = "val",
    workspace: Annotated[int, typer.Option("--workspace", help="TensorRT workspace limit, MiB.")] = 4096,
    layerwise: Annotated[
        bool,
        typer.Option(
            "--layerwise",
            help="With --trt: when the engine fails its accuracy gate, compare ONNX Runtime and TensorRT layer by "
            "layer (needs Polygraphy: pip install polygraphy) and name the first layer that diverges "
            "(layerwise.md / layerwise.json beside parity.md).",
        ),
    ] = False,
    threads: Annotated[int | None, typer.Option("--threads", help="ONNX Runtime threads.")] = None,
    json_out: Annotated[bool, typer.Option("--json", help="Print the parity report as JSON only.")] = False,
    quiet: Annotated[bool, typer.Option("--quiet", help="Only the final summary.")] = False,
) -> None:
    """Export a checkpoint: ONNX + metadata + parity report (+ INT8 QDQ, + TensorRT engine)."""
    from edgekd.export.run import ExportOptions, export_checkpoint
    from edgekd.runtime.metadata import BatchSpec

    if batch is not None and dynamic_batch is not None:
        raise EdgeKDError("give either --batch B or --dynamic-batch MIN:OPT:MAX, not both")
    if dynamic_batch is not None:
        spec = BatchSpec.parse_dynamic(dynamic_batch)
    else:
        spec = BatchSpec.static(1 if batch is None else batch)
    options = ExportOptions(
        out_dir=out,
        trt=trt,
        fp16=fp16,
        int8=int8,
        calib_data=calib_data,
        calib_split=calib_split,
        calib_images=calib_images,
        int8_keep=parse_keep(int8_keep),
        int8_ap_budget=int8_ap_budget,
        int8_target=int8_target,
        batch=spec,
        nms=nms,
        opset=opset,
        data=data,
        split=split,
        workspace_mib=workspace,
        threads=threads,
        layerwise=layerwise,
    )
    console = Console(quiet=quiet or json_out)
    result = export_checkpoint(checkpoint, options, console)
    if json_out:
        typer.echo(json.dumps(result.report.to_dict(), indent=2))
        return
    written = [result.onnx] + [p for p in (result.fp16_onnx, result.int8_onnx, result.engine) if p is not None]
    Console(soft_wrap=True).print(
        "exported: " + ", ".join(str(p) for p in written) + f" (parity report: {result.out_dir / 'parity.md'})"
    )
    status = result.report.tensorrt
    if trt and result.engine is None and status is not None:
        Console(soft_wrap=True).print(
            f"[yellow]engine not built:[/] {escape(status.status)}. On the target device, build it with this "
            "command (or run this export there with --trt, which also writes the metadata `edgekd eval`/`bench` need):",
            highlight=False,
        )
        typer.echo(status.trtexec)


def register(app: typer.Typer) -> None:
    app.command("export", help="Export a checkpoint to ONNX / TensorRT with a parity report.")(export_command)
