"""The numpy post-processing of the torch-free runtime against hand-worked examples and torchvision."""

from __future__ import annotations

import numpy as np
import pytest

from edgekd.runtime.postprocess import (
    PostprocessConfig,
    batched_nms,
    nms,
    postprocess_padded,
    postprocess_raw,
    select_candidates,
)


def test_nms_hand_example():
    boxes = np.array([[0, 0, 10, 10], [1, 1, 11, 11], [20, 20, 30, 30], [0, 0, 10, 9]], np.float32)
    scores = np.array([0.9, 0.8, 0.7, 0.95], np.float32)
    # Box 3 (score .95) goes first; box 0 overlaps it by IoU 90/100 = 0.9 -> dropped; box 1 overlaps box 3 by
    # 72 / (90 + 100 - 72) = 0.61 -> dropped; box 2 is disjoint -> kept.
    assert nms(boxes, scores, 0.5).tolist() == [3, 2]
    # Class-wise: box 0 alone in class 1 survives.
    assert batched_nms(boxes, scores, np.array([0, 0, 0, 1]), 0.5).tolist() == [3, 0, 2]


def test_nms_keeps_a_box_whose_iou_equals_the_threshold():
    boxes = np.array([[0, 0, 3, 1], [1, 0, 4, 1]], np.float32)  # intersection 2, union 4: IoU exactly 0.5
    assert nms(boxes, np.array([0.9, 0.8], np.float32), 0.5).tolist() == [0, 1]
    assert nms(boxes, np.array([0.9, 0.8], np.float32), 0.49).tolist() == [0]


def _random_boxes(rng: np.random.Generator, count: int, extent: float = 200.0) -> np.ndarray:
    corners = rng.uniform(0, extent, (count, 2))
    sizes = rng.uniform(5, 60, (count, 2))
    return np.concatenate([corners, corners + sizes], axis=1).astype(np.float32)


@pytest.mark.parametrize("count", [300, 1500])  # torchvision's coordinate trick (<= 4000 coords) and per-class loop
def test_batched_nms_matches_torchvision(count):
    torch = pytest.importorskip("torch")
    from torchvision.ops import batched_nms as tv_batched_nms

    rng = np.random.default_rng(count)
    boxes = _random_boxes(rng, count)
    scores = rng.permutation(count).astype(np.float32) / count  # distinct scores: the order is defined
    labels = rng.integers(0, 3, count)
    expected = tv_batched_nms(torch.from_numpy(boxes), torch.from_numpy(scores), torch.from_numpy(labels), 0.5)
    assert batched_nms(boxes, scores, labels, 0.5).tolist() == expected.tolist()
    assert batched_nms(boxes, scores, labels, 0.5, limit=20).tolist() == expected[:20].tolist()


def test_select_candidates_thresholds_then_keeps_topk():
    scores = np.array([[0.9, 0.01], [0.04, 0.3], [0.06, 0.5]], np.float32)  # (N=3, K=2)
    # flattened: [.9, .01, .04, .3, .06, .5]; above 0.05: indices 0, 3, 4, 5; the best 3: .9 (0), .5 (5), .3 (3)
    box_index, labels, kept = select_candidates(scores, 0.05, 3)
    assert box_index.tolist() == [0, 2, 1] and labels.tolist() == [0, 1, 1]
    assert kept.tolist() == pytest.approx([0.9, 0.5, 0.3])


def test_postprocess_raw_matches_detector_postprocess():
    torch = pytest.importorskip("torch")
    from edgekd.models.detector import DetectorConfig
    from edgekd.models.zoo import build_detector

    detector = build_detector(DetectorConfig("retinanet_mobilenet_v3_lite", ("a", "b", "c"), (64, 128)))
    rng = np.random.default_rng(7)
    boxes = np.stack([_random_boxes(rng, 600, 120.0) for _ in range(2)])  # (2, 600, 4)
    scores = rng.uniform(0, 1, (2, 600, 3)).astype(np.float32) ** 3  # 1800 per image: the top-1000 path runs
    scales = np.array([[0.5, 0.25], [2.0, 1.0]], np.float32)
    expected = detector.postprocess(torch.from_numpy(boxes), torch.from_numpy(scores), torch.from_numpy(scales))
    config = PostprocessConfig(0.05, 0.5, 100, 1000)
    for mine, theirs in zip(postprocess_raw(boxes, scores, scales, config), expected):
        assert len(theirs.scores) == 100
        np.testing.assert_array_equal(mine.boxes, theirs.boxes)
        np.testing.assert_array_equal(mine.scores, theirs.scores)
        np.testing.assert_array_equal(mine.labels, theirs.labels)


def test_postprocess_padded_drops_padding_and_rescales():
    outputs = {
        "num_detections": np.array([[2], [0]], np.int32),
        "detection_boxes": np.array([[[10, 20, 30, 40], [0, 0, 8, 8], [0, 0, 0, 0]]] * 2, np.float32),
        "detection_scores": np.array([[0.9, 0.6, 0.0]] * 2, np.float32),
        "detection_classes": np.array([[2, 0, 0]] * 2, np.int32),
    }
    first, second = postprocess_padded(outputs, np.array([[0.5, 2.0], [1.0, 1.0]], np.float32))
    np.testing.assert_allclose(first.boxes, [[20, 10, 60, 20], [0, 0, 16, 4]])
    assert first.labels.tolist() == [2, 0] and first.labels.dtype == np.int64
    assert len(second.boxes) == 0 and second.boxes.shape == (0, 4)
