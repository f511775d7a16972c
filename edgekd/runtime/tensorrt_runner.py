"""Run a serialized TensorRT engine (TensorRT >= 10 name-based I/O: set_tensor_address + execute_async_v3).

An engine only runs on the TensorRT version and GPU model that built it: both are recorded in its metadata and
checked here before deserialising, so a mismatch is a clear message rather than a deserialisation error.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from edgekd.errors import EdgeKDError


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


class TensorRTRunner:
    """Deserialize an engine and run it on GPU 0; outputs come back as numpy arrays by name."""

    def __init__(self, path: str | Path, recorded: dict) -> None:
        from edgekd.runtime.cuda import CudaDevice

        trt = import_tensorrt()
        self.device = CudaDevice()
        current = {
            "version": trt.__version__,
            "gpu": self.device.name,
            "compute_capability": self.device.compute_capability,
        }
        problem = engine_mismatch(recorded, current)
        if problem:
            raise EdgeKDError(
                f"{path}: {problem} (`edgekd export CKPT --trt`, or the trtexec command in its parity report)"
            )
        self._trt = trt
        logger = trt.Logger(trt.Logger.WARNING)
        trt.init_libnvinfer_plugins(logger, "")  # EfficientNMS_TRT and other standard plugins
        self._runtime = trt.Runtime(logger)
        self.engine = self._runtime.deserialize_cuda_engine(Path(path).read_bytes())
        if self.engine is None:
            raise EdgeKDError(f"{path}: TensorRT could not deserialize the engine (see the TensorRT log above)")
        self.context = self.engine.create_execution_context()
        names = [self.engine.get_tensor_name(i) for i in range(self.engine.num_io_tensors)]
        is_input = {name: self.engine.get_tensor_mode(name) == trt.TensorIOMode.INPUT for name in names}
        self.input_name = next(name for name in names if is_input[name])
        self.output_names = [name for name in names if not is_input[name]]
        self._buffers: dict[str, tuple[int, int]] = {}  # name -> (device pointer, capacity in bytes)

    def io_shapes(self) -> tuple[dict[str, list], dict[str, list]]:
        """Input and output shapes by name as the engine declares them (-1 where dynamic)."""
        shape = self.engine.get_tensor_shape
        return (
            {self.input_name: list(shape(self.input_name))},
            {name: list(shape(name)) for name in self.output_names},
        )

    def _buffer(self, name: str, nbytes: int) -> int:
        pointer, capacity = self._buffers.get(name, (0, -1))
        if capacity < nbytes:
            if capacity >= 0:
                self.device.free(pointer)
            pointer = self.device.alloc(nbytes)
            self._buffers[name] = (pointer, nbytes)
        return pointer

    def run(self, images: np.ndarray) -> dict[str, np.ndarray]:
        images = np.ascontiguousarray(images, dtype=np.float32)
        if not self.context.set_input_shape(self.input_name, images.shape):
            raise EdgeKDError(f"engine rejects input shape {images.shape} (outside its optimisation profile)")
        pointer = self._buffer(self.input_name, images.nbytes)
        self.device.to_device(pointer, images)
        self.context.set_tensor_address(self.input_name, pointer)
        results = {}
        for name in self.output_names:
            shape = tuple(self.context.get_tensor_shape(name))
            dtype = np.dtype(self._trt.nptype(self.engine.get_tensor_dtype(name)))
            results[name] = np.empty(shape, dtype=dtype)
            self.context.set_tensor_address(name, self._buffer(name, results[name].nbytes))
        if not self.context.execute_async_v3(self.device.stream_handle):
            raise EdgeKDError("TensorRT execution failed (see the TensorRT log above)")
        for name, array in results.items():
            self.device.to_host(array, self._buffers[name][0])
        self.device.synchronize()
        return results
