"""Timing statistics and loops on synthetic timings (no wall-clock assertions)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from edgekd.bench.timing import (
    CV_WARN,
    Measurement,
    PerfCounterClock,
    measure,
    stability_warning,
    summarize_measurement,
    summarize_times,
    time_calls,
)


def test_summary_of_four_timings_by_hand():
    stats = summarize_times(np.array([0.001, 0.002, 0.003, 0.004]), batch=2)
    assert stats["min_ms"] == pytest.approx(1.0)
    assert stats["max_ms"] == pytest.approx(4.0)
    assert stats["mean_ms"] == pytest.approx(2.5)
    assert stats["p50_ms"] == pytest.approx(2.5)  # linear interpolation between 2 and 3
    assert stats["std_ms"] == pytest.approx(math.sqrt(5 / 3))  # sample std: (2.25+0.25+0.25+2.25)/3
    assert stats["cv"] == pytest.approx(math.sqrt(5 / 3) / 2.5)
    assert stats["throughput_ips"] == pytest.approx(2 * 1000 / 2.5)
    assert stats["iters"] == 4


def test_percentiles_agree_with_numpy_on_skewed_timings():
    rng = np.random.default_rng(1)
    times = rng.lognormal(mean=-5, sigma=0.6, size=997)
    stats = summarize_times(times, batch=8)
    ms = times * 1000
    for key, q in (("p50_ms", 50), ("p90_ms", 90), ("p99_ms", 99)):
        assert stats[key] == pytest.approx(np.percentile(ms, q))
    assert stats["std_ms"] == pytest.approx(np.std(ms, ddof=1))
    assert stats["throughput_ips"] == pytest.approx(8000 / np.median(ms))
    assert stats["min_ms"] <= stats["p50_ms"] <= stats["p90_ms"] <= stats["p99_ms"] <= stats["max_ms"]


def test_single_timing_has_no_spread_and_empty_is_an_error():
    assert summarize_times(np.array([0.002]))["std_ms"] == 0.0
    with pytest.raises(ValueError):
        summarize_times(np.array([]))


class CountingClock:
    """Returns 1, 2, 3, ... seconds for successive calls, and runs the function."""

    name = "fake"

    def __init__(self) -> None:
        self.calls = 0

    def __call__(self, fn) -> float:
        fn()
        self.calls += 1
        return float(self.calls)


def test_first_call_and_warmup_are_excluded_from_the_timed_calls():
    clock = CountingClock()
    ran = []
    result = measure(lambda: ran.append(1), clock, warmup=3, iters=5)
    assert len(ran) == 1 + 3 + 5
    assert result.first_call == 1.0
    np.testing.assert_array_equal(result.times, [5.0, 6.0, 7.0, 8.0, 9.0])
    summary = summarize_measurement(result, batch=1)
    assert summary["first_call_ms"] == 1000.0 and summary["warmup"] == 3 and summary["iters"] == 5


def test_seconds_budget_runs_at_least_min_iters():
    clock = CountingClock()
    result = measure(lambda: None, clock, warmup=0, iters=None, seconds=1e-9, min_iters=4)
    assert len(result.times) >= 4
    with pytest.raises(ValueError):
        measure(lambda: None, clock, iters=3, seconds=1.0)


def test_perf_counter_clock_synchronises_around_the_call():
    events = []
    clock = PerfCounterClock(sync=lambda: events.append("sync"))
    seconds = clock(lambda: events.append("call"))
    assert events == ["sync", "call", "sync"]
    assert seconds >= 0


def test_time_calls_keeps_its_contract():
    calls = []
    times = time_calls(lambda: calls.append(1), warmup=2, iters=7)
    assert times.shape == (7,) and (times >= 0).all()
    assert len(calls) == 2 + 1 + 7  # its warm-up, the first call, the timed calls


def test_stability_guard_flags_a_coefficient_of_variation_above_five_percent():
    steady = summarize_times(np.full(50, 0.010) + np.linspace(-1e-4, 1e-4, 50))
    assert steady["cv"] < CV_WARN and stability_warning("compute", steady) is None
    jittery = summarize_times(np.array([0.010, 0.010, 0.010, 0.014]))
    expected_cv = np.std([10, 10, 10, 14], ddof=1) / 11
    warning = stability_warning("compute", jittery)
    assert warning is not None and f"{expected_cv:.1%}" in warning and "compute" in warning


def test_measurement_is_plain_data():
    m = Measurement(np.array([0.5]), 0.25, 0)
    assert summarize_measurement(m, 4)["throughput_ips"] == pytest.approx(4 * 1000 / 500)
