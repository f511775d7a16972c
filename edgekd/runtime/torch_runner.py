"""PyTorch runner: a .pt checkpoint's detector (or one in memory), eager or torch.compile; CUDA events on a GPU.

`infer` is `Detector.raw` (network + box decoding) on the runner's device, `decode` is `Detector.postprocess`
(torchvision NMS on the same device), as training evaluates. The only module of the runtime that imports torch,
and it does so when a runner is made: the .onnx / .engine paths never import it.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from edgekd.data.records import Detections
from edgekd.runtime.clock import PerfCounterClock
from edgekd.runtime.metadata import BatchSpec, file_sha256
from edgekd.runtime.runner import ModelInfo, Outputs, Runner, run_name


class TorchEventClock:
    """torch.cuda.Event pair recorded on the current stream around the call (device time, in seconds)."""

    name = "cuda-event"

    def __init__(self, torch) -> None:
        self._start = torch.cuda.Event(enable_timing=True)
        self._end = torch.cuda.Event(enable_timing=True)

    def __call__(self, fn) -> float:
        self._start.record()
        fn()
        self._end.record()
        self._end.synchronize()
        return self._start.elapsed_time(self._end) / 1000.0


def _checkpoint_info(config: object, **fields: object) -> ModelInfo:
    """What a runner reports about a PyTorch detector of `config` (FP32, NMS in PyTorch), plus `fields`."""
    return ModelInfo(
        kind="checkpoint",
        model=config.name,
        classes=list(config.classes),
        input_size=(int(config.input_size[0]), int(config.input_size[1])),
        precision="fp32",
        nms="none",
        **fields,
    )


class TorchRunner(Runner):
    """A detector on one torch device."""

    backend = "torch"

    def __init__(
        self, detector: object, device: str, info: ModelInfo, compile: bool = False, name: str = "the detector"
    ) -> None:
        """`detector` already on `device` (see `open` for a checkpoint file)."""
        import torch

        self.torch, self.detector, self.device_name, self.info, self.name = torch, detector, device, info, name
        self.threads = torch.get_num_threads()
        self.model = torch.compile(detector) if compile else detector
        self.gpu = device.startswith("cuda")
        self.gpu_name = torch.cuda.get_device_name(device) if self.gpu else None
        self.clock = TorchEventClock(torch) if self.gpu else PerfCounterClock()

    @classmethod
    def open(cls, path: Path, device: str = "auto", compile: bool = False, threads: int | None = None) -> TorchRunner:
        """A checkpoint's detector on `device` (cpu, cuda, cuda:N or auto)."""
        import torch

        from edgekd.models.checkpoint import load_detector
        from edgekd.models.complexity import count_parameters, gflops
        from edgekd.models.zoo import model_spec
        from edgekd.options import resolve_device

        if threads is not None:
            torch.set_num_threads(threads)
        device = resolve_device(device)
        detector, payload = load_detector(path, device)
        config = detector.config
        role = "distilled student" if payload.get("recipe") else model_spec(config.name).role
        info = _checkpoint_info(
            config,
            run=run_name(path),
            source_sha256=file_sha256(path),
            params=count_parameters(detector),
            gflops=gflops(detector),
            extra={"role": role, "compiled": compile},
        )
        return cls(detector, device, info, compile, name=path.name)

    @classmethod
    def in_memory(cls, detector: object, batch: BatchSpec) -> TorchRunner:
        """A detector in memory on the CPU, batched as the model exported from it (`batch`)."""
        info = _checkpoint_info(detector.config, run="", batch_range=(batch.min, batch.max), default_batch=batch.opt)
        return cls(detector, "cpu", info)

    def infer(self, images: np.ndarray) -> dict[str, object]:
        with self.torch.inference_mode():
            boxes, scores = self.model(self.torch.from_numpy(np.ascontiguousarray(images)).to(self.device_name))
        if self.gpu:
            self.torch.cuda.synchronize(self.device_name)
        return {"boxes": boxes, "scores": scores}

    def raw_outputs(self, outputs: Outputs) -> dict[str, np.ndarray]:
        return {name: tensor.cpu().numpy() for name, tensor in outputs.items()}

    def decode(self, outputs: Outputs, scales: np.ndarray | None) -> list[Detections]:
        device_scales = None if scales is None else self.torch.from_numpy(scales).to(self.device_name)
        with self.torch.inference_mode():
            return self.detector.postprocess(outputs["boxes"], outputs["scores"], device_scales)

    def prepare(self, batch: int) -> None:
        torch = self.torch
        height, width = self.info.input_size
        generator = torch.Generator().manual_seed(0)
        self._host = torch.rand(batch, 3, height, width, generator=generator) * 255
        if self.gpu:
            self._host = self._host.pin_memory()
        self._input = self._host.to(self.device_name)
        self._host_outputs: list | None = None  # allocated at the first copy, once the output shapes are known

    def compute(self) -> None:
        with self.torch.inference_mode():
            self._outputs = self.model(self._input)

    def host_to_device(self) -> None:
        self._input.copy_(self._host, non_blocking=True)

    def device_to_host(self) -> None:
        if self._host_outputs is None:
            empty = self.torch.empty_like
            self._host_outputs = [empty(t, device="cpu", pin_memory=True) for t in self._outputs]
        for host, device in zip(self._host_outputs, self._outputs):
            host.copy_(device, non_blocking=True)

    def reset_device_peak(self) -> None:
        if self.gpu:
            self.torch.cuda.reset_peak_memory_stats(self.device_name)

    def device_memory(self) -> dict:
        if not self.gpu:
            return {}
        cuda = self.torch.cuda
        return {
            "device_peak_mib": cuda.max_memory_allocated(self.device_name) / 2**20,
            "device_reserved_mib": cuda.max_memory_reserved(self.device_name) / 2**20,
            "device_method": "torch.cuda.max_memory_allocated / max_memory_reserved since the batch started",
        }
