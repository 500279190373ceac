"""The last few minutes of the engine's figures, one point per reading of the API's sampler.

The telemetry API's sampler (``service.telemetry.api.Sampler``) reads the stats block every
``[telemetry] sample_interval_s``. Each reading and the one before it make a point: the
percentiles of every latency path over that interval, the counters of ``RATES`` per second, and
the occupancy of each ring. With the newest point goes the state at its reading (the
``/latest`` document: stages, readiness, kill switch, rejects, positions). ``/history`` serves
both, so the dashboard opened during an incident shows the minutes before it, and the browsers
watching cause no reading of their own.

Each point and the state are serialised to JSON once, on the sampler's thread: a request only
picks the points it asks for and joins their bytes, however many dashboards are open.
"""

from __future__ import annotations

import collections
import json
import math
import threading
from collections.abc import Callable

from contracts import stats_layout as L
from contracts.buckets import summary
from contracts.documents import finite_or_none
from service.telemetry.engine_view import RINGS, Interval, Sample

HISTORY_S = 300.0  # what the dashboard draws: the last five minutes
MAX_POINTS = 1500  # at the shortest sample interval (0.05 s), the last 75 s: a page's first
# /history stays a few MB at most
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


def _json(doc: dict | None) -> bytes:
    return json.dumps(finite_or_none(doc), separators=(",", ":"), allow_nan=False).encode()


class History:
    """A bounded series of points: ``record`` from the sampler's thread, ``since`` and ``body``
    from any."""

    def __init__(self, interval_s: float, span_s: float = HISTORY_S):
        kept = min(MAX_POINTS, max(2, math.ceil(span_s / interval_s)))
        self.interval_s = interval_s
        self.span_s = min(span_s, kept * interval_s)
        self._points: collections.deque[tuple[dict, bytes]] = collections.deque(maxlen=kept)
        self._state = b"null"  # the newest point's reading as /latest describes it
        self._head = _json({"interval_s": interval_s, "span_s": self.span_s})[:-1]
        self._previous: Sample | None = None
        self._lock = threading.Lock()  # a deque cannot be copied while another thread appends

    def record(
        self, sample: Sample, wall_s: float, state: Callable[[], dict | None] | None = None
    ) -> None:
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
        encoded = _json(new)
        described = _json(state()) if state is not None else b"null"
        self._previous = sample
        with self._lock:
            self._points.append((new, encoded))
            self._state = described

    def _since(self, after: float | None) -> list[tuple[dict, bytes]]:
        with self._lock:
            points = list(self._points)
        return points if after is None else [p for p in points if p[0]["t"] > after]

    def since(self, after: float | None = None) -> list[dict]:
        """The points taken after Unix time ``after`` (all of them when None), oldest first."""
        return [p for p, _ in self._since(after)]

    def body(self, after: float | None = None) -> bytes:
        """The ``/history`` document: the points after ``after`` and the newest state."""
        points = b",".join(encoded for _, encoded in self._since(after))
        with self._lock:
            state = self._state
        return self._head + b',"latest":' + state + b',"points":[' + points + b"]}"
