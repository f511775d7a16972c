"""ONNX export of every family's tiny student: checker, ONNX Runtime vs PyTorch, NMS modes, batch handling."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import onnx
import pytest
import torch

from edgekd.data.loader import load_dataset
from edgekd.errors import EdgeKDError
from edgekd.export.nms import append_efficient_nms, append_onnx_nms
from edgekd.export.onnx import check_export_options, export_raw_graph
from edgekd.export.parity import RawDifference, compare_raw
from edgekd.export.quantize import HEAD_OUTPUT_LAYERS, float_nodes
from edgekd.models.detector import DetectorConfig
from edgekd.models.zoo import build_detector
from edgekd.runtime.metadata import BatchSpec, ExportMetadata
from edgekd.runtime.onnx_runner import OnnxRunner
from edgekd.runtime.postprocess import PostprocessConfig, postprocess_padded, postprocess_raw
from edgekd.runtime.preprocess import load_images

CLASSES = ("Car", "Pedestrian", "Cyclist")
SIZE = (64, 160)
BATCHES = {
    "retinanet_mobilenet_v3_lite": BatchSpec(1, 2, 3),  # one-stage: dynamic batch
    "fcos_mobilenet_v3_lite": BatchSpec.static(2),
    "fasterrcnn_mobilenet_v3_lite": BatchSpec.static(2),
}
POST = PostprocessConfig(0.05, 0.5, 100, 1000)


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def tiny_detector(name: str):
    """A random-weight student whose scores spread above the 0.05 threshold (RetinaNet's prior bias keeps all
    scores near 0.01 otherwise)."""
    torch.manual_seed(0)
    detector = build_detector(DetectorConfig(name, CLASSES, SIZE)).eval()
    if detector.family == "retinanet":
        logits = detector.head_module.classification_head.cls_logits
        torch.nn.init.normal_(logits.weight, std=0.01)
        torch.nn.init.constant_(logits.bias, -1.0)
    return detector


@pytest.fixture(scope="module", params=list(BATCHES))
def exported(request, tiny_kitti):
    name = request.param
    detector = tiny_detector(name)
    batch = BATCHES[name]
    raw, count = export_raw_graph(detector, batch, 17)
    images, scales = load_images(load_dataset(tiny_kitti, "val", classes=CLASSES).records[:4], SIZE)
    return SimpleNamespace(
        name=name, detector=detector, batch=batch, raw=raw, count=count, images=images, scales=scales
    )


def _meta(exported, nms: str = "none") -> ExportMetadata:
    """The metadata of the exported graph (with `nms`'s outputs), as the runner needs it."""
    config = exported.detector.config
    return ExportMetadata(
        config.name, exported.detector.family, list(CLASSES), list(SIZE), list(config.mean), list(config.std),
        POST.score_thresh, POST.nms_thresh, POST.max_detections, POST.topk_candidates, nms, exported.batch,
        exported.count, 17,
    )  # fmt: skip


def _torch_raw(detector, images: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    with torch.no_grad():
        boxes, scores = detector.raw(torch.from_numpy(images))
    return boxes.numpy(), scores.numpy()


def test_graphs_pass_the_checker_with_static_candidate_counts(exported):
    for model in (
        exported.raw,
        append_onnx_nms(exported.raw, exported.count, 3, POST),
        append_efficient_nms(exported.raw, POST),
    ):
        onnx.checker.check_model(model)
    boxes, scores = exported.raw.graph.output
    assert boxes.type.tensor_type.shape.dim[1].dim_value == exported.count
    assert scores.type.tensor_type.shape.dim[2].dim_value == 3


def test_default_int8_float_layers_exist_in_every_family(exported):
    kept = float_nodes(exported.raw, HEAD_OUTPUT_LAYERS[exported.detector.family])
    assert len(kept) >= 2 and all(any(p in name for p in HEAD_OUTPUT_LAYERS[exported.detector.family]) for name in kept)


def test_onnxruntime_matches_pytorch_on_real_images(exported):
    runner = OnnxRunner(exported.raw.SerializeToString(), _meta(exported), threads=1)
    stats = RawDifference()
    for start in (0, 2):
        images = exported.images[start : start + 2]
        reference = _torch_raw(exported.detector, images)
        outputs = runner.infer(images)
        if exported.detector.family != "fasterrcnn":  # rows are fixed anchors/points: compare them directly
            assert np.abs(outputs["boxes"] - reference[0]).max() < 1e-3
            assert np.abs(outputs["scores"] - reference[1]).max() < 1e-3
        compare_raw(
            reference, (outputs["boxes"], outputs["scores"]), stats, 3 if "fasterrcnn" in exported.name else None
        )
    assert stats.boxes_max < 1e-3 and stats.scores_max < 1e-3
    assert stats.unmatched <= 0.01 * max(stats.valid, 1)


def test_nms_modes_none_and_onnx_agree_with_pytorch(exported):
    images, scales = exported.images[:2], exported.scales[:2]
    raw_out = OnnxRunner(exported.raw.SerializeToString(), _meta(exported), threads=1).infer(images)
    host = postprocess_raw(raw_out["boxes"], raw_out["scores"], scales, POST)
    tail_model = append_onnx_nms(exported.raw, exported.count, 3, POST).SerializeToString()
    tail = OnnxRunner(tail_model, _meta(exported, "onnx"), threads=1).infer(images)
    in_graph = postprocess_padded(tail, scales)
    with torch.no_grad():
        boxes, scores = exported.detector.raw(torch.from_numpy(images))
        reference = exported.detector.postprocess(boxes, scores, torch.from_numpy(scales))
    for a, b, ref in zip(host, in_graph, reference):
        assert len(ref.scores) > 10  # the check means something: the images have detections
        for mine in (a, b):
            np.testing.assert_array_equal(mine.labels, ref.labels)
            np.testing.assert_allclose(mine.boxes, ref.boxes, atol=1e-3)
            np.testing.assert_allclose(mine.scores, ref.scores, atol=1e-5)


def test_batch_sizes(exported):
    runner = OnnxRunner(exported.raw.SerializeToString(), _meta(exported), threads=1)
    if exported.batch.dynamic:
        for size in (1, 3):
            outputs = runner.infer(exported.images[:size])
            reference = _torch_raw(exported.detector, exported.images[:size])
            assert outputs["boxes"].shape == (size, exported.count, 4)
            assert np.abs(outputs["scores"] - reference[1]).max() < 1e-3
    else:
        with pytest.raises(Exception, match="images"):
            runner.infer(exported.images[:3])


def test_efficient_nms_node_carries_the_thresholds():
    graph = onnx.helper.make_graph(
        [onnx.helper.make_node("Identity", ["x"], ["boxes"]), onnx.helper.make_node("Identity", ["y"], ["scores"])],
        "g",
        [
            onnx.helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [1, 5, 4]),
            onnx.helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, [1, 5, 3]),
        ],
        [
            onnx.helper.make_tensor_value_info("boxes", onnx.TensorProto.FLOAT, [1, 5, 4]),
            onnx.helper.make_tensor_value_info("scores", onnx.TensorProto.FLOAT, [1, 5, 3]),
        ],
    )
    model = append_efficient_nms(onnx.helper.make_model(graph), PostprocessConfig(0.25, 0.45, 50, 1000))
    onnx.checker.check_model(model)
    node = model.graph.node[-1]
    assert (node.op_type, node.domain) == ("EfficientNMS_TRT", "TRT")
    attributes = {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}
    assert attributes["max_output_boxes"] == 50 and attributes["background_class"] == -1
    assert attributes["score_threshold"] == pytest.approx(0.25) and attributes["iou_threshold"] == pytest.approx(0.45)
    assert attributes["score_activation"] == 0 and attributes["box_coding"] == 0 and attributes["class_agnostic"] == 0
    assert [o.name for o in model.graph.output] == [
        "num_detections",
        "detection_boxes",
        "detection_scores",
        "detection_classes",
    ]
    assert model.graph.output[1].type.tensor_type.shape.dim[1].dim_value == 50


def test_unsupported_options_are_named():
    with pytest.raises(EdgeKDError, match="--dynamic-batch: fasterrcnn"):
        check_export_options("fasterrcnn", "none", BatchSpec(1, 2, 4), 17)
    with pytest.raises(EdgeKDError, match="--nms fast"):
        check_export_options("retinanet", "fast", BatchSpec.static(1), 17)
    with pytest.raises(EdgeKDError, match="--opset 11"):
        check_export_options("fcos", "onnx", BatchSpec.static(1), 11)


def test_compare_raw_matches_permuted_proposals():
    # Two proposals (K = 2 rows each) in swapped order, one coordinate off by 1e-4: matched, max diff 1e-4.
    boxes = np.arange(16, dtype=np.float32).reshape(1, 4, 4)
    scores = np.array([[[0.7, 0], [0, 0.2], [0.4, 0], [0, 0.5]]], np.float32)
    swapped_boxes = boxes[:, [2, 3, 0, 1]].copy()
    swapped_boxes[0, 0, 0] += 1e-4
    stats = RawDifference()
    compare_raw((boxes, scores), (swapped_boxes, scores[:, [2, 3, 0, 1]]), stats, proposal_rows=2)
    assert stats.unmatched == 0 and stats.valid == 2
    assert stats.boxes_max == pytest.approx(1e-4, rel=1e-2) and stats.scores_max == 0
