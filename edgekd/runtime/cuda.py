"""Device memory, copies and a stream for TensorRT, without torch: cuda-python (`cuda.bindings.runtime`, or the
older `cuda.cudart`), else pycuda. Imported lazily; what is missing is named in the error."""

from __future__ import annotations

import numpy as np

from edgekd.errors import EdgeKDError

INSTALL_HINT = "install cuda-python (`pip install cuda-python`) or pycuda matching the CUDA driver"


def _cuda_python():
    try:
        from cuda.bindings import runtime
    except ImportError:
        try:
            from cuda import cudart as runtime
        except ImportError:
            return None
    return runtime


def _pycuda():
    try:
        import pycuda.driver as driver
    except ImportError:
        return None
    return driver


def cuda_problem() -> str | None:
    """Why no CUDA GPU can be used from Python here, or None when one can."""
    runtime = _cuda_python()
    if runtime is not None:
        try:
            error, count = runtime.cudaGetDeviceCount()
        except Exception as failure:  # cuda-python raises when it cannot load the CUDA runtime library
            return f"no usable CUDA runtime ({failure})"
        if error != runtime.cudaError_t.cudaSuccess:
            return f"no usable CUDA GPU (cudaGetDeviceCount: {runtime.cudaGetErrorString(error)[1].decode()})"
        return None if count > 0 else "no CUDA GPU visible (cudaGetDeviceCount returned 0)"
    driver = _pycuda()
    if driver is not None:
        try:
            driver.init()
            count = driver.Device.count()
        except driver.Error as error:
            return f"no usable CUDA GPU (pycuda: {error})"
        return None if count > 0 else "no CUDA GPU visible (pycuda found 0 devices)"
    return f"no CUDA Python bindings: {INSTALL_HINT}"


class CudaDevice:
    """GPU 0: allocations, host<->device copies on one stream, and the device's identity."""

    def __init__(self) -> None:
        problem = cuda_problem()
        if problem is not None:
            raise EdgeKDError(problem)
        self._runtime = _cuda_python()
        self._allocations: dict[int, object] = {}
        if self._runtime is not None:
            self._stream = self._check(self._runtime.cudaStreamCreate())
            properties = self._check(self._runtime.cudaGetDeviceProperties(0))
            self.name = properties.name.decode().rstrip("\x00")
            self.compute_capability = f"{properties.major}.{properties.minor}"
        else:
            import pycuda.autoinit  # noqa: F401  (creates and later pops the CUDA context)

            driver = _pycuda()
            self._driver = driver
            self._stream = driver.Stream()
            device = driver.Device(0)
            self.name = device.name()
            self.compute_capability = "{}.{}".format(*device.compute_capability())

    def _check(self, result: tuple):
        error, *values = result
        if error != self._runtime.cudaError_t.cudaSuccess:
            raise EdgeKDError(f"CUDA error: {self._runtime.cudaGetErrorString(error)[1].decode()}")
        return values[0] if len(values) == 1 else None

    @property
    def stream_handle(self) -> int:
        return int(self._stream) if self._runtime is not None else self._stream.handle

    def alloc(self, nbytes: int) -> int:
        if self._runtime is not None:
            pointer = int(self._check(self._runtime.cudaMalloc(max(nbytes, 1))))
            self._allocations[pointer] = pointer
            return pointer
        allocation = self._driver.mem_alloc(max(nbytes, 1))
        self._allocations[int(allocation)] = allocation
        return int(allocation)

    def free(self, pointer: int) -> None:
        allocation = self._allocations.pop(pointer)
        if self._runtime is not None:
            self._check(self._runtime.cudaFree(allocation))
        else:
            allocation.free()

    def to_device(self, pointer: int, array: np.ndarray) -> None:
        array = np.ascontiguousarray(array)
        if self._runtime is not None:
            kind = self._runtime.cudaMemcpyKind.cudaMemcpyHostToDevice
            self._check(self._runtime.cudaMemcpyAsync(pointer, array.ctypes.data, array.nbytes, kind, self._stream))
        else:
            self._driver.memcpy_htod_async(pointer, array, self._stream)
        self.synchronize()  # `array` may be a temporary: finish the copy before it can be freed

    def to_host(self, array: np.ndarray, pointer: int) -> None:
        if self._runtime is not None:
            kind = self._runtime.cudaMemcpyKind.cudaMemcpyDeviceToHost
            self._check(self._runtime.cudaMemcpyAsync(array.ctypes.data, pointer, array.nbytes, kind, self._stream))
        else:
            self._driver.memcpy_dtoh_async(array, pointer, self._stream)

    def synchronize(self) -> None:
        if self._runtime is not None:
            self._check(self._runtime.cudaStreamSynchronize(self._stream))
        else:
            self._stream.synchronize()

    def close(self) -> None:
        for pointer in list(self._allocations):
            self.free(pointer)
