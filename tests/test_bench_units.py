"""Bench building blocks: frames, ONNX complexity, memory, backend choice, option parsing, JSON schema."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from edgekd.bench.frames import dataset_frames, preprocess_frames, random_frames
from edgekd.bench.latency import BenchOptions, parse_batches
from edgekd.bench.memory import PeakRss, current_rss_mib
from edgekd.bench.onnx_complexity import onnx_complexity
from edgekd.bench.schema import BENCH_FORMAT, validate_bench_payload
from edgekd.data.loader import load_dataset
from edgekd.errors import EdgeKDError
from edgekd.runtime import BACKENDS, ModelInfo, Runner, resolve_backend
from edgekd.runtime.preprocess import load_images


def test_frames_preprocess_exactly_like_the_file_loader(tiny_kitti):
    dataset = load_dataset(tiny_kitti, "val")
    frames = dataset_frames(dataset, 3)
    images, scales = preprocess_frames(frames, (64, 160))
    reference_images, reference_scales = load_images(dataset.records[:3], (64, 160))
    np.testing.assert_array_equal(images, reference_images)
    np.testing.assert_array_equal(scales, reference_scales)


def test_dataset_frames_cycle_and_noise_frames_have_the_asked_size(tiny_kitti):
    dataset = load_dataset(tiny_kitti, "val")
    frames = dataset_frames(dataset, len(dataset) + 1)
    np.testing.assert_array_equal(frames[-1], frames[0])
    noise = random_frames(2, (10, 20))
    assert [f.shape for f in noise] == [(10, 20, 3)] * 2 and noise[0].dtype == np.uint8
    _, scales = preprocess_frames(noise, (5, 40))
    np.testing.assert_allclose(scales, [[2.0, 0.5], [2.0, 0.5]])  # (sx, sy) = (40/20, 5/10)


def _conv_gemm_model(path, batch: int | str) -> None:
    """Conv 3->8 (3x3, pad 1) on 16x16, flatten, Gemm 2048->5; plus an anchors-like constant."""
    rng = np.random.default_rng(0)
    initializers = [
        numpy_helper.from_array(rng.normal(size=(8, 3, 3, 3)).astype(np.float32), "W"),
        numpy_helper.from_array(np.zeros(8, np.float32), "B"),
        numpy_helper.from_array(rng.normal(size=(2048, 5)).astype(np.float32), "G"),
        numpy_helper.from_array(np.zeros(5, np.float32), "GB"),
        numpy_helper.from_array(np.zeros((100, 4), np.float32), "anchors"),
    ]
    nodes = [
        helper.make_node("Conv", ["images", "W", "B"], ["c"], pads=[1, 1, 1, 1]),
        helper.make_node("Flatten", ["c"], ["f"]),
        helper.make_node("Gemm", ["f", "G", "GB"], ["g"]),
        helper.make_node("Identity", ["anchors"], ["anchors_out"]),
    ]
    graph = helper.make_graph(
        nodes,
        "g",
        [helper.make_tensor_value_info("images", TensorProto.FLOAT, [batch, 3, 16, 16])],
        [
            helper.make_tensor_value_info("g", TensorProto.FLOAT, [batch, 5]),
            helper.make_tensor_value_info("anchors_out", TensorProto.FLOAT, [100, 4]),
        ],
        initializers,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, str(path))


@pytest.mark.parametrize("batch", ["batch", 3])
def test_onnx_complexity_by_hand(tmp_path, batch):
    path = tmp_path / "m.onnx"
    _conv_gemm_model(path, batch)
    params, gflops = onnx_complexity(path)
    assert params == 8 * 3 * 3 * 3 + 8 + 2048 * 5 + 5  # anchors are not parameters
    conv = 2 * (8 * 16 * 16) * (3 * 3 * 3)  # 2 FLOPs per multiply-add, per output element
    gemm = 2 * 5 * 2048
    assert gflops == pytest.approx((conv + gemm) / 1e9)  # per image, also for a static batch of 3


def test_peak_rss_sees_an_allocation():
    peak = PeakRss()
    peak.start()
    block = np.ones(40 * 2**20 // 8)  # 40 MiB, touched
    measured = peak.to_dict()
    del block
    assert measured["peak_rss_mib"] >= measured["baseline_rss_mib"] + 35
    assert current_rss_mib() is not None and "VmHWM" in measured["rss_method"]


def test_backend_registry_and_resolution(tmp_path):
    assert set(BACKENDS) == {"torch", "ort-cpu", "ort-cuda", "ort-trt", "trt"}
    onnx_path = tmp_path / "m.onnx"
    assert resolve_backend(tmp_path / "best.pt", "auto") == "torch"
    assert resolve_backend(tmp_path / "m.engine", "auto") == "trt"
    assert resolve_backend(onnx_path, "auto") in ("ort-cpu", "ort-cuda")
    assert resolve_backend(onnx_path, "ort-trt") == "ort-trt"
    with pytest.raises(EdgeKDError, match="--backend tflite: expected one of auto, torch"):
        resolve_backend(onnx_path, "tflite")
    with pytest.raises(EdgeKDError, match=r"--backend torch cannot run m.onnx: \.onnx files run on ort-cpu"):
        resolve_backend(onnx_path, "torch")
    with pytest.raises(EdgeKDError, match="expected a checkpoint"):
        resolve_backend(tmp_path / "m.tflite", "auto")


class _Fixed(Runner):
    backend = "fake"

    def __init__(self, batch_range):
        self.info = ModelInfo("onnx", "m", ["Car"], (32, 32), "fp32", "none", "run", batch_range=batch_range)

    name = "m.onnx"
    prepare = compute = infer = decode = None


def test_batch_problems_name_the_accepted_range():
    assert _Fixed(None).batch_problem(64) is None
    assert _Fixed((1, 4)).batch_problem(4) is None
    assert "accepts batches 1 to 4" in _Fixed((1, 4)).batch_problem(8)
    assert "static batch of 2" in _Fixed((2, 2)).batch_problem(1)


def test_one_batching_rule_pads_a_static_batch_and_names_the_option():
    static, dynamic = _Fixed((2, 2)), _Fixed((1, 4))
    images, scales = static.pad(np.full((1, 3, 4, 4), 7.0, np.float32), np.full((1, 2), 0.5, np.float32))
    assert images.shape == (2, 3, 4, 4) and images[0].min() == 7.0 and images[1].max() == 0.0
    assert scales.tolist() == [[0.5, 0.5], [1.0, 1.0]]
    assert dynamic.pad(images[:1], scales[:1])[0].shape == (1, 3, 4, 4)
    assert (static.choose_batch(None), dynamic.choose_batch(None), dynamic.choose_batch(3)) == (2, 1, 3)
    with pytest.raises(EdgeKDError, match="--batch 3: m.onnx was exported with a static batch of 2; use --batch 2"):
        static.choose_batch(3)
    with pytest.raises(EdgeKDError, match="--batch 8: m.onnx accepts batches 1 to 4"):
        dynamic.choose_batch(8)


def test_options_and_batch_parsing():
    assert parse_batches("1, 4,8,4") == (1, 4, 8)
    for bad in ("1,x", "0", "", "2;4"):
        with pytest.raises(EdgeKDError, match="--batch"):
            parse_batches(bad)
    with pytest.raises(EdgeKDError, match="--iters N or --seconds S"):
        BenchOptions(iters=10, seconds=1.0).check()
    with pytest.raises(EdgeKDError, match="--eval .* --data"):
        BenchOptions(evaluate=True).check()
    with pytest.raises(EdgeKDError, match="--iters 1"):
        BenchOptions(iters=1).check()
    assert BenchOptions().timed_iters is None and BenchOptions().timed_seconds == 3.0
    assert BenchOptions(iters=5).timed_seconds is None and BenchOptions(seconds=2.0).timed_seconds == 2.0


STATS = dict.fromkeys(
    ("min_ms", "mean_ms", "p50_ms", "p90_ms", "p99_ms", "max_ms", "std_ms", "cv", "throughput_ips", "iters"), 1.0
)


def test_schema_names_the_missing_field():
    record = {
        "artifact": "a.onnx",
        "artifact_path": "/a.onnx",
        "backend": "ort-cpu",
        "batch": 1,
        "device": "cpu",
        "timer": "perf_counter",
        "precision": "fp32",
        "run": "student",
        "phases": {"compute": dict(STATS)},
        "memory": {},
        "warnings": [],
    }
    payload = {"format": BENCH_FORMAT, "created": "t", "host": {}, "settings": {}, "records": [record]}
    validate_bench_payload(payload, "x.json")
    skipped = {"artifact": "a.onnx", "artifact_path": "/a.onnx", "backend": "ort-cpu", "batch": 8, "skipped": "why"}
    validate_bench_payload({**payload, "records": [skipped]}, "x.json")
    with pytest.raises(EdgeKDError, match="x.json: not an edgekd bench JSON"):
        validate_bench_payload({"coco": {}}, "x.json")
    del record["phases"]["compute"]["p99_ms"]
    with pytest.raises(EdgeKDError, match=r"x.json: records\[0\]: phases.compute: field 'p99_ms' missing"):
        validate_bench_payload(payload, "x.json")
    del record["run"]
    with pytest.raises(EdgeKDError, match=r"records\[0\]: field 'run' missing"):
        validate_bench_payload(payload, "x.json")
