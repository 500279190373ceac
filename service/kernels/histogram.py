"""Recording into log-linear latency histograms: the hot-path half (numba kernels).

The bucketing scheme, the layout of a histogram in a stats array and everything that reads
one (percentiles, summaries) live in ``contracts.buckets``, which needs no numba.
"""

from __future__ import annotations

from contracts.buckets import HIST_MAX, HIST_SUM, MAX_BITS, N_BUCKETS, SUB_BITS, SUB_BUCKETS
from service.kernels.atomics import bit_length, load_relaxed, store_relaxed
from service.kernels.jit import kernel


@kernel
def hist_index(value):
    """Bucket of a non-negative value (negative values count as 0)."""
    if value < SUB_BUCKETS:
        return max(value, 0)
    bits = bit_length(value)
    if bits > MAX_BITS:
        return N_BUCKETS - 1
    shift = bits - 1 - SUB_BITS
    return (shift + 1) * SUB_BUCKETS + ((value >> shift) & (SUB_BUCKETS - 1))


@kernel
def hist_record(stats, base, value):
    """Count ``value`` in the histogram at ``stats[base:]``.

    ``stats`` may be shared memory read by other processes: each word has a single writer (the
    stage that owns the histogram), and relaxed atomic accesses keep every word untorn for
    readers at the cost of plain moves.
    """
    i = base + hist_index(value)
    store_relaxed(stats, i, load_relaxed(stats, i) + 1)
    store_relaxed(stats, base + HIST_SUM, load_relaxed(stats, base + HIST_SUM) + value)
    if value > load_relaxed(stats, base + HIST_MAX):
        store_relaxed(stats, base + HIST_MAX, value)
