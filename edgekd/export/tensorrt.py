"""TensorRT engines from the exported ONNX through the TensorRT Python API (imported lazily).

TensorRT 8.6-10.x: weakly typed networks with builder flags (FP16, INT8 with an IInt8EntropyCalibrator2 over
preprocessed dataset images and a calibration cache, chosen layers kept in float under
OBEY_PRECISION_CONSTRAINTS). TensorRT >= 11 removed those flags and calibrators: networks are strongly typed, INT8
comes from the QDQ model that `quantize.py` calibrates with ONNX Runtime on the same images (explicit
quantisation), and FP16 from the FP16 ONNX that `fp16.py` writes (its precision is in the graph). The code path is
chosen by the TensorRT version found (`BuilderFlag.INT8` exists only before 11). The trtexec hand-off for FP16 is
`--onnx=model_fp16.onnx --stronglyTyped`, which TensorRT 9 and later accept.
Every build uses a timing cache, a workspace limit and, for dynamic batch, an optimisation profile.
Where TensorRT or a CUDA GPU is missing, `trtexec_command` gives the equivalent command for the target device.
"""

from __future__ import annotations

import shlex
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from edgekd.atomic import atomic_write_bytes
from edgekd.data.records import ImageRecord
from edgekd.errors import EdgeKDError
from edgekd.runtime.metadata import BatchSpec
from edgekd.runtime.preprocess import load_images, pad_batch


@dataclass(frozen=True)
class EngineOptions:
    """What to build: precision flags, workspace, caches, float-kept layers (INT8): `keep_float` name fragments
    (`--int8-keep`), `keep_float_layers` exact node names (the set `--int8-ap-budget` chose, from the QDQ
    model's metadata)."""

    fp16: bool = False
    int8: bool = False
    workspace_mib: int = 4096
    timing_cache: Path | None = None
    calibration_cache: Path | None = None
    keep_float: tuple[str, ...] = ()
    keep_float_layers: tuple[str, ...] = ()
    strongly_typed: bool = False  # trtexec: the ONNX carries its precision (FP16 ONNX), no --fp16 flag

    @property
    def precision(self) -> str:
        return "int8" if self.int8 else "fp16" if self.fp16 else "fp32"


def tensorrt_problems() -> list[str]:
    """What is missing to build or run engines here (empty when TensorRT and a CUDA GPU are usable)."""
    from edgekd.runtime.cuda import cuda_problem

    problems = []
    try:
        import tensorrt  # noqa: F401
    except ImportError as error:
        problems.append(f"TensorRT Python package (`import tensorrt` failed: {error})")
    gpu = cuda_problem()
    if gpu is not None:
        problems.append(gpu)
    return problems


def _shape(batch: int, input_size: Sequence[int]) -> str:
    return f"{batch}x3x{input_size[0]}x{input_size[1]}"


def trtexec_command(
    onnx_path: Path,
    engine_path: Path,
    options: EngineOptions,
    batch: BatchSpec,
    input_size: Sequence[int],
    input_name: str = "images",
) -> str:
    """The trtexec command that builds the same engine on the target device.

    `onnx_path` is the QDQ model for INT8 (explicit quantisation: the scales calibrated here travel with it).
    """
    parts = ["trtexec", f"--onnx={onnx_path}", f"--saveEngine={engine_path}"]
    if options.strongly_typed:
        parts.append("--stronglyTyped")
    elif options.fp16:
        parts.append("--fp16")
    if options.int8:
        parts.append("--int8")
    if batch.dynamic:
        parts += [
            f"--minShapes={input_name}:{_shape(batch.min, input_size)}",
            f"--optShapes={input_name}:{_shape(batch.opt, input_size)}",
            f"--maxShapes={input_name}:{_shape(batch.max, input_size)}",
        ]
    parts.append(f"--memPoolSize=workspace:{options.workspace_mib}")
    if options.timing_cache is not None:
        parts.append(f"--timingCacheFile={options.timing_cache}")
    return " ".join(shlex.quote(part) for part in parts)


def _calibrator(
    trt: object,
    cuda: object,
    records: Sequence[ImageRecord],
    input_size: Sequence[int],
    batch: int,
    cache: Path | None,
) -> object:
    """An IInt8EntropyCalibrator2 feeding preprocessed images (as at inference) from device memory."""
    height, width = input_size

    class EntropyCalibrator(trt.IInt8EntropyCalibrator2):
        def __init__(self) -> None:
            trt.IInt8EntropyCalibrator2.__init__(self)
            self.position = 0
            self.stream = cuda.create_stream()
            self.pointer = cuda.malloc(batch * 3 * height * width * 4)

        def get_batch_size(self) -> int:
            return batch

        def get_batch(self, names: list[str]) -> list[int] | None:
            if self.position >= len(records):
                return None
            images, _ = load_images(records[self.position : self.position + batch], (height, width))
            self.position += batch
            cuda.upload(self.pointer, pad_batch(images, batch), self.stream)
            return [self.pointer]

        def read_calibration_cache(self) -> bytes | None:
            return cache.read_bytes() if cache is not None and cache.is_file() else None

        def write_calibration_cache(self, data: object) -> None:
            if cache is not None:
                atomic_write_bytes(cache, bytes(data))

        def close(self) -> None:
            """Free the device batch and the stream."""
            cuda.free(self.pointer)
            cuda.destroy_stream(self.stream)

    return EntropyCalibrator()


def _keep_layers_float(
    trt: object, network: object, patterns: Sequence[str], names: Sequence[str], fp16: bool
) -> list[str]:
    """Layer precision constraints (honoured under OBEY_PRECISION_CONSTRAINTS): layers whose name contains one of
    `patterns` or equals one of `names` (the ONNX parser names a layer after its node) run in FP16 with --fp16,
    else FP32; returns the constrained layers' names."""
    kept = []
    exact = set(names)
    precision = trt.float16 if fp16 else trt.float32
    for index in range(network.num_layers):
        layer = network.get_layer(index)
        if layer.name in exact or any(pattern in layer.name for pattern in patterns):
            layer.precision = precision
            for output in range(layer.num_outputs):
                layer.set_output_type(output, precision)
            kept.append(layer.name)
    return kept


def build_engine(
    onnx_path: Path,
    qdq_path: Path | None,
    engine_path: Path,
    options: EngineOptions,
    batch: BatchSpec,
    input_size: Sequence[int],
    calibration: Sequence[ImageRecord] = (),
    input_name: str = "images",
    fp16_path: Path | None = None,
) -> dict:
    """Build and save a serialized engine; returns the `tensorrt` section of its metadata (version, GPU, ...).

    `qdq_path`: the INT8 QDQ model (TensorRT >= 11 INT8); `fp16_path`: the FP16 ONNX (TensorRT >= 11 FP16)."""
    from edgekd.runtime.cuda import CudaRuntime
    from edgekd.runtime.tensorrt_runner import import_tensorrt

    trt = import_tensorrt()
    cuda = CudaRuntime()
    gpu, capability = cuda.identity()
    calibrator = None
    logger = trt.Logger(trt.Logger.WARNING)
    trt.init_libnvinfer_plugins(logger, "")  # EfficientNMS_TRT
    builder = trt.Builder(logger)
    weakly_typed = hasattr(trt.BuilderFlag, "INT8")  # TensorRT < 11
    source = onnx_path
    if options.int8 and not weakly_typed:
        if qdq_path is None:
            raise EdgeKDError("TensorRT >= 11 builds INT8 only from a QDQ model; the INT8 QDQ export is missing")
        source = qdq_path
    if options.fp16 and options.int8 and not weakly_typed:
        raise EdgeKDError(
            f"--fp16 with --int8: TensorRT {trt.__version__} builds strongly typed networks only, whose precision "
            "comes from the graph; build the INT8 QDQ model (without --fp16) or the FP16 model (without --int8)"
        )
    if options.fp16 and not options.int8 and not weakly_typed:
        if fp16_path is None:
            raise EdgeKDError("TensorRT >= 11 builds FP16 only from an FP16 ONNX; the FP16 export is missing")
        source = fp16_path
    flags = 0
    if not weakly_typed:
        flags |= 1 << int(trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED)
    elif int(trt.__version__.split(".")[0]) < 10:
        flags |= 1 << int(trt.NetworkDefinitionCreationFlag.EXPLICIT_BATCH)
    network = builder.create_network(flags)
    parser = trt.OnnxParser(network, logger)
    if not parser.parse_from_file(str(source)):
        errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise EdgeKDError(f"TensorRT cannot parse {source}: {errors}")
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, options.workspace_mib << 20)
    cache_bytes = options.timing_cache.read_bytes() if options.timing_cache and options.timing_cache.is_file() else b""
    timing_cache = config.create_timing_cache(cache_bytes)
    config.set_timing_cache(timing_cache, ignore_mismatch=False)
    kept: list[str] = []
    if options.precision == "fp32" and hasattr(trt.BuilderFlag, "TF32"):
        config.clear_flag(trt.BuilderFlag.TF32)  # TF32 (10-bit mantissa) would fail the FP32 parity gate
    if weakly_typed and options.fp16:
        config.set_flag(trt.BuilderFlag.FP16)
    profile = None
    if batch.dynamic:
        height, width = input_size
        profile = builder.create_optimization_profile()
        profile.set_shape(
            input_name, (batch.min, 3, height, width), (batch.opt, 3, height, width), (batch.max, 3, height, width)
        )
        config.add_optimization_profile(profile)
    if weakly_typed and options.int8:
        if not calibration:
            raise EdgeKDError("--int8: no calibration images (give --calib-data or --data)")
        config.set_flag(trt.BuilderFlag.INT8)
        calibrator = _calibrator(trt, cuda, calibration, input_size, batch.opt, options.calibration_cache)
        config.int8_calibrator = calibrator
        if profile is not None:
            config.set_calibration_profile(profile)
        kept = _keep_layers_float(trt, network, options.keep_float, options.keep_float_layers, options.fp16)
        if kept:
            config.set_flag(trt.BuilderFlag.OBEY_PRECISION_CONSTRAINTS)
    try:
        serialized = builder.build_serialized_network(network, config)
    finally:
        if calibrator is not None:
            calibrator.close()
    if serialized is None:
        raise EdgeKDError(f"TensorRT failed to build an engine from {source} (see the TensorRT log above)")
    atomic_write_bytes(engine_path, bytes(serialized))
    if options.timing_cache is not None:
        atomic_write_bytes(options.timing_cache, bytes(config.get_timing_cache().serialize()))
    return {
        "version": trt.__version__,
        "gpu": gpu,
        "compute_capability": capability,
        "precision": options.precision,
        "built_from": str(source),
        "workspace_mib": options.workspace_mib,
        "int8_calibration": (
            None
            if not options.int8
            else "IInt8EntropyCalibrator2"
            if weakly_typed
            else "explicit quantisation (ONNX Runtime QDQ scales)"
        ),
        "typing": "weakly typed (builder precision flags)"
        if weakly_typed
        else "strongly typed (precision from the ONNX)",
        "layers_kept_float": kept,
        "calibration_images": len(calibration) if options.int8 and weakly_typed else 0,
    }
