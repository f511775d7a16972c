"""TensorRT runner: a serialized .engine on GPU 0 (TensorRT >= 10 name-based I/O: set_tensor_address +
execute_async_v3), with pinned host buffers, device buffers and one CUDA stream it owns (`edgekd.runtime.cuda`).

An engine only runs on the TensorRT version and GPU model that built it: both are recorded in its metadata and
checked here before deserialising, so a mismatch is a clear message rather than a deserialisation error.
`infer` copies the batch into the pinned input buffer, enqueues host-to-device, the network and device-to-host
on the stream and waits for it; the timing hooks enqueue the same pieces one at a time (CUDA-event clock).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from edgekd.data.records import Detections
from edgekd.errors import EdgeKDError
from edgekd.runtime.cuda import CudaEventClock, CudaRuntime, PinnedBuffer
from edgekd.runtime.metadata import ExportMetadata, check_model_io
from edgekd.runtime.postprocess import PostprocessConfig, check_labels, decode_outputs
from edgekd.runtime.runner import ModelInfo, Outputs, Runner, run_name


def import_tensorrt():
    """The `tensorrt` module, or EdgeKDError saying it is missing."""
    try:
        import tensorrt
    except ImportError as error:
        raise EdgeKDError(
            f"TensorRT Python package not importable ({error}); install TensorRT (e.g. `pip install tensorrt` on x86, "
            "JetPack on Jetson) to build or run .engine files"
        ) from None
    return tensorrt


def engine_mismatch(recorded: dict, current: dict) -> str | None:
    """Why an engine built under `recorded` (TensorRT version, GPU name, compute capability) cannot run under
    `current`, or None when they match."""
    problems = []
    if recorded.get("version") != current.get("version"):
        problems.append(f"TensorRT {recorded.get('version')} (here: {current.get('version')})")
    if recorded.get("compute_capability") != current.get("compute_capability") or recorded.get("gpu") != current.get(
        "gpu"
    ):
        problems.append(
            f"GPU '{recorded.get('gpu')}' sm {recorded.get('compute_capability')} "
            f"(here: '{current.get('gpu')}' sm {current.get('compute_capability')})"
        )
    if not problems:
        return None
    return "engine was built for " + " and ".join(problems) + "; rebuild it on this machine"


class TensorRTRunner(Runner):
    """A serialized engine on GPU 0 with its own stream; outputs come back as numpy arrays by name."""

    backend = "trt"
    gpu = True

    def __init__(self, path: Path, meta: ExportMetadata) -> None:
        if not meta.tensorrt:
            raise EdgeKDError(f"{path}: its metadata has no 'tensorrt' section (version and GPU that built it)")
        trt = import_tensorrt()
        self.cuda = CudaRuntime()
        self.gpu_name, capability = self.cuda.identity()
        current = {"version": trt.__version__, "gpu": self.gpu_name, "compute_capability": capability}
        problem = engine_mismatch(meta.tensorrt, current)
        if problem:
            raise EdgeKDError(
                f"{path}: {problem} (`edgekd export CKPT --trt`, or the trtexec command in its parity report)"
            )
        self._trt, self.path, self.name, self.meta = trt, path, path.name, meta
        logger = trt.Logger(trt.Logger.WARNING)
        trt.init_libnvinfer_plugins(logger, "")  # EfficientNMS_TRT and other standard plugins
        self._runtime = trt.Runtime(logger)
        self.engine = self._runtime.deserialize_cuda_engine(path.read_bytes())
        if self.engine is None:
            raise EdgeKDError(f"{path}: TensorRT could not deserialize the engine (see the TensorRT log above)")
        self.context = self.engine.create_execution_context()
        names = [self.engine.get_tensor_name(i) for i in range(self.engine.num_io_tensors)]
        is_input = {name: self.engine.get_tensor_mode(name) == trt.TensorIOMode.INPUT for name in names}
        self.input_name = next(name for name in names if is_input[name])
        self.output_names = [name for name in names if not is_input[name]]
        check_model_io(meta, path, *self.io_shapes())
        self.info = ModelInfo.from_metadata(meta, "engine", run_name(path))
        self.info.extra["tensorrt"] = meta.tensorrt.get("version")
        self.post = PostprocessConfig.from_metadata(meta)
        self.stream = self.cuda.create_stream()
        self.clock = CudaEventClock(self.cuda, self.stream)
        self._buffers: dict[str, PinnedBuffer] = {}
        self._shape: tuple[int, ...] | None = None

    def io_shapes(self) -> tuple[dict[str, list], dict[str, list]]:
        """Input and output shapes by name as the engine declares them (-1 where dynamic)."""
        shape = self.engine.get_tensor_shape
        return (
            {self.input_name: list(shape(self.input_name))},
            {name: list(shape(name)) for name in self.output_names},
        )

    def _free_buffers(self) -> None:
        for buffer in self._buffers.values():
            buffer.free()
        self._buffers = {}
        self._shape = None

    def _bind(self, shape: tuple[int, ...]) -> None:
        """Pinned and device buffers for an input of `shape`, bound to the context (kept while the shape holds)."""
        if shape == self._shape:
            return
        self._free_buffers()
        if not self.context.set_input_shape(self.input_name, shape):
            raise EdgeKDError(f"{self.name}: engine rejects input shape {shape} (outside its optimisation profile)")
        for name in (self.input_name, *self.output_names):
            dims = tuple(self.context.get_tensor_shape(name))
            if any(d < 0 for d in dims):
                raise EdgeKDError(f"engine output {name!r} has a data-dependent shape {dims}; edgekd exports pad it")
            dtype = np.dtype(self._trt.nptype(self.engine.get_tensor_dtype(name)))
            self._buffers[name] = PinnedBuffer(self.cuda, dims, dtype)
            self.context.set_tensor_address(name, self._buffers[name].device_pointer)
        self._shape = shape

    def infer(self, images: np.ndarray) -> dict[str, np.ndarray]:
        """Outputs as views of the pinned buffers: valid until the next call (decode them before that)."""
        self._bind(tuple(images.shape))
        np.copyto(self._buffers[self.input_name].host, images, casting="same_kind")
        self.host_to_device()
        self.compute()
        self.device_to_host()
        self.cuda.synchronize(self.stream)
        return {name: self._buffers[name].host for name in self.output_names}

    def decode(self, outputs: Outputs, scales: np.ndarray | None) -> list[Detections]:
        """Detections in original pixels; a label beyond the metadata's class list is an error naming it."""
        detections = decode_outputs(outputs, scales, self.meta.nms, self.post)
        check_labels(detections, self.meta.classes, self.path)
        return detections

    def prepare(self, batch: int) -> None:
        height, width = self.info.input_size
        shape = (batch, 3, height, width)
        self._bind(shape)
        inputs = self._buffers[self.input_name].host
        inputs[...] = np.random.default_rng(0).uniform(0, 255, shape).astype(inputs.dtype)
        self.host_to_device()
        self.cuda.synchronize(self.stream)

    def compute(self) -> None:
        if not self.context.execute_async_v3(int(self.stream)):
            raise EdgeKDError("TensorRT execution failed (see the TensorRT log above)")

    def host_to_device(self) -> None:
        buffer = self._buffers[self.input_name]
        self.cuda.copy_to_device(buffer.device_pointer, buffer.host_pointer, buffer.nbytes, self.stream)

    def device_to_host(self) -> None:
        for name in self.output_names:
            buffer = self._buffers[name]
            self.cuda.copy_to_host(buffer.host_pointer, buffer.device_pointer, buffer.nbytes, self.stream)

    def device_memory(self) -> dict:
        activation = getattr(self.engine, "device_memory_size_v2", None)
        if activation is None:
            activation = self.engine.device_memory_size
        used, _ = self.cuda.memory_used_mib()
        return {
            "engine_activation_mib": activation / 2**20,
            "io_buffers_mib": sum(b.nbytes for b in self._buffers.values()) / 2**20,
            "device_used_mib": used,
            "device_method": "engine activation memory + I/O buffers; cudaMemGetInfo after the run (whole GPU)",
        }

    def close(self) -> None:
        """Free the buffers, the clock's events and the stream (once)."""
        if self.stream is None:
            return
        self._free_buffers()
        self.clock.close()
        self.cuda.destroy_stream(self.stream)
        self.stream = None
