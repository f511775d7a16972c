"""The CUDA runtime without torch: device and pinned host memory, copies, streams and events through cuda-python
(`cuda.bindings.runtime`, or `cuda.cudart` before 12.6). Imported lazily; what is missing is named in the error.

Every cuda-python call returns (error, *values); `CudaRuntime.check` turns a failure into an EdgeKDError naming
the call. The TensorRT runner (`edgekd.runtime.tensorrt_runner`), the engine builder's INT8 calibrator
(`edgekd.export.tensorrt`) and the benchmark's device clock all go through this one module.
"""

from __future__ import annotations

import ctypes
from dataclasses import dataclass

import numpy as np

from edgekd.errors import EdgeKDError

INSTALL_HINT = "install cuda-python matching the CUDA driver (`pip install cuda-python`)"


def import_cudart():
    """The cuda-python runtime module, or EdgeKDError naming what to install."""
    try:
        from cuda.bindings import runtime
    except ImportError:
        try:
            from cuda import cudart as runtime
        except ImportError:
            raise EdgeKDError(f"no CUDA Python bindings: {INSTALL_HINT}") from None
    return runtime


def cuda_problem() -> str | None:
    """Why no CUDA GPU can be used from Python here, or None when one can."""
    try:
        runtime = import_cudart()
    except EdgeKDError as error:
        return str(error)
    try:
        error, count = runtime.cudaGetDeviceCount()
    except Exception as failure:  # cuda-python raises when it cannot load the CUDA runtime library
        return f"no usable CUDA runtime ({failure})"
    if error != runtime.cudaError_t.cudaSuccess:
        return f"no usable CUDA GPU (cudaGetDeviceCount: {runtime.cudaGetErrorString(error)[1].decode()})"
    return None if count > 0 else "no CUDA GPU visible (cudaGetDeviceCount returned 0)"


class CudaRuntime:
    """Checked wrappers over the CUDA runtime calls edgekd uses, on GPU 0."""

    def __init__(self) -> None:
        problem = cuda_problem()
        if problem is not None:
            raise EdgeKDError(problem)
        self.rt = import_cudart()

    def check(self, result: tuple, call: str):
        """The call's value(s), or EdgeKDError naming the call and CUDA's message."""
        error, *values = result
        if error != self.rt.cudaError_t.cudaSuccess:
            message = self.rt.cudaGetErrorString(error)[1].decode()
            raise EdgeKDError(f"CUDA error in {call}: {message}")
        if not values:
            return None
        return values[0] if len(values) == 1 else tuple(values)

    def identity(self) -> tuple[str, str]:
        """(GPU name, compute capability 'major.minor') of GPU 0."""
        properties = self.check(self.rt.cudaGetDeviceProperties(0), "cudaGetDeviceProperties")
        return properties.name.decode().rstrip("\x00"), f"{properties.major}.{properties.minor}"

    def create_stream(self):
        return self.check(self.rt.cudaStreamCreate(), "cudaStreamCreate")

    def destroy_stream(self, stream) -> None:
        self.check(self.rt.cudaStreamDestroy(stream), "cudaStreamDestroy")

    def synchronize(self, stream) -> None:
        self.check(self.rt.cudaStreamSynchronize(stream), "cudaStreamSynchronize")

    def malloc(self, nbytes: int) -> int:
        return int(self.check(self.rt.cudaMalloc(max(nbytes, 1)), "cudaMalloc"))

    def free(self, pointer: int) -> None:
        self.check(self.rt.cudaFree(pointer), "cudaFree")

    def malloc_host(self, nbytes: int) -> int:
        """Page-locked host memory: the only kind cudaMemcpyAsync copies without a staging copy."""
        return int(self.check(self.rt.cudaMallocHost(max(nbytes, 1)), "cudaMallocHost"))

    def free_host(self, pointer: int) -> None:
        self.check(self.rt.cudaFreeHost(pointer), "cudaFreeHost")

    def copy_to_device(self, device: int, host: int, nbytes: int, stream) -> None:
        kind = self.rt.cudaMemcpyKind.cudaMemcpyHostToDevice
        self.check(self.rt.cudaMemcpyAsync(device, host, nbytes, kind, stream), "cudaMemcpyAsync (host to device)")

    def copy_to_host(self, host: int, device: int, nbytes: int, stream) -> None:
        kind = self.rt.cudaMemcpyKind.cudaMemcpyDeviceToHost
        self.check(self.rt.cudaMemcpyAsync(host, device, nbytes, kind, stream), "cudaMemcpyAsync (device to host)")

    def upload(self, device: int, array: np.ndarray, stream) -> None:
        """Copy a (pageable) numpy array to device memory and wait for the copy: `array` may be a temporary."""
        array = np.ascontiguousarray(array)
        self.copy_to_device(device, array.ctypes.data, array.nbytes, stream)
        self.synchronize(stream)

    def create_event(self):
        return self.check(self.rt.cudaEventCreate(), "cudaEventCreate")

    def destroy_event(self, event) -> None:
        self.check(self.rt.cudaEventDestroy(event), "cudaEventDestroy")

    def record(self, event, stream) -> None:
        self.check(self.rt.cudaEventRecord(event, stream), "cudaEventRecord")

    def elapsed_ms(self, start, end) -> float:
        """Milliseconds between two recorded events, after waiting for `end`."""
        self.check(self.rt.cudaEventSynchronize(end), "cudaEventSynchronize")
        return float(self.check(self.rt.cudaEventElapsedTime(start, end), "cudaEventElapsedTime"))

    def memory_used_mib(self) -> tuple[float, float]:
        """(used, total) MiB of the whole device (all processes), from cudaMemGetInfo."""
        free, total = self.check(self.rt.cudaMemGetInfo(), "cudaMemGetInfo")
        return (total - free) / 2**20, total / 2**20


def pinned_array(pointer: int, shape: tuple[int, ...], dtype: np.dtype) -> np.ndarray:
    """A numpy view of `pointer` (host memory owned by the caller) with the given shape and dtype."""
    dtype = np.dtype(dtype)
    nbytes = int(np.prod(shape)) * dtype.itemsize
    buffer = (ctypes.c_byte * max(nbytes, 1)).from_address(pointer)
    return np.frombuffer(buffer, dtype=dtype, count=int(np.prod(shape))).reshape(shape)


class PinnedBuffer:
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


@dataclass
class CudaEventClock:
    """CUDA events recorded on `stream` around the call: the device time from the first to the last work the
    call enqueued there (host launch gaps included when the device idles waiting for them)."""

    cuda: CudaRuntime
    stream: object
    name: str = "cuda-event"

    def __post_init__(self) -> None:
        self._start = self.cuda.create_event()
        self._end = self.cuda.create_event()

    def __call__(self, fn) -> float:
        self.cuda.record(self._start, self.stream)
        fn()
        self.cuda.record(self._end, self.stream)
        return self.cuda.elapsed_ms(self._start, self._end) / 1000.0

    def close(self) -> None:
        self.cuda.destroy_event(self._start)
        self.cuda.destroy_event(self._end)


def device_memory_used_mib() -> float | None:
    """Whole-device memory in use (MiB) where cuda-python and a GPU are present, else None."""
    try:
        return CudaRuntime().memory_used_mib()[0]
    except EdgeKDError:
        return None
