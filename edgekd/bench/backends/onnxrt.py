"""ONNX Runtime backends: ort-cpu, ort-cuda (CUDA execution provider) and ort-trt (TensorRT execution provider).

Compute-only on GPU uses I/O binding: the input is an OrtValue already in device memory and the outputs stay on
the device, so the copies are timed apart (`OrtValue.update_inplace` host to device, `copy_outputs_to_cpu` device
to host). `InferenceSession.run_with_iobinding` returns once the device work is done (ONNX Runtime synchronises
its stream at the end of a run), so the host clock times it exactly.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from edgekd.bench.backends.base import BenchRunner, ModelInfo, run_name
from edgekd.bench.cuda_runtime import device_memory_used_mib
from edgekd.bench.onnx_complexity import onnx_complexity
from edgekd.bench.system import cpu_model
from edgekd.bench.timing import PerfCounterClock
from edgekd.data.records import Detections
from edgekd.errors import EdgeKDError
from edgekd.export.metadata import ExportMetadata, check_model_io, metadata_path, read_metadata
from edgekd.runtime.postprocess import PostprocessConfig, decode_outputs

PROVIDERS: dict[str, tuple[str, ...]] = {
    "ort-cpu": ("CPUExecutionProvider",),
    "ort-cuda": ("CUDAExecutionProvider", "CPUExecutionProvider"),
    "ort-trt": ("TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider"),
}


def export_model_info(path: Path, meta: ExportMetadata, kind: str) -> ModelInfo:
    """ModelInfo from an exported model's metadata (shared by the ONNX Runtime and TensorRT backends)."""
    checkpoint = meta.source.get("checkpoint")
    return ModelInfo(
        kind=kind,
        model=meta.model,
        classes=list(meta.classes),
        input_size=(int(meta.input_size[0]), int(meta.input_size[1])),
        precision=meta.precision,
        nms=meta.nms,
        run=run_name(checkpoint) if checkpoint else run_name(path),
        source_sha256=meta.source.get("sha256"),
        batch_range=(meta.batch.min, meta.batch.max),
        default_batch=meta.batch.opt,
        extra={"export_batch": meta.batch.describe()},
    )


class OrtRunner(BenchRunner):
    """An exported .onnx model in an ONNX Runtime session with the backend's execution providers."""

    def __init__(self, path: Path, backend: str, threads: int | None = None) -> None:
        from edgekd.runtime.onnx_runner import OnnxRunner

        self.backend = backend
        self.meta = read_metadata(path)
        if self.meta.nms == "trt-plugin":
            raise EdgeKDError(
                f"{metadata_path(path)}: field 'nms' is 'trt-plugin': {path.name} ends in the EfficientNMS_TRT "
                "plugin, which ONNX Runtime cannot run; bench its engine "
                "(--backend trt) or export with --nms none|onnx"
            )
        self.runner = OnnxRunner(path, threads=threads, providers=PROVIDERS[backend])
        check_model_io(self.meta, path, *self.runner.io_shapes())
        self.info = export_model_info(path, self.meta, "onnx")
        self.info.params, self.info.gflops = onnx_complexity(path)
        self.threads = threads
        self.session = self.runner.session
        wanted = PROVIDERS[backend][0]
        if wanted not in self.session.get_providers():
            raise EdgeKDError(
                f"--backend {backend}: ONNX Runtime could not start {wanted} for {path} and fell back to "
                f"{', '.join(self.session.get_providers())} (check the CUDA/cuDNN/TensorRT libraries it needs)"
            )
        self.gpu = backend != "ort-cpu"
        self.clock = PerfCounterClock()
        self.post = PostprocessConfig.from_metadata(self.meta)
        self._host: np.ndarray | None = None

    @property
    def device(self) -> str:
        if self.gpu:
            from edgekd.bench.system import gpu_state

            state = gpu_state()
            return state["name"] if state else "CUDA GPU 0"
        return f"{cpu_model()} (threads={self.threads or 'default'})"

    def prepare(self, batch: int) -> None:
        import onnxruntime as ort

        height, width = self.info.input_size
        self._host = np.random.default_rng(0).uniform(0, 255, (batch, 3, height, width)).astype(np.float32)
        if not self.gpu:
            return
        self._device_input = ort.OrtValue.ortvalue_from_numpy(self._host, "cuda", 0)
        self._binding = self.session.io_binding()
        self._binding.bind_ortvalue_input(self.runner.input_name, self._device_input)
        for name in self.runner.output_names:
            self._binding.bind_output(name, "cuda", 0)

    def compute(self) -> None:
        if self.gpu:
            self.session.run_with_iobinding(self._binding)
        else:
            self.session.run(self.runner.output_names, {self.runner.input_name: self._host})

    def host_to_device(self) -> None:
        self._device_input.update_inplace(self._host)

    def device_to_host(self) -> None:
        self._binding.copy_outputs_to_cpu()

    def infer(self, images: np.ndarray) -> dict[str, np.ndarray]:
        return self.runner.run(images)

    def decode(self, outputs: dict[str, np.ndarray], scales: np.ndarray) -> list[Detections]:
        return decode_outputs(outputs, scales, self.meta.nms, self.post)

    def device_memory(self) -> dict:
        if not self.gpu:
            return {}
        used = device_memory_used_mib()
        if used is None:
            return {"device_method": "unavailable (install cuda-python to read cudaMemGetInfo)"}
        return {"device_used_mib": used, "device_method": "cudaMemGetInfo after the run (whole GPU, all processes)"}
