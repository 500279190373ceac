"""The throughput timeline of a run: the stats block sampled once a second, beside the run.

``TimelineSampler(config)`` is a thread that ``trading-service run`` starts before the pipeline
and stops after it. It reads the stats block the way the telemetry API does (an ``EngineView``:
lock-free copies, never a write, nothing inside the pipeline), waits until every stage runs,
and from then on takes one sample a second. Each point is what changed since the sample before,
per second: market data processed and dropped, orders sent, fills, and orders rejected. ``t_s``
counts from the first sample with every stage running, as ``fab bench``'s timeline does. The
thread runs where the supervisor runs (the CPUs no stage uses) and keeps at most a day of
points, so a run that lasts for weeks does not grow without bound.
"""

from __future__ import annotations

import threading
import time
from collections import deque

from contracts import stats_layout as L
from contracts.stages import STAGES
from service.config import Config
from service.telemetry.engine_view import EngineView, Interval, Sample

INTERVAL_S = 1.0
MAX_POINTS = 86_400  # a day of seconds
_FIND_RUNNING_S = 0.05  # how often to look for the stages running, until they do

_BY_NAME = {m.name: m for m in L.CATALOG}
# point key -> counter it is the rate of
RATES = {
    "md_messages_per_s": "md_messages_processed",
    "md_dropped_per_s": "md_messages_dropped",
    "orders_per_s": "orders_sent",
    "fills_per_s": "fills",
    "rejects_per_s": "orders_rejected",
}


def all_running(sample: Sample) -> bool:
    return sample.running and all(sample.stage_state(i) == "running" for i in range(len(STAGES)))


def point(first: Sample, interval: Interval) -> dict[str, float | None]:
    """One timeline point: seconds since ``first``, the interval, and each rate of ``RATES``."""
    out: dict[str, float | None] = {
        "t_s": round((interval.current.taken_ns - first.taken_ns) / 1e9, 3),
        "interval_s": round(interval.interval_s, 3),
    }
    for key, name in RATES.items():
        metric = _BY_NAME[name]
        out[key] = interval.per_second(metric.offset, metric.words)
    return out


class TimelineSampler:
    """Samples the engine ``config`` names once a second from a daemon thread."""

    def __init__(self, config: Config, interval_s: float = INTERVAL_S):
        self._view = EngineView(config)
        self._interval_s = interval_s
        self._stop = threading.Event()
        self._points: deque[dict[str, float | None]] = deque(maxlen=MAX_POINTS)
        self._thread = threading.Thread(target=self._run, name="lowlat-timeline", daemon=True)

    def start(self) -> TimelineSampler:
        self._thread.start()
        return self

    def stop(self) -> list[dict[str, float | None]]:
        """Stop sampling; the points taken, oldest first."""
        self._stop.set()
        self._thread.join()
        return list(self._points)

    def _run(self) -> None:
        first = self._first_running()
        if first is None:
            return
        previous = first
        due_ns = first.taken_ns
        step_ns = int(self._interval_s * 1e9)
        while True:
            due_ns += step_ns
            if self._stop.wait(max(0.0, (due_ns - time.monotonic_ns()) / 1e9)):
                return
            current = self._view.sample()
            interval = Interval(previous, current)
            if not interval.available or not all_running(current):
                return  # the run is draining, over, or another run took its place
            self._points.append(point(first, interval))
            previous = current

    def _first_running(self) -> Sample | None:
        while not self._stop.is_set():
            sample = self._view.sample()
            if all_running(sample):
                return sample
            self._stop.wait(_FIND_RUNNING_S)
        return None
