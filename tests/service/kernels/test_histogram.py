"""Log-linear latency histograms against a reference bucketing written from the docstring.

The reference below is built from the rule in ``service.kernels.histogram``'s docstring (one bucket
per value below 16, then 16 equal sub-buckets per power of two up to 2**36, the rest in the
last bucket) without looking at the kernel's arithmetic; the kernel, its ``.py_func`` and the
reference must agree on every value tried, and percentiles must agree with numpy's.
"""

from __future__ import annotations

import bisect
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from contracts.buckets import (
    HIST_MAX,
    HIST_SUM,
    HIST_WORDS,
    N_BUCKETS,
    bucket_bounds,
    percentiles,
    summary,
)
from service.kernels.histogram import hist_index, hist_record
from service.kernels.jit import kernel

INT64_MAX = np.iinfo(np.int64).max


def _reference_lows() -> list[int]:
    lows = list(range(16))
    for octave in range(4, 36):  # values in [2**octave, 2**(octave+1)), 16 equal parts
        width = 2 ** (octave - 4)
        lows += [2**octave + j * width for j in range(16)]
    return lows


REF_LOWS = _reference_lows()


def reference_index(value: int) -> int:
    return bisect.bisect_right(REF_LOWS, max(value, 0)) - 1


EDGES = sorted(
    {
        0,
        1,
        15,
        16,
        17,
        31,
        32,
        33,
        1000,
        10**6,
        10**9,
        2**36 - 1,
        2**36,
        2**36 + 1,
        2**40,
        2**62,
        INT64_MAX,
    }
    | {2**k + d for k in range(1, 63) for d in (-1, 0, 1)}
)


@kernel
def _indices(values, out):
    for i in range(values.size):
        out[i] = hist_index(values[i])


@kernel
def _record_all(stats, base, values):
    for i in range(values.size):
        hist_record(stats, base, values[i])


def _lognormal_ns(n: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return np.minimum(rng.lognormal(mean=8.0, sigma=2.0, size=n), 2**40).astype(np.int64)


def _recorded(values: np.ndarray) -> np.ndarray:
    hist = np.zeros(HIST_WORDS, dtype=np.int64)
    _record_all(hist, 0, values)
    return hist


# --------------------------------------------------------------------------- buckets


def test_bounds_are_contiguous_cover_everything_and_match_the_reference():
    lows, highs = bucket_bounds()
    assert len(lows) == len(highs) == N_BUCKETS == len(REF_LOWS) == 528
    assert lows[0] == 0 and highs[-1] == INT64_MAX
    np.testing.assert_array_equal(lows, REF_LOWS)
    np.testing.assert_array_equal(lows[1:], highs[:-1] + 1)  # no gap, no overlap
    assert (highs >= lows).all()


def test_buckets_are_at_most_one_sixteenth_wide_above_16():
    lows, highs = bucket_bounds()
    np.testing.assert_array_equal(lows[:16], highs[:16])  # exact below 16
    width = highs[16:-1] - lows[16:-1] + 1
    assert (width * 16 <= lows[16:-1]).all()
    assert lows[-1] == 2**36 - 2**31  # the last bucket starts below 2**36 and is open


def test_index_of_edge_values_agrees_with_py_func_and_reference():
    values = np.array(EDGES, dtype=np.int64)
    jitted = np.empty_like(values)
    _indices(values, jitted)
    for value, index in zip(EDGES, jitted.tolist(), strict=True):
        expected = reference_index(value)
        assert index == expected, value
        assert hist_index(value) == expected, value
        assert hist_index.py_func(value) == expected, value


def test_index_of_every_value_below_70000():
    values = np.arange(70_000, dtype=np.int64)
    jitted = np.empty_like(values)
    _indices(values, jitted)
    expected = np.searchsorted(np.array(REF_LOWS), values, side="right") - 1
    np.testing.assert_array_equal(jitted, expected)


def test_negative_values_count_as_zero():
    for value in (-1, -16, -(2**40), np.iinfo(np.int64).min + 1):
        assert hist_index(value) == 0
        assert hist_index.py_func(value) == 0


@settings(max_examples=300, deadline=None)
@given(st.integers(0, INT64_MAX))
def test_index_agrees_for_any_value(value):
    lows, highs = bucket_bounds()
    index = hist_index(value)
    assert index == hist_index.py_func(value) == reference_index(value)
    assert lows[index] <= value <= highs[index]


# --------------------------------------------------------------------------- recording


def test_record_counts_sum_and_max_exactly_and_touches_only_its_words():
    values = _lognormal_ns(20_000, seed=1)
    values[:3] = [0, 2**36 + 5, 7]  # smallest, beyond the last bound, small
    base = 3 * 16
    stats = np.full(base + HIST_WORDS + 20, -1, dtype=np.int64)
    stats[base : base + HIST_WORDS] = 0
    _record_all(stats, base, values)
    hist = stats[base : base + HIST_WORDS]
    expected_counts = np.bincount([reference_index(int(v)) for v in values], minlength=N_BUCKETS)
    np.testing.assert_array_equal(hist[:N_BUCKETS], expected_counts)
    assert hist[HIST_SUM] == int(values.sum())
    assert hist[HIST_MAX] == 2**36 + 5
    assert (stats[:base] == -1).all() and (stats[base + HIST_WORDS :] == -1).all()
    s = summary(hist)
    assert s["count"] == 20_000
    assert s["max"] == 2**36 + 5
    assert s["mean"] == pytest.approx(values.mean())


QUANTILES = (0.0, 0.01, 0.25, 0.5, 0.9, 0.99, 0.999, 1.0)
# numpy's nearest-rank ("inverted_cdf") quantile is the exact percentile the buckets approximate.
# np.quantile, not np.percentile: scaling q by 100 and back can move numpy's rank by one
# (np.percentile(x, 99.9) of 1000 values picks the 1000th, not the 999th).


@pytest.mark.parametrize(("n", "seed"), [(1, 2), (7, 3), (1000, 4), (54_321, 5)])
def test_percentiles_match_numpy_within_a_bucket(n, seed):
    values = _lognormal_ns(n, seed)
    hist = _recorded(values)
    _, highs = bucket_bounds()
    reported = percentiles(hist, QUANTILES)
    for q in QUANTILES:
        exact = int(np.quantile(values, q, method="inverted_cdf"))
        bucket = reference_index(exact)
        # never optimistic, at most one bucket high, never above the largest value recorded
        assert exact <= reported[q] <= highs[bucket], q
        assert reported[q] <= values.max()
        assert reported[q] - exact <= max(exact / 16, 1)
    assert reported[1.0] == values.max()


@settings(max_examples=100, deadline=None)
@given(st.lists(st.integers(0, 2**38), min_size=1, max_size=200))
def test_percentiles_of_any_sample(values):
    values = np.array(values, dtype=np.int64)
    hist = _recorded(values)
    _, highs = bucket_bounds()
    reported = percentiles(hist, (0.5, 0.99, 1.0))
    for q, got in reported.items():
        exact = int(np.quantile(values, q, method="inverted_cdf"))
        assert exact <= got <= min(highs[reference_index(exact)], values.max())
    assert reported[1.0] == values.max()
    assert summary(hist)["max"] == values.max()
    assert hist[HIST_SUM] == values.sum()


def test_empty_histogram_is_nan():
    hist = np.zeros(HIST_WORDS, dtype=np.int64)
    assert all(math.isnan(v) for v in percentiles(hist, (0.0, 0.5, 1.0)).values())
    s = summary(hist)
    assert s["count"] == 0
    assert all(math.isnan(s[k]) for k in ("mean", "p50", "p90", "p99", "p999", "max"))
