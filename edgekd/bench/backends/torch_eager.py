"""PyTorch backend for .pt checkpoints: eager, or torch.compile with --compile; CUDA-event timing on GPU.

Imported only when a checkpoint is benchmarked: the .onnx/.engine paths never import torch.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from edgekd.bench.backends.base import BenchRunner, ModelInfo, run_name
from edgekd.bench.system import cpu_model
from edgekd.bench.timing import PerfCounterClock
from edgekd.data.records import Detections


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


class TorchRunner(BenchRunner):
    """A checkpoint's detector: `raw` (network + box decoding) is the compute, `postprocess` (torchvision NMS on
    the same device) the decode, as `edgekd eval` runs it."""

    backend = "torch"

    def __init__(self, path: Path, device: str = "auto", compile: bool = False, threads: int | None = None) -> None:
        import torch

        from edgekd.commands.options import resolve_device
        from edgekd.export.metadata import file_sha256
        from edgekd.models.checkpoint import load_detector
        from edgekd.models.complexity import count_parameters, gflops
        from edgekd.models.zoo import model_spec

        self.torch = torch
        if threads is not None:
            torch.set_num_threads(threads)
        self.threads = torch.get_num_threads()
        self.device_name = resolve_device(device)
        self.detector, payload = load_detector(path, self.device_name)
        config = self.detector.config
        role = "distilled student" if payload.get("recipe") else model_spec(config.name).role
        self.info = ModelInfo(
            kind="checkpoint",
            model=config.name,
            classes=list(config.classes),
            input_size=(int(config.input_size[0]), int(config.input_size[1])),
            precision="fp32",
            nms="none",
            run=run_name(path),
            source_sha256=file_sha256(path),
            params=count_parameters(self.detector),
            gflops=gflops(self.detector),
            extra={"role": role, "compiled": compile},
        )
        self.model = torch.compile(self.detector) if compile else self.detector
        self.gpu = self.device_name.startswith("cuda")
        self.clock = TorchEventClock(torch) if self.gpu else PerfCounterClock()
        self._sync = torch.cuda.synchronize if self.gpu else None

    @property
    def device(self) -> str:
        if self.gpu:
            return self.torch.cuda.get_device_name(self.device_name)
        return f"{cpu_model()} (threads={self.threads})"

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

    def infer(self, images: np.ndarray) -> tuple:
        with self.torch.inference_mode():
            outputs = self.model(self.torch.from_numpy(images).to(self.device_name))
        if self._sync is not None:
            self._sync()
        return outputs

    def decode(self, outputs: tuple, scales: np.ndarray) -> list[Detections]:
        with self.torch.inference_mode():
            boxes, scores = outputs
            return self.detector.postprocess(boxes, scores, self.torch.from_numpy(scales).to(self.device_name))

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
