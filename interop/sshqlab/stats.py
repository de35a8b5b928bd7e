"""The statistics every experiment reports.

Percentiles use the nearest-rank definition (see `percentile`): always a
measured value, never an interpolation, and a p99 from fewer than 100
samples is the maximum, so such p99s are flagged.
"""

import math
import statistics


def percentile(samples, pct):
    """The nearest-rank percentile: the smallest sample with at least `pct` %
    of the samples at or below it (sorted[ceil(pct/100 * n) - 1]).

    Correct for any n >= 1; with n < 100, the 99th percentile is the maximum.
    """
    if not samples:
        return None
    ordered = sorted(samples)
    rank = max(1, math.ceil(pct / 100 * len(ordered)))
    return ordered[rank - 1]


def latency_summary(samples_ms):
    """p50, p95, p99, max and count of a list of latencies, in ms."""
    def rounded(v):
        return None if v is None else round(v, 2)
    return {
        "p50_ms": rounded(percentile(samples_ms, 50)),
        "p95_ms": rounded(percentile(samples_ms, 95)),
        "p99_ms": rounded(percentile(samples_ms, 99)),
        "max_ms": rounded(max(samples_ms) if samples_ms else None),
        "samples": len(samples_ms),
        # A nearest-rank p99 of fewer than 100 samples is just the maximum.
        "p99_from_few_samples": len(samples_ms) < 100,
    }


def ratio(numerator, denominator):
    """numerator / denominator, or None when either is missing or the
    denominator is zero (a ratio to nothing is no measurement)."""
    if numerator is None or not denominator:
        return None
    return numerator / denominator


def slope(points):
    """Least-squares slope of (x, y) points (None with fewer than two x values)."""
    xs = [x for x, _ in points]
    if len(set(xs)) < 2:
        return None
    mx, my = statistics.fmean(xs), statistics.fmean(y for _, y in points)
    return sum((x - mx) * (y - my) for x, y in points) / sum((x - mx) ** 2 for x in xs)
