"""The log-linear latency buckets (HdrHistogram's bucketing, simplified): layout and reading.

Values are nanoseconds. Below 16 ns each value has its own bucket; above, every power of two is
split into 16 equal sub-buckets, so a bucket is at most 1/16 (6.25 %) wide relative to its
values. 528 buckets cover 0 ns to 2**36 ns (~69 s); larger values land in the last bucket.

In a stats array a histogram occupies ``HIST_WORDS`` words from its base offset: the buckets,
then the sum of recorded values, then the largest value recorded. Recording is a numba kernel
(``service.kernels.histogram``); this module only reads, with numpy, so the light parts of lowlat
(metric names for the CDK app, the Prometheus exporter) can use it without numba.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np

SUB_BITS = 4
SUB_BUCKETS = 1 << SUB_BITS
MAX_BITS = 36
N_BUCKETS = (MAX_BITS - SUB_BITS + 1) * SUB_BUCKETS  # 528
HIST_SUM = N_BUCKETS  # word offsets within a histogram
HIST_MAX = N_BUCKETS + 1
HIST_WORDS = N_BUCKETS + 2


def bucket_bounds() -> tuple[np.ndarray, np.ndarray]:
    """(lowest, highest) value of each bucket, inclusive."""
    lows = np.empty(N_BUCKETS, dtype=np.int64)
    highs = np.empty(N_BUCKETS, dtype=np.int64)
    for i in range(N_BUCKETS):
        if i < SUB_BUCKETS:
            lows[i] = highs[i] = i
        else:
            shift = i // SUB_BUCKETS - 1
            lows[i] = (SUB_BUCKETS + i % SUB_BUCKETS) << shift
            highs[i] = lows[i] + (1 << shift) - 1
    highs[-1] = np.iinfo(np.int64).max
    return lows, highs


_LOWS, _HIGHS = bucket_bounds()


def percentiles(hist: np.ndarray, quantiles: Iterable[float]) -> dict[float, float]:
    """Percentile values (ns) of a histogram's words, for quantiles in [0, 1].

    A percentile is reported as the highest value of the bucket it falls in (never
    optimistic), capped by the exact maximum recorded. With no samples every value is nan.
    """
    counts = hist[:N_BUCKETS]
    total = int(counts.sum())
    if total == 0:
        return {q: float("nan") for q in quantiles}
    cumulative = np.cumsum(counts)
    largest = float(hist[HIST_MAX])
    result = {}
    for q in quantiles:
        rank = max(1, int(np.ceil(q * total)))
        bucket = int(np.searchsorted(cumulative, rank))
        result[q] = min(float(_HIGHS[bucket]), largest)
    return result


def summary(hist: np.ndarray) -> dict[str, float]:
    """count, mean, p50, p90, p99, p999 and max of a histogram, in ns."""
    count = int(hist[:N_BUCKETS].sum())
    p = percentiles(hist, (0.5, 0.9, 0.99, 0.999))
    return {
        "count": count,
        "mean": float(hist[HIST_SUM]) / count if count else float("nan"),
        "p50": p[0.5],
        "p90": p[0.9],
        "p99": p[0.99],
        "p999": p[0.999],
        "max": float(hist[HIST_MAX]) if count else float("nan"),
    }
