"""The last few minutes of the engine's figures, one point per reading of the API's sampler.

The telemetry API's sampler (``service.telemetry.api.Sampler``) reads the stats block every
``[telemetry] sample_interval_s``. Each reading and the one before it make a point: the
percentiles of every latency path over that interval, the counters of ``RATES`` per second, and
the occupancy of each ring. ``/history`` serves the points, so the dashboard opened during an
incident shows the minutes before it, and the browsers watching cause no reading of their own.

Points are plain JSON-ready dicts, made once on the sampler's thread and shared by every request.
"""

from __future__ import annotations

import collections
import math
import threading

from contracts import stats_layout as L
from contracts.buckets import summary
from contracts.documents import finite_or_none
from service.telemetry.engine_view import RINGS, Interval, Sample

HISTORY_S = 300.0  # what the dashboard draws: the last five minutes
PERCENTILES = ("p50", "p90", "p99", "p999")
LATENCY_PATHS = tuple(m for m in L.CATALOG if m.kind == "histogram")


def point(interval: Interval, wall_s: float) -> dict:
    """The figures of ``interval`` (previous reading to current), stamped ``wall_s`` (Unix s)."""
    current = interval.current
    if not current.running:
        return {"t": wall_s, "engine_running": False, "window_s": None, "latency_ns": {},
                "rates_per_s": {}, "rings": {}}  # fmt: skip
    latency = {}
    for metric in LATENCY_PATHS:
        hist = interval.histogram(metric.offset)
        if hist is not None:
            s = finite_or_none(summary(hist))
            latency[metric.name] = {"count": int(s["count"]), **{k: s[k] for k in PERCENTILES}}
    return {
        "t": wall_s,
        "engine_running": True,
        "window_s": interval.interval_s if interval.available else None,
        "latency_ns": latency,
        "rates_per_s": interval.rates(),
        "rings": {name: int(current.stats[word]) for name, word, _ in RINGS},
    }


class History:
    """A bounded series of points: ``record`` from the sampler's thread, ``since`` from any."""

    def __init__(self, interval_s: float, span_s: float = HISTORY_S):
        self.interval_s = interval_s
        self.span_s = span_s
        self._points: collections.deque[dict] = collections.deque(
            maxlen=max(2, math.ceil(span_s / interval_s))
        )
        self._previous: Sample | None = None
        self._lock = threading.Lock()  # a deque cannot be copied while another thread appends

    def record(self, sample: Sample, wall_s: float) -> None:
        """A point for ``sample``; at most one per interval, but always when the engine came or
        went (the sampler reads more often while no engine runs, to catch the next run)."""
        previous = self._previous
        if (
            previous is not None
            and previous.running == sample.running
            and sample.taken_ns - previous.taken_ns < 0.9 * self.interval_s * 1e9
        ):
            return
        new = point(Interval(previous, sample), wall_s)
        self._previous = sample
        with self._lock:
            self._points.append(new)

    def since(self, after: float | None = None) -> list[dict]:
        """The points taken after Unix time ``after`` (all of them when None), oldest first."""
        with self._lock:
            points = list(self._points)
        return points if after is None else [p for p in points if p["t"] > after]
