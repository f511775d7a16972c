"""TensorRT backend for .engine files: pinned host buffers, device buffers, one CUDA stream, CUDA-event timing.

The engine is deserialised (after the TensorRT-version and GPU check) by `edgekd.runtime.TensorRTRunner`;
buffers, copies and timing are this module's, through cuda-python (`edgekd.bench.cuda_runtime`), because the
runtime's runner copies from pageable memory and synchronises after every copy: fine for evaluation, not for
timing what a deployed pipeline does. TensorRT >= 10 name-based I/O (set_tensor_address + execute_async_v3).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from edgekd.bench.backends.base import BenchRunner
from edgekd.bench.backends.onnxrt import export_model_info
from edgekd.bench.cuda_runtime import CudaEventClock, CudaRuntime, pinned_array
from edgekd.data.records import Detections
from edgekd.errors import EdgeKDError
from edgekd.export.metadata import check_model_io, read_metadata
from edgekd.runtime.postprocess import PostprocessConfig, decode_outputs


class _Buffer:
    """A pinned host array and a device allocation of the same size."""

    def __init__(self, cuda: CudaRuntime, shape: tuple[int, ...], dtype: np.dtype) -> None:
        self.cuda = cuda
        self.nbytes = int(np.prod(shape)) * np.dtype(dtype).itemsize
        self.host_pointer = cuda.malloc_host(self.nbytes)
        self.device_pointer = cuda.malloc(self.nbytes)
        self.host = pinned_array(self.host_pointer, shape, dtype)

    def free(self) -> None:
        self.cuda.free(self.device_pointer)
        self.cuda.free_host(self.host_pointer)


class TensorRTEngineRunner(BenchRunner):
    """A serialised engine run on GPU 0 with its own stream."""

    backend = "trt"
    gpu = True

    def __init__(self, path: Path) -> None:
        from edgekd.runtime.tensorrt_runner import TensorRTRunner, import_tensorrt

        self.meta = read_metadata(path)
        if not self.meta.tensorrt:
            raise EdgeKDError(f"{path}: its metadata has no 'tensorrt' section (version and GPU that built it)")
        self.trt = import_tensorrt()
        self.cuda = CudaRuntime()
        loaded = TensorRTRunner(path, self.meta.tensorrt)  # checks TensorRT version and GPU, then deserialises
        check_model_io(self.meta, path, *loaded.io_shapes())
        self.engine, self.context = loaded.engine, loaded.context
        self.input_name, self.output_names = loaded.input_name, loaded.output_names
        self.gpu_name = loaded.device.name
        self.info = export_model_info(path, self.meta, "engine")
        self.info.extra["tensorrt"] = self.meta.tensorrt.get("version")
        self.stream = self.cuda.create_stream()
        self.clock = CudaEventClock(self.cuda, self.stream)
        self.post = PostprocessConfig.from_metadata(self.meta)
        self._buffers: dict[str, _Buffer] = {}

    @property
    def device(self) -> str:
        return self.gpu_name

    def _free_buffers(self) -> None:
        for buffer in self._buffers.values():
            buffer.free()
        self._buffers = {}

    def prepare(self, batch: int) -> None:
        self._free_buffers()
        height, width = self.info.input_size
        shape = (batch, 3, height, width)
        if not self.context.set_input_shape(self.input_name, shape):
            raise EdgeKDError(f"engine rejects input shape {shape} (outside its optimisation profile)")
        for name in (self.input_name, *self.output_names):
            dims = tuple(self.context.get_tensor_shape(name))
            if any(d < 0 for d in dims):
                raise EdgeKDError(f"engine output {name!r} has a data-dependent shape {dims}; edgekd exports pad it")
            dtype = np.dtype(self.trt.nptype(self.engine.get_tensor_dtype(name)))
            self._buffers[name] = _Buffer(self.cuda, dims, dtype)
            self.context.set_tensor_address(name, self._buffers[name].device_pointer)
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

    def infer(self, images: np.ndarray) -> dict[str, np.ndarray]:
        """Outputs as views of the pinned buffers: valid until the next call (decode them before that)."""
        np.copyto(self._buffers[self.input_name].host, images, casting="same_kind")
        self.host_to_device()
        self.compute()
        self.device_to_host()
        self.cuda.synchronize(self.stream)
        return {name: self._buffers[name].host for name in self.output_names}

    def decode(self, outputs: dict[str, np.ndarray], scales: np.ndarray) -> list[Detections]:
        return decode_outputs(outputs, scales, self.meta.nms, self.post)

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
        self._free_buffers()
        self.clock.close()
        self.cuda.destroy_stream(self.stream)
