"""`export_checkpoint`: checkpoint -> ONNX (+ INT8 QDQ, + TensorRT engine), metadata, and a parity report.

Order: export and check the graph, measure parity (raw outputs, then AP with --data); the model keeps its final
name only when parity holds, a failing one is renamed `<name>.rejected` for inspection and the export stops with
the numbers. INT8 and TensorRT artifacts follow, each with its own metadata. Everything is written into a staging
folder beside the output folder, which it then replaces as a whole (`edgekd.export.folder`).
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from rich.console import Console
from rich.progress import track

from edgekd.atomic import atomic_write_bytes, atomic_write_text
from edgekd.data.records import Dataset, Detections
from edgekd.errors import EdgeKDError
from edgekd.export.folder import ExportFolder
from edgekd.export.parity import (
    INT8_AP_AIM,
    RAW_TOLERANCE,
    ApRow,
    ApSection,
    ParityReport,
    RawDifference,
    TensorRTStatus,
    ap_summary,
    compare_raw,
    report_markdown,
    report_tables,
)
from edgekd.runtime.metadata import (
    BatchSpec,
    ExportMetadata,
    file_sha256,
    library_versions,
    metadata_path,
    write_metadata,
)
from edgekd.runtime.onnx_runner import OnnxRunner
from edgekd.runtime.postprocess import EFFICIENT_NMS_TOPK, PostprocessConfig, decode_outputs
from edgekd.runtime.preprocess import iterate_batches
from edgekd.runtime.runner import predict_dataset
from edgekd.runtime.torch_runner import TorchRunner

EXPORT_ROOT = Path("export")
RANDOM_PARITY_SEED = 0


@dataclass
class ExportOptions:
    """Options of `edgekd export` (see the command's help)."""

    out_dir: Path | None = None
    trt: bool = False
    fp16: bool = False
    int8: bool = False
    calib_data: Path | None = None
    calib_split: str = "train"
    calib_images: int = 300
    int8_keep: tuple[str, ...] | None = None  # None: the family's head output layers; (): quantise everything
    batch: BatchSpec = field(default_factory=lambda: BatchSpec.static(1))
    nms: str = "none"
    opset: int = 17
    data: Path | None = None
    split: str = "val"
    workspace_mib: int = 4096
    threads: int | None = None


@dataclass
class ExportResult:
    """Paths written by an export and its parity report (also saved as parity.json / parity.md)."""

    out_dir: Path
    onnx: Path
    int8_onnx: Path | None
    engine: Path | None
    report: ParityReport


def default_out_dir(checkpoint: Path) -> Path:
    """export/<run-name>/ where the run name is the checkpoint's folder (runs/student/best.pt -> student)."""
    name = checkpoint.resolve().parent.name or checkpoint.stem
    return EXPORT_ROOT / name


def check_options(options: ExportOptions) -> None:
    """Option combinations that cannot work, rejected before any model is loaded."""
    if options.fp16 and not options.trt:
        raise EdgeKDError("--fp16 builds a TensorRT FP16 engine: add --trt (ONNX Runtime CPU runs FP32 or --int8 QDQ)")
    if options.int8 and options.calib_data is None and options.data is None:
        raise EdgeKDError("--int8 needs calibration images: give --calib-data DIR (or --data DIR)")
    if options.workspace_mib < 1:
        raise EdgeKDError(f"--workspace {options.workspace_mib}: must be at least 1 MiB")
    if options.calib_images < 1:
        raise EdgeKDError(f"--calib-images {options.calib_images}: must be at least 1")
    if options.threads is not None and options.threads < 1:
        raise EdgeKDError(f"--threads {options.threads}: must be at least 1")


@dataclass
class _ParityRunners:
    """The PyTorch detector and the exported graphs, each behind its runner, compared batch by batch.

    `raw` runs the graph without NMS (boxes, scores), `final` the graph with its ONNX NonMaxSuppression tail
    (--nms onnx only); `proposal_rows` is K for Faster R-CNN, whose raw rows are matched per proposal."""

    reference: TorchRunner
    raw: OnnxRunner
    final: OnnxRunner | None
    proposal_rows: int | None

    @classmethod
    def build(cls, detector: object, exported: object, meta: ExportMetadata, options: ExportOptions) -> _ParityRunners:
        raw_meta = dataclasses.replace(meta, nms="none")
        final = None
        if options.nms == "onnx":
            final = OnnxRunner(exported.model.SerializeToString(), meta, threads=options.threads)
        return cls(
            TorchRunner.in_memory(detector, options.batch),
            OnnxRunner(exported.raw.SerializeToString(), raw_meta, threads=options.threads),
            final,
            len(meta.classes) if detector.family == "fasterrcnn" else None,
        )

    def compare(self, images: np.ndarray, count: int, stats: RawDifference) -> tuple[dict, dict]:
        """Both backends' outputs of a batch, their raw differences over the first `count` images added to `stats`."""
        reference = self.reference.infer(images)
        outputs = self.raw.infer(images)
        host = self.reference.raw_outputs(reference)
        compare_raw(
            (host["boxes"][:count], host["scores"][:count]),
            (outputs["boxes"][:count], outputs["scores"][:count]),
            stats,
            self.proposal_rows,
        )
        return reference, outputs


def _evaluate_parity(
    runners: _ParityRunners, dataset: Dataset | None, nms: str, stats: RawDifference, console: Console
) -> dict[str, dict[str, Detections]]:
    """Fill `stats` with raw differences; with a dataset, also return detections per backend per image."""
    detections: dict[str, dict[str, Detections]] = {"pytorch": {}, "onnx": {}, "emulation": {}}
    height, width = runners.raw.info.input_size
    batch = runners.raw.info.default_batch
    if dataset is None:
        generator = np.random.default_rng(RANDOM_PARITY_SEED)
        images = generator.uniform(0, 255, size=(batch, 3, height, width)).astype(np.float32)
        runners.compare(images, batch, stats)
        return detections
    emulation = dataclasses.replace(runners.raw.post, topk_candidates=EFFICIENT_NMS_TOPK)
    batches = iterate_batches(dataset, (height, width), batch)
    total = -(-len(dataset) // batch)
    for ids, images, scales in track(batches, "parity: PyTorch vs ONNX Runtime", total, console=console):
        images, scales = runners.raw.pad(images, scales)
        reference, outputs = runners.compare(images, len(ids), stats)
        detections["pytorch"].update(zip(ids, runners.reference.decode(reference, scales)))
        if runners.final is not None:
            exported = runners.final.decode(runners.final.infer(images), scales)
        else:
            exported = runners.raw.decode(outputs, scales)
        detections["onnx"].update(zip(ids, exported))
        if nms == "trt-plugin":
            detections["emulation"].update(zip(ids, decode_outputs(outputs, scales, "none", emulation)))
    return detections


def _exported_name(nms: str) -> str:
    return {
        "none": "ONNX Runtime FP32, host NMS (numpy)",
        "onnx": "ONNX Runtime FP32, ONNX NonMaxSuppression",
        "trt-plugin": "ONNX Runtime FP32 raw graph + host NMS (the EfficientNMS node needs TensorRT)",
    }[nms]


def _metadata(detector: object, payload_source: dict, options: ExportOptions, count: int) -> ExportMetadata:
    config = detector.config
    meta = ExportMetadata(
        model=config.name,
        family=detector.family,
        classes=list(config.classes),
        input_size=list(config.input_size),
        mean=list(config.mean),
        std=list(config.std),
        score_thresh=config.score_thresh,
        nms_thresh=config.nms_thresh,
        max_detections=config.max_detections,
        topk_candidates=config.topk_candidates,
        nms=options.nms,
        batch=options.batch,
        num_candidates=count,
        opset=options.opset,
        source=payload_source,
        versions=library_versions(),
    )
    meta.outputs = meta.describe_outputs()
    return meta


def _write_model(path: Path, model_bytes: bytes, meta: ExportMetadata) -> None:
    atomic_write_bytes(path, model_bytes)
    write_metadata(path, meta)


def _reject(path: Path) -> Path:
    """Keep a model that failed parity for inspection, under a name nothing loads by accident."""
    rejected = path.with_name(path.name + ".rejected")
    os.replace(path, rejected)
    os.replace(metadata_path(path), metadata_path(rejected))
    return rejected


def _save_report(out_dir: Path, report: ParityReport) -> None:
    import json

    atomic_write_text(out_dir / "parity.json", json.dumps(report.to_dict(), indent=2) + "\n")
    atomic_write_text(out_dir / "parity.md", report_markdown(report))


def _failure_message(report: ParityReport, rejected: Path) -> str:
    raw = report.raw
    lines = [
        f"export failed parity (kept as {rejected} for inspection; report in {rejected.parent / 'parity.md'}):",
        f"  raw boxes max |diff| {raw.boxes_max:.3g}, scores max |diff| {raw.scores_max:.3g} "
        f"(tolerance {report.raw_tolerance:g})",
    ]
    if raw.valid:
        lines.append(f"  proposals without a counterpart: {raw.unmatched} of {raw.valid}")
    for row in report.ap.rows if report.ap is not None else []:
        if row.passed is False:
            deltas = ", ".join(f"{key} {value:+.2f}" for key, value in row.delta.items())
            lines.append(f"  {row.name}: {deltas} AP points (tolerance {row.tolerance})")
    return "\n".join(lines)


def _ap_section(dataset: Dataset, detections: dict, options: ExportOptions, topk: int) -> ApSection:
    """AP rows: PyTorch, the exported model (enforced), and for trt-plugin the EfficientNMS emulation (shown)."""
    from edgekd.evaluate import evaluate_detections

    reference = ApRow.measured(
        "PyTorch eager FP32", ap_summary(evaluate_detections(dataset, detections["pytorch"])), None, False
    )
    exported = ap_summary(evaluate_detections(dataset, detections["onnx"]))
    rows = [reference, ApRow.measured(_exported_name(options.nms), exported, reference, True)]
    note = None
    if options.nms == "trt-plugin":
        emulated = ap_summary(evaluate_detections(dataset, detections["emulation"]))
        name = f"EfficientNMS_TRT emulation (top-{EFFICIENT_NMS_TOPK} before NMS)"
        rows.append(ApRow.measured(name, emulated, reference, False))
        note = (
            f"EfficientNMS_TRT keeps the top {EFFICIENT_NMS_TOPK} scores above the threshold before NMS, PyTorch the "
            f"top {topk}: the emulation row shows what that changes; measure the engine itself with "
            "`edgekd eval MODEL.engine` on the device."
        )
    return ApSection(f"{options.data} ({options.split})", len(dataset), rows, note)


def export_checkpoint(checkpoint: str | Path, options: ExportOptions, console: Console | None = None) -> ExportResult:
    """Export a checkpoint as the options ask; raises EdgeKDError on bad input, failed parity or missing TensorRT."""
    from edgekd.data.loader import load_dataset
    from edgekd.export.onnx import check_export_options
    from edgekd.models.checkpoint import load_detector

    console = console or Console()
    checkpoint = Path(checkpoint)
    check_options(options)
    detector, _ = load_detector(checkpoint)
    check_export_options(detector.family, options.nms, options.batch, options.opset)
    classes = tuple(detector.config.classes)
    dataset = load_dataset(options.data, options.split, classes=classes) if options.data is not None else None
    folder = ExportFolder(options.out_dir or default_out_dir(checkpoint))
    try:
        result = _export(checkpoint, detector, dataset, options, folder, console)
    except EdgeKDError as error:  # name files where the user finds them, not in the staging folder
        raise EdgeKDError(str(error).replace(str(folder.work), str(folder.final))) from None
    finally:
        folder.discard()
    if folder.previous:
        console.print(f"[yellow]note:[/] replaced the previous export in {folder.final} ({folder.previous} files)")
    return result


def _export(
    checkpoint: Path,
    detector: object,
    dataset: Dataset | None,
    options: ExportOptions,
    folder: ExportFolder,
    console: Console,
) -> ExportResult:
    """Write the export into `folder.work` and commit it; a failed parity check or TensorRT step commits what
    passed (for inspection, or to build the engine elsewhere) before raising."""
    from edgekd.export.onnx import build_onnx

    work, out_dir = folder.work, folder.final
    source = {"checkpoint": str(checkpoint), "sha256": file_sha256(checkpoint)}

    console.print(
        f"exporting {detector.config.name} ({detector.family}) from {checkpoint}: nms {options.nms}, "
        f"batch {options.batch.describe()}, opset {options.opset}"
    )
    exported = build_onnx(detector, options.nms, options.batch, options.opset)
    meta = _metadata(detector, source, options, exported.num_candidates)
    stats = RawDifference()
    detections = _evaluate_parity(
        _ParityRunners.build(detector, exported, meta, options), dataset, options.nms, stats, console
    )
    report = ParityReport(
        checkpoint=str(checkpoint),
        checkpoint_sha256=source["sha256"],
        model=str(out_dir / "model.onnx"),
        nms=options.nms,
        batch=options.batch.describe(),
        opset=options.opset,
        raw=stats,
        raw_inputs=f"{stats.images} validation images" if dataset is not None else "random input (no --data)",
        raw_tolerance=RAW_TOLERANCE,
    )
    if dataset is None:
        report.ap_skipped = "AP not measured: no --data given (raw outputs checked on random input)"
        console.print("[yellow]note:[/] no --data: AP parity skipped, raw outputs checked on random input")
    else:
        report.ap = _ap_section(dataset, detections, options, detector.config.topk_candidates)

    onnx_path = work / "model.onnx"
    _write_model(onnx_path, exported.model.SerializeToString(), meta)
    if not report.passed:
        rejected = _reject(onnx_path)
        _save_report(work, report)
        folder.commit()
        _print_report(console, report)
        raise EdgeKDError(_failure_message(report, folder.final_path(rejected)))

    int8_path = None
    if options.int8:
        int8_path = _export_int8(detector, exported, options, meta, dataset, report, folder, console)
    engine_path = None
    try:
        if options.trt:
            engine_path = _export_engine(onnx_path, int8_path, meta, options, dataset, report, folder, console)
    except EdgeKDError:
        _save_report(work, report)
        folder.commit()
        _print_report(console, report)
        raise
    _save_report(work, report)
    folder.commit()
    _print_report(console, report)
    written = (folder.final_path(p) if p is not None else None for p in (onnx_path, int8_path, engine_path))
    return ExportResult(out_dir, *written, report)


def _print_report(console: Console, report: ParityReport) -> None:
    for table in report_tables(report):
        console.print(table)
    for note in report.notes:
        console.print(f"[yellow]note:[/] {note}")


def _export_int8(
    detector: object,
    exported: object,
    options: ExportOptions,
    meta: ExportMetadata,
    dataset: Dataset | None,
    report: ParityReport,
    folder: ExportFolder,
    console: Console,
) -> Path:
    """INT8 QDQ model (ONNX Runtime static quantisation) beside the FP32 one, with its AP when --data is given."""
    from edgekd.data.loader import load_dataset
    from edgekd.evaluate import evaluate_detections
    from edgekd.export.nms import append_efficient_nms, append_onnx_nms
    from edgekd.export.onnx import check_model
    from edgekd.export.quantize import HEAD_OUTPUT_LAYERS, MIN_RECOMMENDED_IMAGES, calibration_records, quantize_qdq

    calib_root = options.calib_data or options.data
    calib_split = options.calib_split
    calibration = load_dataset(calib_root, calib_split, classes=tuple(meta.classes))
    records = calibration_records(calibration, options.calib_images)
    if len(records) < MIN_RECOMMENDED_IMAGES:
        report.notes.append(
            f"INT8 calibrated on only {len(records)} images ({calib_root}, split {calib_split}); use a few hundred "
            "real images for a trustworthy INT8 model"
        )
    keep = HEAD_OUTPUT_LAYERS[detector.family] if options.int8_keep is None else options.int8_keep
    console.print(f"INT8 (QDQ): calibrating on {len(records)} images, keeping {list(keep) or 'nothing'} in float")
    quantized_raw, info = quantize_qdq(exported.raw, records, meta.input_size, options.batch.opt, keep)
    post = PostprocessConfig.from_metadata(meta)
    if options.nms == "onnx":
        quantized = append_onnx_nms(quantized_raw, meta.num_candidates, len(meta.classes), post)
    elif options.nms == "trt-plugin":
        quantized = append_efficient_nms(quantized_raw, post)
    else:
        quantized = quantized_raw
    check_model(quantized)
    info["calibration_data"] = f"{calib_root} ({calib_split})"
    int8_meta = dataclasses.replace(meta, precision="int8-qdq", quantization=info)
    path = folder.work / "model_int8.onnx"
    _write_model(path, quantized.SerializeToString(), int8_meta)
    report.int8_model = str(folder.final_path(path))
    if dataset is not None:
        runner = OnnxRunner(
            quantized_raw.SerializeToString(), dataclasses.replace(int8_meta, nms="none"), threads=options.threads
        )
        summary = ap_summary(evaluate_detections(dataset, predict_dataset(runner, dataset)))
        row = ApRow.measured("ONNX Runtime INT8 QDQ, host NMS", summary, report.ap.reference, False)
        report.ap.rows.append(row)
        loss = -row.delta["AP"]
        if loss > INT8_AP_AIM:
            report.notes.append(
                f"INT8 loses {loss:.2f} AP points (aim: under {INT8_AP_AIM}); calibrate on more images or keep more "
                "layers in float (--int8-keep)"
            )
    return path


def _export_engine(
    onnx_path: Path,
    int8_path: Path | None,
    meta: ExportMetadata,
    options: ExportOptions,
    dataset: Dataset | None,
    report: ParityReport,
    folder: ExportFolder,
    console: Console,
) -> Path:
    """TensorRT engine with the Python API, or a clear stop with the trtexec command where that cannot run."""
    from edgekd.export.quantize import HEAD_OUTPUT_LAYERS
    from edgekd.export.tensorrt import EngineOptions, build_engine, tensorrt_problems, trtexec_command

    keep = HEAD_OUTPUT_LAYERS[meta.family] if options.int8_keep is None else options.int8_keep
    engine_options = EngineOptions(
        fp16=options.fp16,
        int8=options.int8,
        workspace_mib=options.workspace_mib,
        timing_cache=folder.work / "timing.cache",
        calibration_cache=folder.work / "calibration.cache" if options.int8 else None,
        keep_float=tuple(keep),
    )
    engine_path = folder.work / f"model_{engine_options.precision}.engine"
    source = int8_path if options.int8 and int8_path is not None else onnx_path
    shown = dataclasses.replace(engine_options, timing_cache=folder.final_path(folder.work / "timing.cache"))
    final_source, final_engine = folder.final_path(source), folder.final_path(engine_path)
    command = trtexec_command(final_source, final_engine, shown, options.batch, meta.input_size, meta.input_name)
    problems = tensorrt_problems()
    if problems:
        report.tensorrt = TensorRTStatus("not built here: missing " + "; ".join(problems), command)
        raise EdgeKDError(
            "cannot build a TensorRT engine here, missing: "
            + "; ".join(problems)
            + f".\nThe ONNX artifacts in {folder.final} are complete. On the target device, build the engine with:\n"
            + f"  {command}\n"
            + "or run this export there with --trt, which also writes the engine's metadata for `edgekd eval`/`bench`."
        )
    from edgekd.data.loader import load_dataset
    from edgekd.export.quantize import calibration_records

    calibration = []
    if options.int8:
        calib = load_dataset(options.calib_data or options.data, options.calib_split, classes=tuple(meta.classes))
        calibration = calibration_records(calib, options.calib_images)
    console.print(f"building TensorRT {engine_options.precision} engine {engine_path}")
    info = build_engine(
        onnx_path, int8_path, engine_path, engine_options, options.batch, meta.input_size, calibration, meta.input_name
    )
    precision = engine_options.precision
    engine_meta = dataclasses.replace(meta, precision=precision, tensorrt=info)
    write_metadata(engine_path, engine_meta)
    report.tensorrt = TensorRTStatus(
        f"built {folder.final_path(engine_path)} with TensorRT {info['version']} on {info['gpu']}", command
    )
    if dataset is not None:
        from edgekd.evaluate import evaluate_detections
        from edgekd.runtime import predict_artifact

        summary = ap_summary(evaluate_detections(dataset, predict_artifact(engine_path, dataset)))
        name = f"TensorRT {precision} engine (nms {meta.nms})"
        report.ap.rows.append(ApRow.measured(name, summary, report.ap.reference, False))
    return engine_path
