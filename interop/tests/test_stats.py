"""The statistics the experiments report: nearest-rank percentiles, latency
summaries, ratios and fitted slopes."""

import math

import pytest

from sshqlab.stats import latency_summary, percentile, ratio, slope


def test_percentile_of_nothing_is_none():
    assert percentile([], 50) is None


def test_percentile_of_one_sample_is_that_sample():
    for pct in (0, 1, 50, 99, 100):
        assert percentile([7.5], pct) == 7.5


def test_percentile_is_nearest_rank_not_interpolated():
    samples = [1, 2, 3, 4]
    # ceil(0.5 * 4) = 2nd smallest; an interpolating median would say 2.5.
    assert percentile(samples, 50) == 2
    assert percentile(samples, 75) == 3
    assert percentile(samples, 76) == 4
    assert percentile(samples, 100) == 4


def test_percentile_ignores_input_order_and_does_not_sort_in_place():
    samples = [9, 1, 5, 3, 7]
    assert percentile(samples, 50) == 5
    assert samples == [9, 1, 5, 3, 7]


def test_percentile_zero_is_the_minimum():
    assert percentile([4, 2, 8], 0) == 2


def test_p99_of_fewer_than_100_samples_is_the_maximum():
    samples = list(range(1, 51))
    assert percentile(samples, 99) == 50


def test_p99_of_1000_samples_is_the_990th():
    samples = list(range(1000, 0, -1))  # 1..1000, reversed
    assert percentile(samples, 99) == 990
    assert percentile(samples, 95) == 950
    assert percentile(samples, 50) == 500


def test_percentile_is_always_a_measured_value():
    samples = [0.1, 0.7, 3.3, 12.0, 40.5, 41.0, 99.9]
    for pct in range(0, 101):
        assert percentile(samples, pct) in samples


def test_latency_summary_rounds_and_counts():
    summary = latency_summary([1.234, 2.345, 3.456, 100.0])
    assert summary == {
        "p50_ms": 2.35,
        "p95_ms": 100.0,
        "p99_ms": 100.0,
        "max_ms": 100.0,
        "samples": 4,
        "p99_from_few_samples": True,
    }


def test_latency_summary_flags_p99_only_below_100_samples():
    assert latency_summary([1.0] * 99)["p99_from_few_samples"] is True
    assert latency_summary([1.0] * 100)["p99_from_few_samples"] is False


def test_latency_summary_of_nothing_has_no_values():
    summary = latency_summary([])
    assert summary["samples"] == 0
    assert all(summary[k] is None for k in ("p50_ms", "p95_ms", "p99_ms", "max_ms"))


def test_ratio():
    assert ratio(30.0, 10.0) == 3.0
    assert ratio(1, 4) == 0.25


@pytest.mark.parametrize("numerator,denominator", [(None, 1.0), (1.0, None), (1.0, 0), (None, None)])
def test_ratio_without_a_measurement_is_none(numerator, denominator):
    assert ratio(numerator, denominator) is None


def test_slope_of_a_line():
    points = [(0, 5.0), (50, 105.0), (200, 405.0)]
    assert math.isclose(slope(points), 2.0)


def test_slope_least_squares_through_noise():
    # y = 3x + 1 with +-1 noise that cancels out.
    points = [(0, 2.0), (0, 0.0), (10, 32.0), (10, 30.0)]
    assert math.isclose(slope(points), 3.0)


def test_slope_needs_two_distinct_x_values():
    assert slope([]) is None
    assert slope([(5, 1.0), (5, 2.0)]) is None
