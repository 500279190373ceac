"""The engine's stats block in the Prometheus text format, for the telemetry API's GET /metrics.

The family names, types, help texts and labels come from ``contracts.metric_names``
(``FAMILIES``); this module fills them with one sample of the engine.

``TradingCollector`` is a prometheus_client custom collector: each scrape takes one sample of the
engine (a lock-free copy of the stats block) and turns it into metric families. Nothing here runs
on the hot path: the stages only count into the block, and the cost of a scrape (a few hundred
samples) is paid by the telemetry process on the housekeeping core.

Latency histograms are exported exactly, never re-observed: the engine's log-linear buckets hold
integer nanoseconds, so the number of observations at or below a bucket's upper edge ``high`` is
exactly the cumulative count up to that bucket, and ``le = high / 1e9`` seconds is an honest
Prometheus bucket. The export keeps a fixed ladder of those edges (``LADDER_NS``: the ones nearest
100 ns, 200 ns, 500 ns, ... 10 ms) rather than all 528, to keep the series count bounded. The
tick-to-order histogram also gets a boundary at each SLO threshold, from the exact counts the
gateway keeps there (``stats_layout.SLO_TICK_TO_ORDER_WITHIN``).

Each histogram is also exposed as a summary, ``trading_<name>_recent_seconds``: quantiles over
the telemetry API's recent window (the last one to two sampling intervals), with the cumulative
count and sum, as a client-side Prometheus summary would have them. The CloudWatch agent drops
histograms but keeps summaries, so this is how latency percentiles reach CloudWatch.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterable, Iterator
from typing import Any

import numpy as np
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_PLAIN_0_0_4
from prometheus_client.metrics_core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
)
from prometheus_client.metrics_core import Metric as PromFamily
from prometheus_client.utils import floatToGoString

import service
from contracts import stats_layout as L
from contracts.buckets import HIST_SUM, HIST_WORDS, N_BUCKETS, bucket_bounds, percentiles
from contracts.metric_names import (
    FAMILIES,
    PREFIX,
    RECENT_QUANTILES,
    FamilySpec,
    prometheus_name,
    recent_name,
)
from contracts.stages import STAGES
from service.config import Config
from service.telemetry.engine_view import Interval, Sample

# What GET /metrics may answer with. prometheus_client 0.26's CONTENT_TYPE_LATEST says
# version=1.0.0 (the UTF-8 names revision); for our names, all legacy-valid, generate_latest
# writes the same body either way. 0.0.4 is the version every text-format scraper knows by name
# (Debian's Prometheus 2.42 here accepts both: tests/service/telemetry/test_prometheus.py serves
# this one).
CONTENT_TYPE = CONTENT_TYPE_PLAIN_0_0_4

NS_PER_S = 1e9
# One scrape's families by exposed name: counter, gauge, histogram and summary families of
# prometheus_client, whose add_metric signatures differ (hence Any).
Families = dict[str, Any]
HUGEPAGES_SYSFS = "/sys/kernel/mm/hugepages/hugepages-2048kB"
_LOWS, _HIGHS = bucket_bounds()

# The exported bucket edges: for each target, the engine bucket upper edge nearest to it
# (ties go to the lower edge). 100 ns .. 10 ms covers the latencies at stake on this path.
LADDER_TARGETS_NS = (
    100,
    200,
    500,
    1_000,
    2_000,
    5_000,
    10_000,
    20_000,
    50_000,
    100_000,
    200_000,
    500_000,
    1_000_000,
    2_000_000,
    5_000_000,
    10_000_000,
)
# the last bucket's upper edge is "infinity" (int64 max): never a ladder edge
_LADDER_BUCKETS = np.array(
    sorted({int(np.argmin(np.abs(_HIGHS[:-1] - t))) for t in LADDER_TARGETS_NS}), dtype=np.int64
)
LADDER_NS = tuple(int(_HIGHS[i]) for i in _LADDER_BUCKETS)
"""Upper edges (ns, inclusive) of the engine buckets exported as ``le`` boundaries."""


def _new_family(spec: FamilySpec) -> PromFamily:
    if spec.kind == "summary":  # SummaryMetricFamily cannot carry quantiles: build it by hand
        return PromFamily(spec.name, spec.help, "summary")
    cls = {
        "counter": CounterMetricFamily,
        "gauge": GaugeMetricFamily,
        "histogram": HistogramMetricFamily,
    }[spec.kind]
    return cls(spec.name, spec.help, labels=list(spec.labels))


def histogram_buckets(
    hist: np.ndarray, exact_at: Iterable[tuple[int, int]] = ()
) -> list[tuple[float, int]]:
    """Cumulative ``(le seconds, count)`` pairs of one histogram's words, ending with +Inf.

    ``hist`` is the ``HIST_WORDS`` words of an engine histogram. ``exact_at`` adds boundaries
    that are not bucket edges: ``(threshold_ns, observations <= threshold)`` pairs, threshold 0
    meaning unused. Such a count is read at a slightly different instant than the buckets, so
    it is clamped into what the buckets allow at that threshold: between the cumulative count
    below the bucket holding it and the count through that bucket.
    """
    cumulative = np.cumsum(hist[:N_BUCKETS])
    points = {int(_HIGHS[i]): int(cumulative[i]) for i in _LADDER_BUCKETS}
    for threshold, within in exact_at:
        threshold = int(threshold)
        if threshold <= 0 or threshold in points:  # unused, or a bucket edge already exact
            continue
        k = int(np.searchsorted(_HIGHS, threshold))  # first bucket whose high >= threshold
        below = int(cumulative[k - 1]) if k else 0
        points[threshold] = min(max(int(within), below), int(cumulative[k]))
    result = []
    running = 0
    for le_ns, count in sorted(points.items()):
        # two thresholds in one bucket were read one after the other: keep them in order
        running = max(running, count)
        result.append((le_ns / NS_PER_S, running))
    result.append((math.inf, int(cumulative[-1])))
    return result


class TradingCollector:
    """prometheus_client collector of the engine named by ``config``.

    ``sample_fn()`` returns the latest ``service.telemetry.engine_view.Sample``; each ``collect()``
    (one scrape) calls it exactly once, so every figure of a scrape comes from one reading.
    """

    def __init__(
        self,
        sample_fn: Callable[[], Sample],
        config: Config,
        window_fn: Callable[[Sample], Interval | None] | None = None,
        host_report_fn: Callable[[], dict | None] | None = None,
        hugepages_dir: str = HUGEPAGES_SYSFS,
    ):
        self._sample_fn = sample_fn
        self._config = config
        self._window_fn = window_fn  # sample -> the recent window ending at it, for summaries
        self._host_report_fn = host_report_fn  # -> the latest check-host report (JSON), or None
        self._hugepages_dir = hugepages_dir
        # (owner pid, monotonic start) -> wall-clock start: converted once per run, so the
        # exported start time does not wobble with the two clocks' reads from scrape to scrape
        self._start: tuple[tuple[int, int], float] | None = None

    def describe(self) -> list[PromFamily]:
        """The families without samples: registration learns the names without a scrape."""
        return [_new_family(spec) for spec in FAMILIES]

    def collect(self) -> Iterator[PromFamily]:
        sample = self._sample_fn()
        families = {spec.name: _new_family(spec) for spec in FAMILIES}
        self._engine(sample, families)
        if sample.running and sample.block is not None:
            self._catalog(sample.block, families)
            window = self._window_fn(sample) if self._window_fn else None
            if window is not None and window.available:
                self._recent(sample.block, window, families)
        self._host(families)
        # a family with no samples (engine absent, no heartbeat yet) is left out altogether
        yield from (family for family in families.values() if family.samples)

    def _engine(self, sample: Sample, families: Families) -> None:
        # up: running with a fresh heartbeat (the bound /ready uses), not merely "running"
        bound = self._config.telemetry.ready_heartbeat_s
        live = [sample.stage_live(i, bound) for i in range(len(STAGES))]
        up = sample.running and all(live)
        families[f"{PREFIX}up"].add_metric([], 1.0 if up else 0.0)
        families[f"{PREFIX}build_info"].add_metric([service.__version__], 1.0)
        for i, stage in enumerate(STAGES):
            families[f"{PREFIX}stage_up"].add_metric([stage], float(live[i]))
            age = sample.heartbeat_age_s(i)
            if age is not None:
                families[f"{PREFIX}stage_heartbeat_age_seconds"].add_metric([stage], age)
        if sample.running and sample.started_ns > 0:
            families[f"{PREFIX}engine_start_time_seconds"].add_metric(
                [], self._start_time(sample.owner_pid, sample.started_ns)
            )

    def _host(self, families: Families) -> None:
        report = self._host_report_fn() if self._host_report_fn else None
        if report is not None:  # none before the first check finishes: no sample, not a guess
            families[f"{PREFIX}host_tuned"].add_metric([], 1.0 if report["ok"] else 0.0)
            failed = report["summary"]["failed"]
            families[f"{PREFIX}host_checks_failed"].add_metric([], float(failed))
        for name, file in (
            ("hugepages_free", "free_hugepages"),
            ("hugepages_reserved", "nr_hugepages"),
        ):
            try:
                with open(f"{self._hugepages_dir}/{file}") as f:
                    value = float(f.read().strip())
            except (OSError, ValueError):
                continue  # a kernel without 2 MiB pages: the family stays absent
            families[f"{PREFIX}{name}"].add_metric([], value)

    def _start_time(self, owner_pid: int, started_ns: int) -> float:
        """Wall-clock seconds of a monotonic start time (the segments' creation)."""
        key = (owner_pid, started_ns)
        if self._start is None or self._start[0] != key:
            age_ns = time.monotonic_ns() - started_ns
            self._start = (key, (time.time_ns() - age_ns) / NS_PER_S)
        return self._start[1]

    def _recent(self, block: np.ndarray, window: Interval, families) -> None:
        for metric in L.CATALOG:
            if metric.kind != "histogram":
                continue
            recent = window.histogram(metric.offset)
            if recent is None or not recent[:N_BUCKETS].any():
                continue  # nothing recorded in the window: no quantile to tell
            name = recent_name(metric)
            family = families[name]
            for q, value in percentiles(recent, RECENT_QUANTILES).items():
                family.add_sample(name, {"quantile": floatToGoString(q)}, value / NS_PER_S)
            total = block[metric.offset : metric.offset + HIST_WORDS]
            family.add_sample(f"{name}_count", {}, float(total[:N_BUCKETS].sum()))
            family.add_sample(f"{name}_sum", {}, float(total[HIST_SUM]) / NS_PER_S)

    def _catalog(self, block: np.ndarray, families: Families) -> None:
        n_instruments = self._config.feed.instruments
        for metric in L.CATALOG:
            family = families[prometheus_name(metric)]
            if metric.kind == "histogram":
                hist = block[metric.offset : metric.offset + HIST_WORDS]
                exact_at: Iterable[tuple[int, int]] = ()
                if metric.offset == L.H_TICK_TO_ORDER:
                    slots = range(L.MAX_SLO_THRESHOLDS)
                    exact_at = [
                        (block[L.SLO_THRESHOLDS_NS + j], block[L.SLO_TICK_TO_ORDER_WITHIN + j])
                        for j in slots
                    ]
                buckets = [
                    (floatToGoString(le), count) for le, count in histogram_buckets(hist, exact_at)
                ]
                family.add_metric([], buckets, float(hist[HIST_SUM]) / NS_PER_S)
            elif metric.words == 1:
                family.add_metric([], float(block[metric.offset]))
            else:
                # bounded labels only: every reject reason; the configured instruments
                labels = (
                    L.REJECT_REASONS
                    if metric.label == "reason"
                    else range(min(n_instruments, metric.words))
                )
                for i, label in enumerate(labels):
                    family.add_metric([str(label)], float(block[metric.offset + i]))


def render(
    sample: Sample,
    config: Config,
    window: Interval | None = None,
    host_report: dict | None = None,
) -> bytes:
    """The exposition (``CONTENT_TYPE``) of one sample, from a registry holding only it;
    with ``window`` (ending at ``sample``) the recent summaries too, and with ``host_report``
    (a check-host report as JSON) the host's tuning verdict."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(
        TradingCollector(lambda: sample, config, lambda _: window, lambda: host_report)
    )
    return generate_latest(registry)
