"""GPU benchmark paths. Real-GPU tests skip cleanly here; the TensorRT backend's buffer, copy and event logic runs
against stand-ins of cuda-python and TensorRT (host memory plays device memory) so it is exercised everywhere."""

from __future__ import annotations

import ctypes
import importlib.util
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from edgekd.bench.latency import BenchOptions, run_bench
from edgekd.bench.schema import validate_bench_payload
from edgekd.runtime import cuda, open_runner, tensorrt_runner
from edgekd.runtime.cuda import pinned_array
from edgekd.runtime.metadata import BatchSpec, ExportMetadata, write_metadata

CLASSES = ["Car", "Pedestrian", "Cyclist"]
SIZE = (8, 16)
CANDIDATES = 6


def _torch_cuda() -> bool:
    try:
        import torch
    except ImportError:
        return False
    return torch.cuda.is_available()


def _ort_cuda() -> bool:
    import onnxruntime

    return "CUDAExecutionProvider" in onnxruntime.get_available_providers()


@pytest.mark.skipif(not _torch_cuda(), reason="no CUDA GPU visible to torch")
def test_torch_cuda_event_clock_times_device_work():
    import torch

    from edgekd.runtime.torch_runner import TorchEventClock

    a = torch.randn(512, 512, device="cuda")
    seconds = TorchEventClock(torch)(lambda: a @ a)
    assert seconds > 0


@pytest.mark.skipif(not _ort_cuda(), reason="onnxruntime has no CUDAExecutionProvider (CPU-only build)")
def test_ort_cuda_backend_times_copies_apart(tmp_path):
    from test_bench_latency import tiny_detector_onnx

    model = tiny_detector_onnx(tmp_path / "student" / "model.onnx", BatchSpec(1, 1, 4))
    record = run_bench([model], BenchOptions(backend="ort-cuda", batches=(2,), warmup=1, iters=3)).to_dict()["records"][
        0
    ]
    assert {"compute", "host_to_device", "device_to_host", "end_to_end"} == set(record["phases"])


@pytest.mark.skipif(
    importlib.util.find_spec("tensorrt") is None, reason="TensorRT not installed (an engine needs TensorRT + a GPU)"
)
def test_real_tensorrt_is_importable_with_its_runtime():
    trt = tensorrt_runner.import_tensorrt()
    assert hasattr(trt, "Runtime")


class FakeCudart:
    """cuda-python's runtime API shape: every call returns (error, *values); host memory plays device memory."""

    cudaError_t = SimpleNamespace(cudaSuccess=0)
    cudaMemcpyKind = SimpleNamespace(cudaMemcpyHostToDevice=1, cudaMemcpyDeviceToHost=2)

    def __init__(self) -> None:
        self.blocks: dict[int, ctypes.Array] = {}
        self.copies: list[tuple[int, int]] = []  # (kind, bytes)
        self.recorded: dict[int, float] = {}
        self.freed: list[int] = []
        self.events = 0
        self.streams: list[str] = []  # "created" / "destroyed", in order

    def _alloc(self, nbytes: int):
        block = (ctypes.c_byte * nbytes)()
        self.blocks[ctypes.addressof(block)] = block
        return 0, ctypes.addressof(block)

    def cudaGetDeviceCount(self):  # noqa: N802
        return 0, 1

    def cudaGetErrorString(self, error):  # noqa: N802
        return 0, b"fake error"

    def cudaMalloc(self, nbytes):  # noqa: N802
        return self._alloc(nbytes)

    def cudaMallocHost(self, nbytes):  # noqa: N802
        return self._alloc(nbytes)

    def cudaFree(self, pointer):  # noqa: N802
        self.freed.append(pointer)
        return (0,)

    cudaFreeHost = cudaFree  # noqa: N815

    def cudaMemcpyAsync(self, dst, src, nbytes, kind, stream):  # noqa: N802
        ctypes.memmove(dst, src, nbytes)
        self.copies.append((kind, nbytes))
        return (0,)

    def cudaGetDeviceProperties(self, device):  # noqa: N802
        return 0, SimpleNamespace(name=b"Fake GPU\x00", major=8, minor=7)

    def cudaStreamCreate(self):  # noqa: N802
        self.streams.append("created")
        return 0, 7

    def cudaStreamSynchronize(self, stream):  # noqa: N802
        return (0,)

    def cudaStreamDestroy(self, stream):  # noqa: N802
        self.streams.append("destroyed")
        return (0,)

    def cudaEventCreate(self):  # noqa: N802
        self.events += 1
        return 0, self.events

    def cudaEventRecord(self, event, stream):  # noqa: N802
        self.recorded[event] = len(self.copies) * 0.5  # a deterministic "device time" in ms
        return (0,)

    def cudaEventSynchronize(self, event):  # noqa: N802
        return (0,)

    def cudaEventElapsedTime(self, start, end):  # noqa: N802
        return 0, self.recorded[end] - self.recorded[start] + 0.25

    def cudaEventDestroy(self, event):  # noqa: N802
        return (0,)

    def cudaMemGetInfo(self):  # noqa: N802
        return 0, 6 * 2**30, 8 * 2**30


class FakeContext:
    """Runs a 'network' on the bound device buffers: scores = image mean / 255, boxes = fixed per candidate."""

    def __init__(self) -> None:
        self.addresses: dict[str, int] = {}
        self.shape: tuple[int, ...] | None = None

    def set_input_shape(self, name, shape):
        self.shape = tuple(shape)
        return 1 <= shape[0] <= 4

    def get_tensor_shape(self, name):
        batch = self.shape[0]
        return {"images": self.shape, "boxes": (batch, CANDIDATES, 4), "scores": (batch, CANDIDATES, 3)}[name]

    def set_tensor_address(self, name, address):
        self.addresses[name] = address

    def execute_async_v3(self, stream):
        assert isinstance(stream, int)
        images = pinned_array(self.addresses["images"], self.shape, np.float32)
        boxes = pinned_array(self.addresses["boxes"], self.get_tensor_shape("boxes"), np.float32)
        scores = pinned_array(self.addresses["scores"], self.get_tensor_shape("scores"), np.float32)
        level = images.reshape(len(images), -1).mean(axis=1) / 255
        boxes[...] = np.arange(CANDIDATES, dtype=np.float32)[None, :, None] * 4 + np.array([0, 0, 3, 3], np.float32)
        scores[...] = level[:, None, None]
        return True


class FakeEngine:
    """A deserialized dynamic-batch engine (-1) with the metadata's input size, candidates and classes."""

    num_io_tensors = 3
    device_memory_size_v2 = 3 * 2**20

    def get_tensor_name(self, index):
        return ("images", "boxes", "scores")[index]

    def get_tensor_mode(self, name):
        return "input" if name == "images" else "output"

    def get_tensor_shape(self, name):
        return {"images": [-1, 3, *SIZE], "boxes": [-1, CANDIDATES, 4], "scores": [-1, CANDIDATES, len(CLASSES)]}[name]

    def get_tensor_dtype(self, name):
        return "float32"

    def create_execution_context(self):
        return FakeContext()


class FakeLogger:
    WARNING = 2

    def __init__(self, level) -> None:
        self.level = level


FAKE_TENSORRT = SimpleNamespace(
    __version__="10.0",
    Logger=FakeLogger,
    init_libnvinfer_plugins=lambda logger, namespace: True,
    Runtime=lambda logger: SimpleNamespace(deserialize_cuda_engine=lambda data: FakeEngine()),
    TensorIOMode=SimpleNamespace(INPUT="input"),
    nptype=lambda dtype: np.float32,
)


@pytest.fixture
def fake_gpu(monkeypatch, tmp_path) -> tuple[Path, FakeCudart]:
    cudart = FakeCudart()
    monkeypatch.setattr(cuda, "import_cudart", lambda: cudart)
    monkeypatch.setattr(tensorrt_runner, "import_tensorrt", lambda: FAKE_TENSORRT)
    engine = tmp_path / "student" / "model_fp16.engine"
    engine.parent.mkdir(parents=True)
    engine.write_bytes(b"serialized engine")
    meta = ExportMetadata(
        model="tiny", family="retinanet", classes=CLASSES, input_size=list(SIZE), mean=[0.5] * 3, std=[0.25] * 3,
        score_thresh=0.05, nms_thresh=0.5, max_detections=100, topk_candidates=1000, nms="none",
        batch=BatchSpec(1, 2, 4), num_candidates=CANDIDATES, opset=17, precision="fp16",
        tensorrt={"version": "10.0", "gpu": "Fake GPU", "compute_capability": "8.7"},
    )  # fmt: skip
    write_metadata(engine, meta)
    return engine, cudart


def test_engine_runner_moves_data_through_pinned_and_device_buffers(fake_gpu):
    engine, cudart = fake_gpu
    runner = open_runner(engine)
    runner.prepare(2)
    images = np.stack([np.full((3, *SIZE), 51.0, np.float32), np.full((3, *SIZE), 204.0, np.float32)])
    outputs = runner.infer(images)
    np.testing.assert_allclose(outputs["scores"][:, 0, 0], [0.2, 0.8], rtol=1e-6)  # came back through D2H
    assert outputs["boxes"].shape == (2, CANDIDATES, 4)
    detections = runner.decode(outputs, np.ones((2, 2), np.float32))
    assert [len(d.scores) for d in detections] == [CANDIDATES * 3] * 2  # disjoint boxes, 3 classes: none suppressed
    kinds = [kind for kind, _ in cudart.copies]
    assert kinds[-3:] == [1, 2, 2]  # one input copy, then both outputs
    assert cudart.copies[-3][1] == images.nbytes
    runner.close()
    assert len(cudart.freed) == 6  # 3 tensors x (device + pinned)
    assert cudart.streams == ["created", "destroyed"]  # one stream, owned and freed by the runner
    runner.close()
    assert len(cudart.freed) == 6 and cudart.streams == ["created", "destroyed"]


def test_engine_bench_record_uses_cuda_events_and_device_memory(fake_gpu):
    engine, cudart = fake_gpu
    payload = run_bench([engine], BenchOptions(batches=(1, 8), warmup=1, iters=3)).to_dict()
    validate_bench_payload(payload, "payload")
    timed, skipped = payload["records"]
    assert skipped["skipped"] == "accepts batches 1 to 4"
    assert (timed["backend"], timed["timer"], timed["precision"], timed["device"]) == (
        "trt",
        "cuda-event",
        "fp16",
        "Fake GPU",
    )
    assert set(timed["phases"]) == {"compute", "host_to_device", "device_to_host", "end_to_end"}
    # the fake device clock: 0.25 ms per call + 0.5 ms per copy enqueued between the two events
    assert timed["phases"]["compute"]["p50_ms"] == pytest.approx(0.25)
    assert timed["phases"]["host_to_device"]["p50_ms"] == pytest.approx(0.75)
    assert timed["phases"]["device_to_host"]["p50_ms"] == pytest.approx(1.25)  # two outputs
    memory = timed["memory"]
    assert memory["engine_activation_mib"] == pytest.approx(3.0)
    assert memory["device_used_mib"] == pytest.approx(2048.0)
    assert memory["io_buffers_mib"] == pytest.approx(4 * (3 * 8 * 16 + CANDIDATES * 4 + CANDIDATES * 3) / 2**20)
