"""ONNX Runtime runner: an exported .onnx model (or a serialized graph in memory) on ort-cpu, ort-cuda (CUDA
execution provider) or ort-trt (TensorRT execution provider); post-processing in numpy as its metadata says.

`infer` feeds host numpy and returns host numpy. The timing hooks use I/O binding on a GPU: the input is an OrtValue
already in device memory and the outputs stay on the device, so the copies are timed apart
(`OrtValue.update_inplace` host to device, `copy_outputs_to_cpu` device to host). `run_with_iobinding` returns once
the device work is done (ONNX Runtime synchronises its stream at the end of a run), so the host clock times it.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from edgekd.data.records import Detections
from edgekd.errors import EdgeKDError
from edgekd.runtime.clock import PerfCounterClock
from edgekd.runtime.cuda import device_memory_used_mib
from edgekd.runtime.metadata import ExportMetadata, check_model_io, metadata_path
from edgekd.runtime.postprocess import PostprocessConfig, check_labels, decode_outputs
from edgekd.runtime.runner import ModelInfo, Outputs, Runner, run_name

PROVIDERS: dict[str, tuple[str, ...]] = {
    "ort-cpu": ("CPUExecutionProvider",),
    "ort-cuda": ("CUDAExecutionProvider", "CPUExecutionProvider"),
    "ort-trt": ("TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider"),
}


def refuse_trt_plugin(meta: ExportMetadata, path: Path) -> None:
    """A model ending in the EfficientNMS_TRT plugin cannot run on ONNX Runtime: an error saying what can."""
    if meta.nms == "trt-plugin":
        raise EdgeKDError(
            f"{metadata_path(path)}: field 'nms' is 'trt-plugin': {path.name} ends in the EfficientNMS_TRT plugin, "
            "which only TensorRT runs; run its engine (`edgekd export CKPT --trt --nms trt-plugin` builds one, "
            "`--backend trt` benchmarks it) or export with --nms none|onnx for ONNX Runtime"
        )


class OnnxRunner(Runner):
    """An ONNX Runtime session with the backend's execution providers, returning outputs by name."""

    def __init__(
        self,
        model: Path | bytes,
        meta: ExportMetadata,
        backend: str = "ort-cpu",
        threads: int | None = None,
        name: str = "the in-memory model",
    ) -> None:
        """`model`: a .onnx file (its metadata checked against the graph) or a serialized graph described by
        `meta`; `threads` sets ONNX Runtime's intra-op threads."""
        import onnxruntime as ort

        in_memory = isinstance(model, bytes)
        self.backend, self.meta, self.threads = backend, meta, threads
        self.name = name if in_memory else model.name
        if not in_memory:
            refuse_trt_plugin(meta, model)
        providers = PROVIDERS[backend]
        missing = [p for p in providers if p not in ort.get_available_providers()]
        if missing:
            raise EdgeKDError(
                f"--backend {backend}: ONNX Runtime provider(s) {', '.join(missing)} not available; installed: "
                + ", ".join(ort.get_available_providers())
            )
        options = ort.SessionOptions()
        if threads is not None:
            options.intra_op_num_threads = threads
        options.log_severity_level = 3
        try:
            self.session = ort.InferenceSession(
                model if in_memory else str(model), sess_options=options, providers=list(providers)
            )
        except Exception as error:  # onnxruntime raises its own exception types for unloadable models
            if in_memory:
                raise EdgeKDError(f"ONNX Runtime cannot load the in-memory model: {error}") from None
            raise EdgeKDError(
                f"{model}: ONNX Runtime cannot load it (truncated or not an ONNX model?): {error}"
            ) from None
        self.input_name = self.session.get_inputs()[0].name
        self.output_names = [output.name for output in self.session.get_outputs()]
        if not in_memory:
            check_model_io(meta, model, *self.io_shapes())
        if providers[0] not in self.session.get_providers():
            raise EdgeKDError(
                f"--backend {backend}: ONNX Runtime could not start {providers[0]} for {self.name} and fell back to "
                f"{', '.join(self.session.get_providers())} (check the CUDA/cuDNN/TensorRT libraries it needs)"
            )
        self.path = None if in_memory else model
        self.info = ModelInfo.from_metadata(meta, "onnx", self.name if in_memory else run_name(model))
        self.gpu = backend != "ort-cpu"
        self.clock = PerfCounterClock()
        self.post = PostprocessConfig.from_metadata(meta)
        self._host: np.ndarray | None = None

    def io_shapes(self) -> tuple[dict[str, list], dict[str, list]]:
        """Input and output shapes by name (symbolic dimensions as names or None)."""
        return (
            {value.name: list(value.shape) for value in self.session.get_inputs()},
            {value.name: list(value.shape) for value in self.session.get_outputs()},
        )

    def infer(self, images: np.ndarray) -> dict[str, np.ndarray]:
        outputs = self.session.run(self.output_names, {self.input_name: np.ascontiguousarray(images, np.float32)})
        return dict(zip(self.output_names, outputs))

    def decode(self, outputs: Outputs, scales: np.ndarray | None) -> list[Detections]:
        """Detections in original pixels; a label beyond the metadata's class list is an error naming it."""
        detections = decode_outputs(outputs, scales, self.meta.nms, self.post)
        if self.path is not None:
            check_labels(detections, self.meta.classes, self.path)
        return detections

    def prepare(self, batch: int) -> None:
        import onnxruntime as ort

        height, width = self.info.input_size
        self._host = np.random.default_rng(0).uniform(0, 255, (batch, 3, height, width)).astype(np.float32)
        if not self.gpu:
            return
        self._device_input = ort.OrtValue.ortvalue_from_numpy(self._host, "cuda", 0)
        self._binding = self.session.io_binding()
        self._binding.bind_ortvalue_input(self.input_name, self._device_input)
        for name in self.output_names:
            self._binding.bind_output(name, "cuda", 0)

    def compute(self) -> None:
        if self.gpu:
            self.session.run_with_iobinding(self._binding)
        else:
            self.session.run(self.output_names, {self.input_name: self._host})

    def host_to_device(self) -> None:
        self._device_input.update_inplace(self._host)

    def device_to_host(self) -> None:
        self._binding.copy_outputs_to_cpu()

    def device_memory(self) -> dict:
        if not self.gpu:
            return {}
        used = device_memory_used_mib()
        if used is None:
            return {"device_method": "unavailable (install cuda-python to read cudaMemGetInfo)"}
        return {"device_used_mib": used, "device_method": "cudaMemGetInfo after the run (whole GPU, all processes)"}
