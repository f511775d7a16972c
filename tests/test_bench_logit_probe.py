"""The RoI-head probe of benchmarks/kd_logit_probe.py, on hand-made proposals, class probabilities and boxes."""

import math
import sys
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parent.parent


def probe_module():
    sys.path.insert(0, str(REPO / "benchmarks"))
    import kd_logit_probe

    return kd_logit_probe


def test_counts_split_positives_and_negatives_by_iou_and_read_the_gt_class_box():
    probe = probe_module()
    gt_boxes, gt_labels = torch.tensor([[0.0, 0.0, 10.0, 10.0]]), torch.tensor([1])  # internal class 2
    proposals = torch.tensor([[0.0, 0.0, 10.0, 10.0], [20.0, 20.0, 30.0, 30.0]])  # IoU 1 and 0
    logits = torch.tensor([[0.1, 0.2, 0.6, 0.1], [0.7, 0.1, 0.1, 0.1]]).log()
    refined = torch.tensor([[0.0, 0.0, 10.0, 10.0]]).repeat(2, 4, 1)
    refined[0, 2] = torch.tensor([0.0, 0.0, 10.0, 5.0])  # the GT class's box: IoU 50 / 100 with the GT
    counts = probe.probe_boxes(logits, refined, proposals, gt_boxes, gt_labels)
    assert (counts.positives, counts.negatives, counts.gt_class_argmax, counts.refined_tight) == (1, 1, 1, 0)
    assert counts.background_on_positives == pytest.approx(0.1)
    assert counts.foreground_on_negatives == pytest.approx(0.3)
    assert counts.refined_iou == pytest.approx(0.5)


def test_an_image_without_gt_has_only_negatives_and_rates_average_over_proposals():
    probe = probe_module()
    proposals = torch.tensor([[0.0, 0.0, 4.0, 4.0], [1.0, 1.0, 5.0, 5.0]])
    logits = torch.tensor([[0.9, 0.05, 0.05, 0.0], [0.5, 0.5, 0.0, 0.0]]).clamp_min(1e-12).log()
    empty = probe.probe_boxes(
        logits, torch.zeros(2, 4, 4), proposals, torch.zeros(0, 4), torch.zeros(0, dtype=torch.long)
    )
    assert (empty.positives, empty.negatives) == (0, 2)
    assert empty.foreground_on_negatives == pytest.approx(0.1 + 0.5)
    total = probe.ProbeCounts(positives=1, gt_class_argmax=1, refined_iou=0.5, background_on_positives=0.1)
    total.add(empty)
    rates = total.rates(images=2)
    assert rates["positives_per_image"] == 0.5
    assert rates["foreground_on_negatives"] == pytest.approx(0.3)
    assert rates["refined_iou"] == 0.5 and rates["gt_class_argmax"] == 1.0
    assert math.isclose(rates["background_on_positives"], 0.1)
