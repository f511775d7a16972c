"""`export_checkpoint`: checkpoint -> ONNX (+ INT8 QDQ, + TensorRT engine), metadata, and a parity report.

Order: export and check the graph, measure parity (raw outputs, then AP with --data); the model keeps its final
name only when parity holds, a failing one is renamed `<name>.rejected` for inspection and the export stops with
the numbers. INT8 and TensorRT artifacts follow, each with its own metadata. Everything is written into a staging
folder beside the output folder, which it then replaces as a whole (`edgekd.export.folder`).
"""

from __future__ import annotations

import dataclasses
import math
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from rich.console import Console
from rich.progress import track

from edgekd.atomic import atomic_write_bytes, atomic_write_text
from edgekd.console import print_table
from edgekd.data.records import Dataset, Detections
from edgekd.errors import EdgeKDError
from edgekd.export.folder import ExportFolder
from edgekd.export.parity import (
    AP_TOLERANCE,
    INT8_AP_AIM,
    RAW_TOLERANCE,
    ApRow,
    ApSection,
    ParityReport,
    RawDifference,
    TensorRTStatus,
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
    read_metadata,
    write_metadata,
)
from edgekd.runtime.onnx_runner import OnnxRunner
from edgekd.runtime.postprocess import EFFICIENT_NMS_TOPK, PostprocessConfig, decode_outputs
from edgekd.runtime.preprocess import iterate_batches, pad_batch
from edgekd.runtime.runner import predict_dataset
from edgekd.runtime.torch_runner import TorchRunner

EXPORT_ROOT = Path("export")
SEARCH_PLOT = "int8_search.png"
SEARCH_WARMUP, SEARCH_ITERS = 3, 20
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
    int8_ap_budget: float | None = None  # AP points vs the FP32 export: search the float-kept layers (needs --data)
    int8_target: str = "tensorrt"  # edgekd.export.quantize.INT8_TARGETS
    batch: BatchSpec = field(default_factory=lambda: BatchSpec.static(1))
    nms: str = "none"
    opset: int = 17
    data: Path | None = None
    split: str = "val"
    workspace_mib: int = 4096
    threads: int | None = None
    layerwise: bool = False  # on an engine gate failure, compare ONNX Runtime and TensorRT layer by layer


@dataclass
class ExportResult:
    """Paths written by an export and its parity report (also saved as parity.json / parity.md)."""

    out_dir: Path
    onnx: Path
    int8_onnx: Path | None
    engine: Path | None
    report: ParityReport
    fp16_onnx: Path | None = None


def default_out_dir(checkpoint: Path) -> Path:
    """export/<run-name>/ where the run name is the checkpoint's folder (runs/student/best.pt -> student)."""
    name = checkpoint.resolve().parent.name or checkpoint.stem
    return EXPORT_ROOT / name


def check_options(options: ExportOptions) -> None:
    """Option combinations that cannot work, rejected before any model is loaded."""
    if options.int8 and options.calib_data is None and options.data is None:
        raise EdgeKDError("--int8 needs calibration images: give --calib-data DIR (or --data DIR)")
    if options.int8_ap_budget is not None:
        _check_budget(options)
    _check_int8_target(options)
    if options.workspace_mib < 1:
        raise EdgeKDError(f"--workspace {options.workspace_mib}: must be at least 1 MiB")
    if options.calib_images < 1:
        raise EdgeKDError(f"--calib-images {options.calib_images}: must be at least 1")
    if options.threads is not None and options.threads < 1:
        raise EdgeKDError(f"--threads {options.threads}: must be at least 1")
    if options.layerwise and not options.trt:
        raise EdgeKDError("--layerwise compares a TensorRT engine's layers with ONNX Runtime's: add --trt")


def _check_int8_target(options: ExportOptions) -> None:
    from edgekd.export.quantize import INT8_TARGETS

    target = options.int8_target
    if target not in INT8_TARGETS:
        raise EdgeKDError(f"--int8-target {target}: expected one of {', '.join(INT8_TARGETS)}")
    if target != "tensorrt" and not options.int8:
        raise EdgeKDError(f"--int8-target {target}: sets the form of the INT8 model: add --int8")
    if target == "cpu" and options.trt:
        raise EdgeKDError(
            "--int8-target cpu: TensorRT accepts only symmetric signed INT8 (--int8-target tensorrt); drop --trt, "
            "or export the CPU model separately"
        )


def _check_budget(options: ExportOptions) -> None:
    budget = options.int8_ap_budget
    if not math.isfinite(budget) or budget < 0:
        raise EdgeKDError(f"--int8-ap-budget {budget}: must be a finite number of AP points, 0 or more")
    if not options.int8:
        raise EdgeKDError(f"--int8-ap-budget {budget}: searches the layers an INT8 model keeps in float: add --int8")
    if options.data is None:
        raise EdgeKDError(f"--int8-ap-budget {budget}: the budget is AP on a dataset: give --data DIR")
    if options.int8_keep is not None:
        raise EdgeKDError(
            f"--int8-ap-budget {budget}: chooses the float layers itself; drop --int8-keep (or drop the budget)"
        )


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


def _failed_ap_lines(report: ParityReport) -> list[str]:
    """One line per AP row that failed its tolerance: the differences against PyTorch and the tolerance."""
    lines = []
    for row in report.ap.rows if report.ap is not None else []:
        if row.passed is False:
            deltas = ", ".join(f"{key} {value:+.2f}" for key, value in row.delta.items())
            lines.append(f"  {row.name}: {deltas} AP points (tolerance {row.tolerance:g})")
    return lines


def _failure_message(report: ParityReport, rejected: Path) -> str:
    raw = report.raw
    lines = [
        f"export failed parity (kept as {rejected} for inspection; report in {rejected.parent / 'parity.md'}):",
        f"  raw boxes max |diff| {raw.boxes_max:.3g}, scores max |diff| {raw.scores_max:.3g} "
        f"(tolerance {report.raw_tolerance:g})",
    ]
    if raw.valid:
        lines.append(f"  proposals without a counterpart: {raw.unmatched} of {raw.valid}")
    return "\n".join(lines + _failed_ap_lines(report))


def _ap_section(dataset: Dataset, detections: dict, options: ExportOptions, topk: int) -> ApSection:
    """AP rows: PyTorch, the exported model (enforced), and for trt-plugin the EfficientNMS emulation (shown)."""
    from edgekd.evaluate import evaluate_detections

    reference = ApRow.measured(
        "PyTorch eager FP32", evaluate_detections(dataset, detections["pytorch"]).summary(), None, False
    )
    exported = evaluate_detections(dataset, detections["onnx"]).summary()
    rows = [reference, ApRow.measured(_exported_name(options.nms), exported, reference, True)]
    note = None
    if options.nms == "trt-plugin":
        emulated = evaluate_detections(dataset, detections["emulation"]).summary()
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
    fp16_path = None
    if options.fp16:
        fp16_path = _export_fp16(detector, exported, options, meta, dataset, report, folder, console)
    engine_path = None
    try:
        if options.trt:
            engine_path = _export_engine(
                onnx_path, int8_path, meta, options, dataset, report, folder, console, fp16_path, detector
            )
    except EdgeKDError:
        _save_report(work, report)
        folder.commit()
        _print_report(console, report)
        raise
    _save_report(work, report)
    folder.commit()
    _print_report(console, report)
    onnx_final, int8_final, engine_final, fp16_final = (
        folder.final_path(p) if p is not None else None for p in (onnx_path, int8_path, engine_path, fp16_path)
    )
    return ExportResult(out_dir, onnx_final, int8_final, engine_final, report, fp16_final)


def _print_report(console: Console, report: ParityReport) -> None:
    for table in report_tables(report):
        print_table(console, table)
    for note in report.notes:
        console.print(f"[yellow]note:[/] {note}")


def _export_fp16(
    detector: object,
    exported: object,
    options: ExportOptions,
    meta: ExportMetadata,
    dataset: Dataset | None,
    report: ParityReport,
    folder: ExportFolder,
    console: Console,
) -> Path:
    """FP16 ONNX beside the FP32 one (`edgekd.export.fp16`), its raw outputs and AP checked against PyTorch with
    FP16 bounds on ONNX Runtime; outside them it is kept as `.rejected` and the export stops."""
    from edgekd.evaluate import evaluate_detections
    from edgekd.export.fp16 import FP16_AP_TOLERANCE, FP16_BOX_TOLERANCE, FP16_SCORE_TOLERANCE, convert_fp16
    from edgekd.export.parity import ModelParity

    console.print("FP16 ONNX: converting (inputs, outputs, decoding and fragile ops stay FP32)")
    fp16_raw, info = convert_fp16(exported.raw)
    fp16_meta = dataclasses.replace(meta, precision="fp16", quantization=info)
    path = folder.work / "model_fp16.onnx"
    _write_model(path, _with_nms(fp16_raw, meta, options.nms).SerializeToString(), fp16_meta)
    raw_meta = dataclasses.replace(fp16_meta, nms="none")
    candidate = OnnxRunner(fp16_raw.SerializeToString(), raw_meta, threads=options.threads)
    runners = _ParityRunners(TorchRunner.in_memory(detector, options.batch), candidate, None, None)
    stats = RawDifference()
    detections = _evaluate_parity(runners, dataset, "none", stats, console)
    inputs = f"{stats.images} validation images" if dataset is not None else "random input (no --data)"
    report.fp16 = ModelParity(
        "ONNX Runtime FP16", str(folder.final_path(path)), stats, inputs, FP16_BOX_TOLERANCE, FP16_SCORE_TOLERANCE
    )
    if dataset is not None:
        summary = evaluate_detections(dataset, detections["onnx"]).summary()
        name = "ONNX Runtime FP16, host NMS"
        report.ap.rows.append(ApRow.measured(name, summary, report.ap.reference, True, FP16_AP_TOLERANCE))
    if not report.passed:
        rejected = _reject(path)
        _save_report(folder.work, report)
        folder.commit()
        _print_report(console, report)
        raise EdgeKDError(_fp16_failure_message(report, folder.final_path(rejected)))
    return path


def _fp16_failure_message(report: ParityReport, rejected: Path) -> str:
    fp16 = report.fp16
    lines = [
        f"FP16 export failed parity (kept as {rejected} for inspection; report in {rejected.parent / 'parity.md'}):",
        f"  raw boxes max |diff| {fp16.raw.boxes_max:.3g} px (tolerance {fp16.box_tolerance:g}), scores max |diff| "
        f"{fp16.raw.scores_max:.3g} (tolerance {fp16.score_tolerance:g})",
    ]
    return "\n".join(lines + _failed_ap_lines(report))


def _with_nms(raw: object, meta: ExportMetadata, nms: str) -> object:
    """A raw graph (boxes, scores) with the NMS tail `nms` asks for, checked."""
    from edgekd.export.nms import append_efficient_nms, append_onnx_nms
    from edgekd.export.onnx import check_model

    post = PostprocessConfig.from_metadata(meta)
    if nms == "onnx":
        model = append_onnx_nms(raw, meta.num_candidates, len(meta.classes), post)
    elif nms == "trt-plugin":
        model = append_efficient_nms(raw, post)
    else:
        model = raw
    check_model(model)
    return model


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
    from edgekd.export.quantize import (
        HEAD_OUTPUT_LAYERS,
        MIN_RECOMMENDED_IMAGES,
        QuantSettings,
        calibration_records,
        quantize_qdq,
    )

    calib_root = options.calib_data or options.data
    calib_split = options.calib_split
    calibration = load_dataset(calib_root, calib_split, classes=tuple(meta.classes))
    records = calibration_records(calibration, options.calib_images)
    if len(records) < MIN_RECOMMENDED_IMAGES:
        report.notes.append(
            f"INT8 calibrated on only {len(records)} images ({calib_root}, split {calib_split}); use a few hundred "
            "real images for a trustworthy INT8 model"
        )
    raw_meta = dataclasses.replace(meta, nms="none")
    search = None
    if options.int8_ap_budget is not None:
        console.print(
            f"INT8 (QDQ): calibrating on {len(records)} images, searching the float layers for an AP "
            f"within {options.int8_ap_budget:g} points of FP32"
        )
        quantized_raw, info, search = _searched_int8(exported.raw, records, raw_meta, options, dataset, report, console)
    else:
        keep = HEAD_OUTPUT_LAYERS[detector.family] if options.int8_keep is None else options.int8_keep
        console.print(f"INT8 (QDQ): calibrating on {len(records)} images, keeping {list(keep) or 'nothing'} in float")
        settings = QuantSettings(target=options.int8_target)
        quantized_raw, info = quantize_qdq(
            exported.raw, records, meta.input_size, options.batch.opt, keep, meta.input_name, settings
        )
    quantized = _with_nms(quantized_raw, meta, options.nms)
    info["calibration_data"] = f"{calib_root} ({calib_split})"
    int8_meta = dataclasses.replace(meta, precision="int8-qdq", quantization=info)
    path = folder.work / "model_int8.onnx"
    _write_model(path, quantized.SerializeToString(), int8_meta)
    report.int8_model = str(folder.final_path(path))
    if options.int8_target == "tensorrt" and not options.trt:
        report.notes.append(
            "model_int8.onnx has signed symmetric activations (S8S8, for TensorRT); ONNX Runtime's x86 CPU kernels "
            "run much of it in float and it is slower than FP32 there: for a CPU deployment export with "
            "--int8-target cpu (benchmarks/results/int8_profile.md)"
        )
    if search is not None:
        from edgekd.export.int8_search import plot_search

        plot_search(search, folder.work / SEARCH_PLOT)
        report.int8_search = search
        report.int8_search_plot = SEARCH_PLOT
        summary = search.chosen.metrics
    elif dataset is not None:
        runner = OnnxRunner(quantized_raw.SerializeToString(), raw_meta, threads=options.threads)
        summary = evaluate_detections(dataset, predict_dataset(runner, dataset)).summary()
    if dataset is not None:
        row = ApRow.measured("ONNX Runtime INT8 QDQ, host NMS", summary, report.ap.reference, False)
        report.ap.rows.append(row)
        loss = -row.delta["AP"]
        if search is None and loss > INT8_AP_AIM:
            report.notes.append(
                f"INT8 loses {loss:.2f} AP points (aim: under {INT8_AP_AIM}); calibrate on more images, keep more "
                "layers in float (--int8-keep), or let --int8-ap-budget choose them"
            )
    return path


def _compute_p50_ms(runner: OnnxRunner, batch: int) -> float:
    """Median compute latency of a runner (a short run: a step of the INT8 search, not a benchmark)."""
    from edgekd.bench.timing import measure

    runner.prepare(batch)
    timed = measure(runner.compute, runner.clock, warmup=SEARCH_WARMUP, iters=SEARCH_ITERS)
    return float(np.median(timed.times) * 1000)


def _searched_int8(
    raw: object,
    records: list,
    raw_meta: ExportMetadata,
    options: ExportOptions,
    dataset: Dataset,
    report: ParityReport,
    console: Console,
) -> tuple[object, dict, object]:
    """The INT8 QDQ model whose float-kept layer groups `edgekd.export.int8_search` chose for the AP budget."""
    from edgekd.evaluate import evaluate_detections
    from edgekd.export.int8_search import Measured, layer_groups, search_fallback, search_table
    from edgekd.export.quantize import QdqQuantizer, QuantSettings, quantization_info

    batch = options.batch.opt
    settings = QuantSettings(target=options.int8_target)
    fp32 = OnnxRunner(raw.SerializeToString(), raw_meta, threads=options.threads)
    reference_latency = _compute_p50_ms(fp32, batch)
    with QdqQuantizer(raw, records, raw_meta.input_size, batch, raw_meta.input_name, settings) as quantizer:
        groups = layer_groups(quantizer.quantisable_nodes())
        members = {group.name: group.nodes for group in groups}

        def measure(kept: tuple[str, ...], timed: bool) -> Measured:
            model = quantizer.quantize([node for name in kept for node in members[name]])
            runner = OnnxRunner(model.SerializeToString(), raw_meta, threads=options.threads)
            metrics = evaluate_detections(dataset, predict_dataset(runner, dataset)).summary()
            return Measured(metrics, _compute_p50_ms(runner, batch) if timed else None)

        search = search_fallback(
            groups, report.ap.rows[1].metrics, options.int8_ap_budget, measure, reference_latency, console.print
        )
        quantized = quantizer.quantize(search.kept_nodes)
    info = quantization_info(records, [], search.kept_nodes, settings)
    info["kept_float_groups"] = list(search.chosen.kept)
    info["search"] = {key: value for key, value in search.to_dict().items() if key != "sensitivity"}
    print_table(console, search_table(search), name_columns=(5,))
    return quantized, info, search


def _export_engine(
    onnx_path: Path,
    int8_path: Path | None,
    meta: ExportMetadata,
    options: ExportOptions,
    dataset: Dataset | None,
    report: ParityReport,
    folder: ExportFolder,
    console: Console,
    fp16_path: Path | None = None,
    detector: object | None = None,
) -> Path | None:
    """TensorRT engine with the Python API; where TensorRT or a GPU is missing, no engine (None) and
    `report.tensorrt` says what is missing and holds the trtexec command that builds it on the target device.

    FP16 without INT8 builds from the FP16 ONNX (`fp16_path`): strongly typed on TensorRT >= 11 and in the trtexec
    hand-off, the FP16 builder flag on the FP32 ONNX on TensorRT <= 10 (`build_engine` chooses by version).
    A built engine is gated like the ONNX model (`_gate_engine`): outside its bounds it is kept as `.rejected`."""
    from edgekd.export.quantize import HEAD_OUTPUT_LAYERS
    from edgekd.export.tensorrt import EngineOptions, build_engine, tensorrt_problems, trtexec_command

    keep = HEAD_OUTPUT_LAYERS[meta.family] if options.int8_keep is None else options.int8_keep
    keep_layers: tuple[str, ...] = ()
    if int8_path is not None and options.int8_ap_budget is not None:
        keep, keep_layers = (), tuple(read_metadata(int8_path).quantization["kept_float_nodes"])
    engine_options = EngineOptions(
        fp16=options.fp16,
        int8=options.int8,
        workspace_mib=options.workspace_mib,
        timing_cache=folder.work / "timing.cache",
        calibration_cache=folder.work / "calibration.cache" if options.int8 else None,
        keep_float=tuple(keep),
        keep_float_layers=keep_layers,
    )
    engine_path = folder.work / f"model_{engine_options.precision}.engine"
    source = int8_path if options.int8 and int8_path is not None else onnx_path
    if options.fp16 and not options.int8 and fp16_path is not None:
        source = fp16_path
        engine_options = dataclasses.replace(engine_options, strongly_typed=True)
    shown = dataclasses.replace(engine_options, timing_cache=folder.final_path(folder.work / "timing.cache"))
    final_source, final_engine = folder.final_path(source), folder.final_path(engine_path)
    command = trtexec_command(final_source, final_engine, shown, options.batch, meta.input_size, meta.input_name)
    problems = tensorrt_problems()
    if problems:
        report.tensorrt = TensorRTStatus("not built here: missing " + "; ".join(problems), command)
        return None
    from edgekd.data.loader import load_dataset
    from edgekd.export.quantize import calibration_records

    calibration = []
    if options.int8:
        calib = load_dataset(options.calib_data or options.data, options.calib_split, classes=tuple(meta.classes))
        calibration = calibration_records(calib, options.calib_images)
    console.print(f"building TensorRT {engine_options.precision} engine {engine_path}")
    info = build_engine(
        onnx_path,
        int8_path,
        engine_path,
        engine_options,
        options.batch,
        meta.input_size,
        calibration,
        meta.input_name,
        fp16_path,
    )
    precision = engine_options.precision
    engine_meta = dataclasses.replace(meta, precision=precision, tensorrt=info)
    write_metadata(engine_path, engine_meta)
    report.tensorrt = TensorRTStatus(
        f"built {folder.final_path(engine_path)} with TensorRT {info['version']} on {info['gpu']}", command
    )
    _gate_engine(engine_path, engine_meta, detector, options, dataset, report, console)
    if not report.passed:
        rejected = _reject(engine_path)
        message = _engine_failure_message(report, folder.final_path(rejected))
        if options.layerwise:
            message += "\n  " + _layerwise(onnx_path, engine_meta, options, dataset, report, folder, console)
        raise EdgeKDError(message)
    return engine_path


def _layerwise(
    onnx_path: Path,
    engine_meta: ExportMetadata,
    options: ExportOptions,
    dataset: Dataset | None,
    report: ParityReport,
    folder: ExportFolder,
    console: Console,
) -> str:
    """--layerwise after a failed engine gate: ONNX Runtime on model.onnx against TensorRT on the engine's source
    ONNX, every layer's output compared (`edgekd.export.layerwise`) on the first --data batch (else the random
    parity input), within the engine's tighter raw bound; writes layerwise.md/.json and returns the line for the
    failure message."""
    from edgekd.export.layerwise import (
        LAYERWISE_MD,
        MARKING_CAVEAT,
        POLYGRAPHY_HINT,
        compare_layers,
        onnxrt_runner,
        polygraphy_available,
        tensorrt_runner,
        write_layerwise,
    )

    if not polygraphy_available():
        return POLYGRAPHY_HINT
    if not report.engine.checked:
        return "per-layer comparison skipped: INT8 engines are gated on AP only (their layers differ by design)"
    if engine_meta.nms != "none":
        return "per-layer comparison skipped: it needs an engine without an NMS tail (export with --nms none)"
    import onnx

    height, width = engine_meta.input_size
    batch = options.batch.opt
    if dataset is not None:
        _, images, _ = next(iterate_batches(dataset, (height, width), batch))
        images, inputs = pad_batch(images, batch), f"the first {min(batch, len(dataset))} image(s) of --data"
    else:
        generator = np.random.default_rng(RANDOM_PARITY_SEED)
        images = generator.uniform(0, 255, size=(batch, 3, height, width)).astype(np.float32)
        inputs = "random input (no --data)"
    info, engine = engine_meta.tensorrt, report.engine
    source = Path(info["built_from"])
    console.print(f"per-layer comparison: ONNX Runtime on {onnx_path.name} vs TensorRT on {source.name}")
    model = onnx.load(str(onnx_path))
    try:
        reference = onnxrt_runner(model, f"ONNX Runtime FP32 ({onnx_path.name})")
        candidate = tensorrt_runner(
            source,
            info["typing"].startswith("strongly"),
            engine_meta.precision == "fp16",
            options.batch,
            engine_meta.input_name,
            engine_meta.input_size,
            options.workspace_mib,
            f"TensorRT {engine_meta.precision} ({source.name})",
        )
        compared = compare_layers(
            model,
            reference,
            candidate,
            {engine_meta.input_name: images},
            min(engine.box_tolerance, engine.score_tolerance),
            inputs,
            MARKING_CAVEAT,
        )
    except Exception as error:  # a failing diagnostic must not hide the gate failure it was asked to explain
        return f"per-layer comparison failed: {type(error).__name__}: {error}"
    write_layerwise(compared, folder.work)
    return f"{compared.summary()}; per-layer report: {folder.final / LAYERWISE_MD}"


def engine_bounds(precision: str, budget: float | None) -> tuple[float, float, float, bool]:
    """(box px, score, AP points, raw gated?) an engine of `precision` must meet against PyTorch FP32.

    FP32: the ONNX bounds (TF32 is switched off for FP32 builds). FP16: the FP16 ONNX bounds. INT8: AP within the
    --int8-ap-budget (or INT8_AP_AIM) plus the FP32 AP tolerance for engine-vs-ONNX Runtime differences; its raw
    outputs differ by quantisation steps by design, so they are reported, not gated."""
    from edgekd.export.fp16 import FP16_AP_TOLERANCE, FP16_BOX_TOLERANCE, FP16_SCORE_TOLERANCE

    if precision == "fp16":
        return FP16_BOX_TOLERANCE, FP16_SCORE_TOLERANCE, FP16_AP_TOLERANCE, True
    if precision == "int8":
        return 0.0, 0.0, (INT8_AP_AIM if budget is None else budget) + AP_TOLERANCE, False
    return RAW_TOLERANCE, RAW_TOLERANCE, AP_TOLERANCE, True


def _gate_engine(
    engine_path: Path,
    engine_meta: ExportMetadata,
    detector: object,
    options: ExportOptions,
    dataset: Dataset | None,
    report: ParityReport,
    console: Console,
) -> None:
    """Raw outputs (engines without NMS) and AP (with --data) of the engine against PyTorch FP32, through the
    TensorRT runner, into `report.engine` and an enforced AP row with the precision's bounds (`engine_bounds`)."""
    from edgekd.evaluate import evaluate_detections
    from edgekd.export.parity import ModelParity
    from edgekd.runtime.tensorrt_runner import TensorRTRunner

    precision = engine_meta.precision
    box_bound, score_bound, ap_bound, raw_gated = engine_bounds(precision, options.int8_ap_budget)
    label = f"TensorRT {precision} engine"
    stats, detections = None, None
    with TensorRTRunner(engine_path, engine_meta) as engine:
        if engine_meta.nms == "none":
            stats = RawDifference()
            reference = TorchRunner.in_memory(detector, options.batch)
            detections = _evaluate_parity(
                _ParityRunners(reference, engine, None, None), dataset, "none", stats, console
            )
        elif dataset is not None:
            detections = {"onnx": predict_dataset(engine, dataset)}
    inputs = f"{len(dataset)} validation images" if dataset is not None else "random input (no --data)"
    report.engine = ModelParity(label, str(engine_path), stats, inputs, box_bound, score_bound, raw_gated)
    if dataset is not None:
        summary = evaluate_detections(dataset, detections["onnx"]).summary()
        name = f"{label} (nms {engine_meta.nms})"
        report.ap.rows.append(ApRow.measured(name, summary, report.ap.reference, True, ap_bound))


def _engine_failure_message(report: ParityReport, rejected: Path) -> str:
    engine = report.engine
    lines = [f"{engine.label} failed its accuracy gate (kept as {rejected} for inspection):"]
    if engine.raw is not None and engine.checked:
        lines.append(
            f"  raw boxes max |diff| {engine.raw.boxes_max:.3g} px (tolerance {engine.box_tolerance:g}), scores "
            f"max |diff| {engine.raw.scores_max:.3g} (tolerance {engine.score_tolerance:g})"
        )
    return "\n".join(lines + _failed_ap_lines(report))
