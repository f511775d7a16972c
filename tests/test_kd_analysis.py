"""The KD-loss share of benchmarks/kd_analysis.py, on hand-made per-epoch loss means."""

import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent


def test_kd_share_is_the_weighted_kd_terms_over_the_total():
    sys.path.insert(0, str(REPO / "benchmarks"))
    from kd_analysis import kd_share

    losses = {  # a GFL student distilled with fgfi + ssim: total = qfl + dfl + giou + fgfi + ssim per epoch
        "loss": [4.0, 2.0],
        "loss_qfl": [1.5, 0.9],
        "loss_dfl": [0.4, 0.3],
        "loss_giou": [0.6, 0.3],
        "loss_fgfi": [0.5, 0.25],
        "loss_ssim": [1.0, 0.25],
    }
    assert kd_share(losses, ["loss_fgfi", "loss_ssim"]) == pytest.approx([37.5, 25.0])  # 1.5/4, 0.5/2
    assert kd_share(losses, ["loss_ssim"]) == pytest.approx([25.0, 12.5])
    assert kd_share(losses, []) == [0.0, 0.0]


def test_the_table_reports_the_first_middle_and_last_epoch():
    sys.path.insert(0, str(REPO / "benchmarks"))
    from kd_analysis import epoch_points

    assert epoch_points(24) == [0, 11, 23]
    assert epoch_points(5) == [0, 2, 4]
    assert epoch_points(2) == [0, 1]
    assert epoch_points(1) == [0]


def test_a_row_averages_its_seeds_curves_and_the_shares_of_those_that_logged_losses():
    sys.path.insert(0, str(REPO / "benchmarks"))
    from kd_analysis import analyse

    results = {
        0: {"ap_per_epoch": [1.0, 3.0], "loss_per_epoch": {"loss": [2.0, 1.0], "loss_fgfi": [0.5, 0.1]}},
        1: {"ap_per_epoch": [2.0, 5.0], "loss_per_epoch": {"loss": [4.0, 2.0], "loss_fgfi": [0.4, 0.4]}},
        2: {"ap_per_epoch": [3.0, 4.0]},  # stored before losses were logged
    }
    row = analyse("fgfi", results, ["loss_fgfi"])
    assert row.seeds == [0, 1, 2] and row.ap_curve == pytest.approx([2.0, 4.0]) and row.final_ap == pytest.approx(4.0)
    assert row.last_quarter_gain == pytest.approx(2.0)  # the line through the last two epochs: 4.0 - 2.0
    assert row.share_seeds == [0, 1]
    assert row.kd_share == pytest.approx([17.5, 15.0])  # seed 0: 25 %, 10 %; seed 1: 10 %, 20 %
    no_kd = analyse("no KD", {0: results[0]}, [])
    assert no_kd.kd_share is None and no_kd.share_seeds == []
