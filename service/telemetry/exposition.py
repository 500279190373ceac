"""The engine's stats block in the Prometheus text format, for the telemetry API's GET /metrics.

The family names, types, help texts and labels come from ``contracts.metric_names``
(``FAMILIES``); this module fills them with one sample of the engine.

Two renderings of one sample (a lock-free copy of the stats block), byte for byte the same:

- ``render``, what GET /metrics serves: the lines come from a ``text_format.Template`` built
  once per instrument count and set of SLO boundaries (``_Layout``), and per scrape only the
  values are computed, in one call of ``service.kernels.exposition_values`` for every histogram
  (issue 16: at most 100 us of CPU a scrape; ``generate_latest`` spends ~2 ms checking and
  formatting the same lines each time).
- ``render_reference``: ``generate_latest`` over ``TradingCollector``, a prometheus_client
  custom collector that builds the metric families the plain way. It is the definition the
  tests hold ``render`` to, so prometheus_client stays the source of truth for the format.

Nothing here runs on the hot path: the stages only count into the block, and the cost of a
scrape is paid by the telemetry process on the housekeeping core.

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

import bisect
import functools
import math
import os
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
from contracts.buckets import (
    HIST_SUM,
    HIST_WORDS,
    N_BUCKETS,
    bucket_bounds,
    percentiles,
)
from contracts.metric_names import (
    FAMILIES,
    PREFIX,
    RECENT_QUANTILES,
    FamilySpec,
    prometheus_name,
    recent_name,
)
from contracts.stages import STAGES, STATE_NAMES
from service.config import Config
from service.kernels import exposition_values as V
from service.telemetry.engine_view import Interval, Sample
from service.telemetry.text_format import Template, go_float

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
HUGEPAGES_FILES = (("hugepages_free", "free_hugepages"), ("hugepages_reserved", "nr_hugepages"))
_LOWS, _HIGHS = bucket_bounds()
_HIGHS_LIST = _HIGHS.tolist()

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
_LADDER_SET = frozenset(LADDER_NS)
_SLO_WORDS = np.concatenate(
    [
        L.SLO_THRESHOLDS_NS + np.arange(L.MAX_SLO_THRESHOLDS),
        L.SLO_TICK_TO_ORDER_WITHIN + np.arange(L.MAX_SLO_THRESHOLDS),
    ]
)


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
    points.update(slo_points(cumulative, exact_at))
    result = []
    running = 0
    for le_ns, count in sorted(points.items()):
        # two thresholds in one bucket were read one after the other: keep them in order
        running = max(running, count)
        result.append((le_ns / NS_PER_S, running))
    result.append((math.inf, int(cumulative[-1])))
    return result


def slo_points(cumulative: np.ndarray, exact_at: Iterable[tuple[int, int]]) -> dict[int, int]:
    """The boundaries ``exact_at`` adds to a histogram whose cumulative bucket counts are
    ``cumulative``: threshold ns -> observations at or below it (see ``histogram_buckets``),
    in the order given; the first of two equal thresholds counts."""
    points: dict[int, int] = {}
    for threshold, within in exact_at:
        threshold = int(threshold)
        if threshold <= 0 or threshold in _LADDER_SET or threshold in points:
            continue  # unused, a bucket edge already exact, or given twice
        k = bisect.bisect_left(_HIGHS_LIST, threshold)  # first bucket whose high >= threshold
        below = int(cumulative[k - 1]) if k else 0
        points[threshold] = min(max(int(within), below), int(cumulative[k]))
    return points


def tick_to_order_slo(block: np.ndarray) -> list[tuple[int, int]]:
    """(threshold ns, observations within) of each SLO slot the gateway counts (0: unused)."""
    words = block[_SLO_WORDS].tolist()  # one gather rather than a read per word
    return list(zip(words[: L.MAX_SLO_THRESHOLDS], words[L.MAX_SLO_THRESHOLDS :], strict=True))


_starts: dict[tuple[int, int], float] = {}


def start_time(owner_pid: int, started_ns: int) -> float:
    """Wall-clock seconds of a run's monotonic start time (its segments' creation), converted
    once per run: the exported start time does not wobble with the two clocks' reads from
    scrape to scrape (and both renderings of one run agree)."""
    key = (owner_pid, started_ns)
    if key not in _starts:
        _starts.clear()  # one run at a time: keep only the latest
        age_ns = time.monotonic_ns() - started_ns
        _starts[key] = (time.time_ns() - age_ns) / NS_PER_S
    return _starts[key]


_open_files: dict[str, int] = {}


def read_hugepages(hugepages_dir: str, file: str) -> float | None:
    """A 2 MiB hugepages count from sysfs, None where the kernel has no such pages.

    The file stays open and is read again from its start on each call (a sysfs attribute is
    made afresh by every read at offset 0): one pread per scrape instead of an open, a read
    and a close, and no text-mode file object, which cost more than the rest of the host's
    figures together.
    """
    path = f"{hugepages_dir}/{file}"
    fd = _open_files.get(path)
    if fd is None:
        try:
            fd = os.open(path, os.O_RDONLY)
        except OSError:
            return None
        if len(_open_files) >= 8:  # only tests read other directories: keep a few
            for old in _open_files.values():
                os.close(old)
            _open_files.clear()
        _open_files[path] = fd
    try:
        return float(os.pread(fd, 64, 0).strip())
    except (OSError, ValueError):
        return None


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
                [], start_time(sample.owner_pid, sample.started_ns)
            )

    def _host(self, families: Families) -> None:
        report = self._host_report_fn() if self._host_report_fn else None
        if report is not None:  # none before the first check finishes: no sample, not a guess
            families[f"{PREFIX}host_tuned"].add_metric([], 1.0 if report["ok"] else 0.0)
            failed = report["summary"]["failed"]
            families[f"{PREFIX}host_checks_failed"].add_metric([], float(failed))
        for name, file in HUGEPAGES_FILES:
            value = read_hugepages(self._hugepages_dir, file)
            if value is not None:  # a kernel without 2 MiB pages: the family stays absent
                families[f"{PREFIX}{name}"].add_metric([], value)

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
                    exact_at = tick_to_order_slo(block)
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


def render_reference(
    sample: Sample,
    config: Config,
    window: Interval | None = None,
    host_report: dict | None = None,
    hugepages_dir: str = HUGEPAGES_SYSFS,
) -> bytes:
    """What ``render`` must write, the slow way: ``generate_latest`` over a registry holding
    only a ``TradingCollector`` of ``sample`` (~2 ms). The tests' oracle for ``render``."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(
        TradingCollector(
            lambda: sample, config, lambda _: window, lambda: host_report, hugepages_dir
        )
    )
    return generate_latest(registry)


# ------------------------------------------------------------------- the per-scrape fast path

_RECENT_Q = np.array(RECENT_QUANTILES)
_HISTOGRAMS = [m for m in L.CATALOG if m.kind == "histogram"]
_HIST_OFFSETS = np.array([m.offset for m in _HISTOGRAMS], dtype=np.int64)
_LADDER_NS = np.array(LADDER_NS, dtype=np.int64)
# the columns of exposition_values' rows: the ladder, +Inf and _count, then the window's
_N_LADDER = len(LADDER_NS)
_HIST_COLUMNS = _N_LADDER + V.QUANTILE + len(RECENT_QUANTILES)
_RECENT_COLUMN = _N_LADDER + V.RECENT
_QUANTILE_COLUMNS = slice(_N_LADDER + V.QUANTILE, _HIST_COLUMNS)


# each bucket's top in seconds, as a quantile at it is written
_EDGE_TEXT = [go_float(float(high) / NS_PER_S) for high in _HIGHS_LIST]
# values that repeat from scrape to scrape (hugepages, failed checks): written once each
_go_float_of = functools.lru_cache(maxsize=256)(go_float)


@functools.lru_cache(maxsize=1)
def _start_text(owner_pid: int, started_ns: int) -> bytes:
    return go_float(start_time(owner_pid, started_ns))


_STAGE_WORDS = np.array([[s + L.STATE, s + L.HEARTBEAT_NS] for s in L.SECTION_START]).ravel()
_TICK_TO_ORDER = next(h for h, m in enumerate(_HISTOGRAMS) if m.offset == L.H_TICK_TO_ORDER)


class _Layout:
    """Where each figure of a scrape goes: the ``Template`` of every line /metrics can hold for
    ``n_instruments`` and the tick-to-order histogram's extra boundaries ``slo_edges`` (ns),
    and the slots (line numbers) of each figure. Families and lines are built exactly as
    ``TradingCollector`` builds them, in the same order, with placeholder values."""

    def __init__(self, n_instruments: int, slo_edges: tuple[int, ...]):
        families = {spec.name: _new_family(spec) for spec in FAMILIES}
        self._slots = 0  # slots taken so far: families are filled in exposition order
        self._engine(families)
        self._catalog(families, n_instruments, slo_edges)
        self._recent(families)
        self._host(families)
        self.template = Template(families.values())
        assert self.template.slots == self._slots

    def _take(self, count: int) -> np.ndarray:
        """The next ``count`` slots."""
        first = self._slots
        self._slots += count
        return np.arange(first, self._slots)

    def _engine(self, families: Families) -> None:
        families[f"{PREFIX}up"].add_metric([], 0)
        families[f"{PREFIX}build_info"].add_metric([service.__version__], 0)
        for stage in STAGES:
            families[f"{PREFIX}stage_up"].add_metric([stage], 0)
        # up, build_info and stage_up: in every scrape
        self.always = self._take(2 + len(STAGES))
        for stage in STAGES:
            families[f"{PREFIX}stage_heartbeat_age_seconds"].add_metric([stage], 0.0)
        self.heartbeat_age = self._take(len(STAGES)).tolist()
        families[f"{PREFIX}engine_start_time_seconds"].add_metric([], 0.0)
        self.start_time = int(self._take(1)[0])

    def _catalog(self, families: Families, n_instruments: int, slo_edges: tuple[int, ...]):
        first = self._slots
        scalar_slots: list[int] = []
        scalar_words: list[int] = []
        ladder: list[list[int]] = []
        infinity: list[int] = []
        count: list[int] = []
        total: list[int] = []
        self.slo_slots: dict[int, int] = {}
        for metric in L.CATALOG:
            family = families[prometheus_name(metric)]
            if metric.kind == "histogram":
                edges = set(LADDER_NS)
                if metric.offset == L.H_TICK_TO_ORDER:
                    edges |= set(slo_edges)
                ordered = sorted(edges)
                buckets = [(floatToGoString(e / NS_PER_S), 0) for e in ordered]
                family.add_metric([], [*buckets, ("+Inf", 0)], 0.0)
                slots = self._take(len(ordered) + 3)  # the buckets, +Inf, count, sum
                at = dict(zip(ordered, slots.tolist(), strict=False))
                ladder.append([at[e] for e in LADDER_NS])
                if metric.offset == L.H_TICK_TO_ORDER:
                    self.slo_slots = {e: at[e] for e in slo_edges}
                infinity.append(slots[-3])
                count.append(slots[-2])
                total.append(slots[-1])
            else:
                if metric.words == 1:
                    labels: Iterable[object] = [None]
                elif metric.label == "reason":
                    labels = L.REJECT_REASONS
                else:
                    labels = range(min(n_instruments, metric.words))
                for i, label in enumerate(labels):
                    family.add_metric([] if label is None else [str(label)], 0)
                    scalar_words.append(metric.offset + i)
                scalar_slots += self._take(len(scalar_words) - len(scalar_slots)).tolist()
        self.catalog = slice(first, self._slots)
        self.scalar_slots = np.array(scalar_slots)
        self.scalar_words = np.array(scalar_words)
        # [histogram, ladder edge, then +Inf and _count]: exposition_values' first columns
        self.hist_slots = np.column_stack([np.array(ladder), infinity, count])
        self.sum = total

    def _recent(self, families: Families) -> None:
        self.recent, self.quantiles, self.recent_count, self.recent_sum = [], [], [], []
        for metric in _HISTOGRAMS:
            name = recent_name(metric)
            family = families[name]
            for q in RECENT_QUANTILES:
                family.add_sample(name, {"quantile": floatToGoString(q)}, 0.0)
            family.add_sample(f"{name}_count", {}, 0)
            family.add_sample(f"{name}_sum", {}, 0.0)
            slots = self._take(len(RECENT_QUANTILES) + 2)
            self.recent.append(slice(int(slots[0]), int(slots[-1]) + 1))
            self.quantiles.append(slots[:-2].tolist())
            self.recent_count.append(int(slots[-2]))
            self.recent_sum.append(int(slots[-1]))
        self.recent_all = slice(self.recent[0].start, self.recent[-1].stop)
        self.recent_count_slots = np.array(self.recent_count)

    def _host(self, families: Families) -> None:
        families[f"{PREFIX}host_tuned"].add_metric([], 0)
        families[f"{PREFIX}host_checks_failed"].add_metric([], 0.0)
        self.host_tuned, self.host_checks_failed = self._take(2).tolist()
        self.hugepages = {}
        for name, file in HUGEPAGES_FILES:
            families[f"{PREFIX}{name}"].add_metric([], 0.0)
            self.hugepages[file] = int(self._take(1)[0])


@functools.lru_cache(maxsize=16)
def _layout(n_instruments: int, slo_edges: tuple[int, ...]) -> _Layout:
    return _Layout(n_instruments, slo_edges)


def render(
    sample: Sample,
    config: Config,
    window: Interval | None = None,
    host_report: dict | None = None,
    hugepages_dir: str = HUGEPAGES_SYSFS,
) -> bytes:
    """The exposition (``CONTENT_TYPE``) of one sample: byte for byte ``render_reference``'s,
    in a fifteenth of its time. With ``window`` (ending at ``sample``) the recent summaries too, and
    with ``host_report`` (a check-host report as JSON) the host's tuning verdict.

    The lines come from a ``Template`` built once per instrument count and set of SLO
    boundaries; per scrape only the values are computed, in one kernel call for every
    histogram (``exposition_values``: ~40 numpy calls before, each mostly call overhead), and
    formatted into it.
    """
    block = sample.block if sample.running else None
    slo: dict[int, int] = {}
    has_window = False
    if block is not None:
        has_window = window is not None and window.available
        now, before = block, block
        if has_window:
            assert window is not None and window.previous is not None  # available: both ends
            now, before = window.current.stats, window.previous.stats
        # every number of the catalog and the recent summaries, in one kernel call
        values = np.empty((len(_HISTOGRAMS), _HIST_COLUMNS), dtype=np.int64)
        seconds = np.empty((len(_HISTOGRAMS), 2), dtype=np.float64)
        slo_rows = np.empty((L.MAX_SLO_THRESHOLDS, 2), dtype=np.int64)
        V.exposition_values(
            block, now, before, has_window, _HIST_OFFSETS, _LADDER_BUCKETS, _LADDER_NS,
            _TICK_TO_ORDER, L.SLO_THRESHOLDS_NS, L.SLO_TICK_TO_ORDER_WITHIN, _RECENT_Q, _HIGHS,
            np.empty(N_BUCKETS, dtype=np.int64), values, seconds, slo_rows,
        )  # fmt: skip
        slo = {threshold: count for threshold, count in slo_rows.tolist() if threshold}
    layout = _layout(config.feed.instruments, tuple(sorted(slo)))
    present = np.zeros(layout.template.slots, dtype=bool)
    ints = np.zeros(layout.template.slots, dtype=np.int64)
    texts: dict[int, bytes] = {}  # the float slots' values, written as floatToGoString would

    _engine(layout, sample, config.telemetry.ready_heartbeat_s, present, ints, texts)
    if sample.running and sample.started_ns > 0:
        present[layout.start_time] = True
        texts[layout.start_time] = _start_text(sample.owner_pid, sample.started_ns)

    if block is not None:  # the catalog (as TradingCollector._catalog)
        present[layout.catalog] = True
        ints[layout.scalar_slots] = block[layout.scalar_words]
        ints[layout.hist_slots] = values[:, : _N_LADDER + 2]  # the ladder, +Inf and _count
        for edge, count in slo.items():
            ints[layout.slo_slots[edge]] = count
        rows = seconds.tolist()
        sums = [go_float(row[V.SUM_S]) for row in rows]
        texts.update(zip(layout.sum, sums, strict=True))
        if has_window:
            _recent(layout, present, ints, texts, (values, rows, sums))

    # the host (as TradingCollector._host)
    if host_report is not None:
        present[[layout.host_tuned, layout.host_checks_failed]] = True
        ints[layout.host_tuned] = bool(host_report["ok"])
        texts[layout.host_checks_failed] = _go_float_of(float(host_report["summary"]["failed"]))
    for file, slot in layout.hugepages.items():
        pages = read_hugepages(hugepages_dir, file)
        if pages is not None:
            present[slot] = True
            texts[slot] = _go_float_of(pages)
    return layout.template.render(present, ints, texts)


def _engine(
    layout: _Layout,
    sample: Sample,
    bound: float,
    present: np.ndarray,
    ints: np.ndarray,
    texts: dict[int, bytes],
) -> None:
    """up, the stages' state and heartbeat ages (as TradingCollector._engine, with
    Sample.stage_live), from one gather of the stages' words."""
    live = [False] * len(STAGES)
    if sample.block is not None:
        words = sample.block[_STAGE_WORDS].tolist()  # each stage's state, then heartbeat
        for stage, slot in enumerate(layout.heartbeat_age):
            beat = words[2 * stage + 1]
            if beat == 0:
                continue  # no heartbeat yet: no age
            age = max(0.0, (sample.taken_ns - beat) / 1e9)
            live[stage] = STATE_NAMES[words[2 * stage]] == "running" and age <= bound
            present[slot] = True
            texts[slot] = go_float(age)
    present[layout.always] = True
    ints[layout.always] = [sample.running and all(live), 1, *live]


def _recent(
    layout: _Layout,
    present: np.ndarray,
    ints: np.ndarray,
    texts: dict[int, bytes],
    scrape: tuple[np.ndarray, list[list[float]], list[bytes]],
) -> None:
    """The recent summaries of every histogram from ``scrape``: ``exposition_values``' rows
    (``values``, ``seconds``: the tests hold them to ``percentiles`` as TradingCollector._recent
    reads them) and each histogram's sum since the start, written."""
    values, seconds, sums = scrape
    recorded = np.flatnonzero(values[:, _RECENT_COLUMN]).tolist()
    if not recorded:
        return  # nothing recorded in the window: no quantile to tell
    buckets = values[:, _QUANTILE_COLUMNS].tolist()
    for h in recorded:
        capped = b""
        # a quantile is its bucket's top (written once, in _EDGE_TEXT) unless the window's
        # maximum caps it (bucket -1)
        for slot, bucket in zip(layout.quantiles[h], buckets[h], strict=True):
            if bucket >= 0:
                texts[slot] = _EDGE_TEXT[bucket]
            else:
                texts[slot] = capped = capped or go_float(seconds[h][V.LARGEST_S])
        texts[layout.recent_sum[h]] = sums[h]
    # a summary's _count is the observations since the start, as a client-side summary's
    ints[layout.recent_count_slots[recorded]] = values[recorded, _N_LADDER + V.TOTAL]
    if len(recorded) == len(_HISTOGRAMS):
        present[layout.recent_all] = True  # the common case, in one write
    else:
        for h in recorded:
            present[layout.recent[h]] = True
