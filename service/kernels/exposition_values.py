"""Every number one /metrics scrape needs from the stats block, in one kernel call.

``service.telemetry.exposition.render`` writes the exposition from a template whose lines only
lack their values (``service.telemetry.text_format``). Computing those values with numpy took
~40 small calls a scrape (a gather, a cumsum over every histogram, a searchsorted, ...), each
1.5-3 us of call overhead for a few hundred words of work: most of a scrape's CPU. Here one call
walks each histogram once and writes what the template needs into preallocated arrays; the
formatting stays in Python, where floatToGoString's rules already live.

Percentiles are ``contracts.buckets.percentiles``'s, to the bit: the rank of a quantile is
``max(1, ceil(q * total))``, its bucket the first whose cumulative count reaches the rank
(numpy's ``searchsorted``, side left), its value the bucket's top capped by the maximum
recorded. The tests hold ``histogram_percentiles`` to that function over random histograms.
"""

from __future__ import annotations

import numpy as np

from contracts.buckets import HIST_MAX, HIST_SUM, N_BUCKETS
from service.kernels.jit import kernel

NS_PER_S = 1e9

# Columns of the ``ints`` output, per histogram (row), after its ``L`` ladder counts:
TOTAL = 0  # + L: observations since the start (the +Inf bucket), twice: the +Inf and _count
TOTAL_AGAIN = 1  # + L: lines take both from one slice of the row
RECENT = 2  # + L: observations in the recent window (0: none, or no window)
QUANTILE = 3  # + L: each quantile's bucket, -1 where the window's maximum caps it
# Columns of the ``floats`` output, per histogram:
SUM_S = 0  # the sum of what was recorded since the start, in seconds
LARGEST_S = 1  # the window's maximum (what a capped quantile is), in seconds


@kernel
def first_reaching(cumulative, value):
    """The first index whose ``cumulative`` count is at least ``value`` (``cumulative`` is
    non-decreasing): ``np.searchsorted(cumulative, value)``, side left."""
    low = 0
    high = cumulative.size
    while low < high:
        middle = (low + high) >> 1
        if cumulative[middle] < value:
            low = middle + 1
        else:
            high = middle
    return low


@kernel
def quantile_bucket(cumulative, total, q):
    """The bucket of quantile ``q`` of ``total`` observations, ranked as ``percentiles`` ranks
    them: the ``max(1, ceil(q * total))``-th observation."""
    rank = max(1, np.int64(np.ceil(q * total)))
    return first_reaching(cumulative, rank)


@kernel
def histogram_percentiles(hist, quantiles, highs, cumulative, out):
    """``contracts.buckets.percentiles(hist, quantiles)`` written to ``out`` (ns, nan when the
    histogram is empty), in the order of ``quantiles``. ``highs``: each bucket's top
    (``bucket_bounds()[1]``); ``cumulative``: ``N_BUCKETS`` int64 words of scratch."""
    total = 0
    for b in range(N_BUCKETS):
        total += hist[b]
        cumulative[b] = total
    for i in range(quantiles.size):
        if total == 0:
            out[i] = np.nan
        else:
            bucket = quantile_bucket(cumulative, total, quantiles[i])
            out[i] = min(np.float64(highs[bucket]), np.float64(hist[HIST_MAX]))


@kernel
def exposition_values(  # noqa: PLR0913  # one call for the whole scrape: all its inputs
    block,
    now,
    before,
    has_window,
    offsets,
    ladder,
    ladder_ns,
    slo_histogram,
    slo_thresholds,
    slo_within,
    quantiles,
    highs,
    cumulative,
    ints,
    floats,
    slo,
):
    """The values of one scrape, for the histograms at ``offsets`` in ``block``.

    Row ``h`` of ``ints`` gets the cumulative counts at the ``ladder`` buckets, the total twice,
    and with ``has_window`` the count of the window ``before`` .. ``now`` (each bucket's rise,
    never negative, as ``Interval.histogram`` takes it) and its ``quantiles``' buckets (see the
    column constants); row ``h`` of ``floats`` the sum in seconds and the window's maximum in
    seconds: the top of its highest non-empty bucket capped by ``now``'s run maximum.

    Row ``i`` of ``slo`` gets the ``i``-th SLO boundary of histogram ``slo_histogram``: its
    threshold (ns, words from ``slo_thresholds`` in ``block``) and the observations within
    (words from ``slo_within``), clamped into what the buckets allow at the threshold and kept
    no lower than a smaller threshold's in the same bucket (two thresholds were read one after
    the other); threshold 0 where the slot is unused, already a ``ladder_ns`` edge, or repeats
    an earlier slot's. ``cumulative``: ``N_BUCKETS`` int64 words of scratch.
    """
    n_ladder = ladder.size
    for h in range(offsets.size):
        base = offsets[h]
        total = 0
        for b in range(N_BUCKETS):
            total += block[base + b]
            cumulative[b] = total
        for e in range(n_ladder):
            ints[h, e] = cumulative[ladder[e]]
        ints[h, n_ladder + TOTAL] = total
        ints[h, n_ladder + TOTAL_AGAIN] = total
        floats[h, SUM_S] = np.float64(block[base + HIST_SUM]) / NS_PER_S
        if h == slo_histogram:
            _slo_points(block, cumulative, ladder_ns, slo_thresholds, slo_within, highs, slo)
        ints[h, n_ladder + RECENT] = 0
        if not has_window:
            continue
        # the window: each bucket's rise since the earlier reading
        recent = 0
        for b in range(N_BUCKETS):
            recent += max(now[base + b] - before[base + b], 0)
            cumulative[b] = recent
        ints[h, n_ladder + RECENT] = recent
        if recent == 0:
            continue  # nothing recorded in the window: no quantile to tell
        largest = min(highs[first_reaching(cumulative, recent)], now[base + HIST_MAX])
        floats[h, LARGEST_S] = np.float64(largest) / NS_PER_S
        for i in range(quantiles.size):
            bucket = quantile_bucket(cumulative, recent, quantiles[i])
            ints[h, n_ladder + QUANTILE + i] = bucket if highs[bucket] <= largest else -1


@kernel
def _slo_points(block, cumulative, ladder_ns, slo_thresholds, slo_within, highs, slo):  # noqa: PLR0913
    """The SLO rows of ``exposition_values`` (``exposition.slo_points``, then the running
    maximum ``exposition.histogram_buckets`` keeps), from the histogram's ``cumulative``."""
    n = slo.shape[0]
    for i in range(n):
        threshold = block[slo_thresholds + i]
        slo[i, 0] = 0
        slo[i, 1] = 0
        if threshold <= 0:
            continue  # unused
        known = False
        for e in range(ladder_ns.size):
            known |= ladder_ns[e] == threshold  # a bucket edge: exact already
        for j in range(i):
            known |= slo[j, 0] == threshold  # given twice: the first counts
        if known:
            continue
        k = first_reaching(highs, threshold)  # the first bucket whose top is >= threshold
        below = cumulative[k - 1] if k > 0 else 0
        slo[i, 0] = threshold
        slo[i, 1] = min(max(block[slo_within + i], below), cumulative[k])
    # a threshold's count is no lower than a smaller one's: only two in one bucket can differ,
    # a ladder edge below a threshold is at most the count below its bucket, one above at least
    # the count through it
    for i in range(n):
        for j in range(n):
            if slo[i, 0] and slo[j, 0] and slo[j, 0] < slo[i, 0]:
                slo[i, 1] = max(slo[i, 1], slo[j, 1])
