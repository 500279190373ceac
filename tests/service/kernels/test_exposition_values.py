"""The /metrics values kernel against the plain readings it replaces.

``histogram_percentiles`` and the recent quantiles of ``exposition_values`` must be
``contracts.buckets.percentiles`` to the bit (over random histograms, jitted and as ``.py_func``);
the ladder, totals and sums the plain cumsum's. Whole expositions, SLO boundaries included, are
held to prometheus_client's in tests/service/telemetry/test_exposition.py.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from contracts.buckets import HIST_MAX, HIST_SUM, HIST_WORDS, N_BUCKETS, bucket_bounds, percentiles
from contracts.metric_names import RECENT_QUANTILES
from service.kernels import exposition_values as V

_, HIGHS = bucket_bounds()
QUANTILES = (*RECENT_QUANTILES, 0.0, 1.0, 0.25, 0.123456789, 1e-9, 1 - 1e-12)
LADDER = np.array([3, 40, 100, 200, 300, 400, 526], dtype=np.int64)


@st.composite
def histograms(draw) -> np.ndarray:
    """A histogram's words: a few filled buckets of any size, a sum, a maximum anywhere."""
    hist = np.zeros(HIST_WORDS, dtype=np.int64)
    for _ in range(draw(st.integers(0, 12))):
        bucket = draw(st.integers(0, N_BUCKETS - 1))
        hist[bucket] += draw(st.sampled_from([1, 2, 3, 7, 1000, 10**6, 10**12]))
    hist[HIST_SUM] = draw(st.integers(0, 2**62))
    hist[HIST_MAX] = draw(st.integers(0, 2**40))
    return hist


def _same(a: float, b: float) -> bool:
    return (math.isnan(a) and math.isnan(b)) or a == b


@pytest.mark.parametrize("jitted", [True, False], ids=["jit", "py_func"])
@settings(max_examples=300, deadline=None)
@given(hist=histograms(), extra=st.floats(0.0, 1.0))
def test_percentiles_are_contracts_percentiles(jitted: bool, hist: np.ndarray, extra: float):
    quantiles = np.array([*QUANTILES, extra])
    out = np.empty(quantiles.size)
    fn = V.histogram_percentiles if jitted else V.histogram_percentiles.py_func
    fn(hist, quantiles, HIGHS, np.empty(N_BUCKETS, dtype=np.int64), out)
    expected = percentiles(hist, quantiles.tolist())
    assert all(_same(a, expected[q]) for a, q in zip(out.tolist(), quantiles.tolist(), strict=True))


def _window(now: np.ndarray, before: np.ndarray) -> np.ndarray:
    """The window's histogram as ``Interval.histogram`` makes it (the recent summaries')."""
    window = np.zeros(HIST_WORDS, dtype=np.int64)
    window[:N_BUCKETS] = np.maximum(now[:N_BUCKETS] - before[:N_BUCKETS], 0)
    filled = np.flatnonzero(window[:N_BUCKETS])
    if filled.size:
        window[HIST_MAX] = min(int(HIGHS[filled[-1]]), int(now[HIST_MAX]))
    return window


@pytest.mark.parametrize("jitted", [True, False], ids=["jit", "py_func"])
@settings(max_examples=200, deadline=None)
@given(hists=st.lists(st.tuples(histograms(), histograms()), min_size=1, max_size=3))
def test_scrape_values_are_the_plain_readings(jitted: bool, hists):
    block = np.concatenate([now for now, _ in hists])
    earlier = np.concatenate([before for _, before in hists])
    offsets = np.arange(len(hists), dtype=np.int64) * HIST_WORDS
    quantiles = np.array(RECENT_QUANTILES)
    n = LADDER.size
    ints = np.full((len(hists), n + V.QUANTILE + quantiles.size), -7, dtype=np.int64)
    floats = np.full((len(hists), 2), np.nan)
    slo = np.empty((4, 2), dtype=np.int64)
    fn = V.exposition_values if jitted else V.exposition_values.py_func
    fn(
        block, block, earlier, True, offsets, LADDER, HIGHS[LADDER], -1, 0, 0, quantiles,
        HIGHS, np.empty(N_BUCKETS, dtype=np.int64), ints, floats, slo,
    )  # fmt: skip
    for h, (now, before) in enumerate(hists):
        cumulative = np.cumsum(now[:N_BUCKETS])
        assert ints[h, :n].tolist() == cumulative[LADDER].tolist()
        assert ints[h, n + V.TOTAL] == ints[h, n + V.TOTAL_AGAIN] == cumulative[-1]
        assert floats[h, V.SUM_S] == float(now[HIST_SUM]) / 1e9
        window = _window(now, before)
        recent = int(window[:N_BUCKETS].sum())
        assert ints[h, n + V.RECENT] == recent
        if not recent:
            continue
        expected = percentiles(window, RECENT_QUANTILES)
        for i, q in enumerate(RECENT_QUANTILES):
            bucket = ints[h, n + V.QUANTILE + i]
            value = float(HIGHS[bucket]) if bucket >= 0 else floats[h, V.LARGEST_S] * 1e9
            if bucket < 0:  # capped: the maximum itself, in seconds as render writes it
                assert floats[h, V.LARGEST_S] == float(window[HIST_MAX]) / 1e9
                value = float(window[HIST_MAX])
            assert value == expected[q]
