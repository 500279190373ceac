"""The figures document: what ``run_bench`` returns and ``--json`` writes, as typed dicts.

It crosses modules (the steps fill it, ``report`` reads it, the CLI writes it) and stays a plain
dict at run time, so the JSON keys are the keys declared here. Latencies are in ns, rates per
second; a figure that came out NaN or infinite is None in the finished document.
"""

from __future__ import annotations

from typing import NotRequired, TypedDict


class Percentiles(TypedDict):
    p50: float
    p99: float


class Tail(TypedDict):
    p50: float
    p99: float
    p999: float
    max: float


class Hiccups(TypedDict):
    """One CPU under the hiccup probe (``jitter.measure_jitter``)."""

    p50: float
    p99: float
    p999: float
    max: float
    gaps_over_threshold_per_s: float
    time_lost_pct: float


class HttpLoad(TypedDict, total=False):
    """``hey_latency``: either ``error`` alone, or the counts and percentiles (ms)."""

    error: str
    requests: int
    concurrency: int
    p50_ms: float
    p99_ms: float
    ok: int
    errors: int


class E2ERun(TypedDict):
    """One pipeline run at a steady offered rate (``e2e.measure_e2e``)."""

    p50: float | None
    p90: float | None
    p99: float | None
    p999: float | None
    max: float | None
    drops: int
    orders: int
    messages: int
    achieved_msgs_per_s: float
    scrapes: NotRequired[int]  # with /metrics scraped during the run
    scrape_errors: NotRequired[int]
    page_requests: NotRequired[int]  # with dashboard pages open during the run
    page_errors: NotRequired[int]
    pages_error: NotRequired[str]  # why no page could be opened (hey missing)
    metrics_under_load: NotRequired[HttpLoad]  # with hey loading /metrics during the run


class ScrapeRuns(TypedDict):
    """Tick-to-order p99 of the interference runs, alone and with the API in use beside them."""

    p99_unscraped_ns: list[float]
    p99_scraped_ns: list[float]  # /metrics scraped at 10 Hz
    p99_paged_ns: list[float]  # ten dashboard pages open (run.DASHBOARD_PAGES)
    scrapes_last_run: NotRequired[int]
    scrape_errors_last_run: NotRequired[int]
    page_requests_last_run: NotRequired[int]
    page_errors_last_run: NotRequired[int]
    pages_error: NotRequired[str]  # why the paged runs had no pages: no interference figure


class Floor(TypedDict):
    """The one-cache-line ping-pong: untimed (every "x floor" ratio's floor) and timed."""

    untimed_mean: float  # a batch's time over its round trips, no clock read inside the loop
    p50: float  # timed: two clock reads and a histogram sample per round trip
    p99: float


class Machine(TypedDict):
    cpu_model: str
    cores: int | None
    kernel: str
    arch: str


class Figures(TypedDict):
    """The whole document, keys in the order they are written."""

    machine: Machine
    cpus: list[int]
    quick: bool
    hiccups_ns: dict[str, Hiccups]  # by CPU number
    floor_rtt_ns: Floor
    clock_read_ns: float  # one clock read: every timed latency figure pays two
    ring_items_per_s: float
    ring_batch_items_per_s: float
    ring_rtt_ns: Tail
    mpqueue_items_per_s: float
    mpqueue_rtt_ns: Percentiles
    cpp_ring_items_per_s: NotRequired[float]  # the C++ figures, or cpp_ring_error
    cpp_ring_batch_items_per_s: NotRequired[float]
    cpp_ring_rtt_ns: NotRequired[Tail]
    cpp_ring_error: NotRequired[str]
    book_updates_per_s: float
    inference_per_s: float
    order_book_msgs_per_s: float  # LOBSTER-like order events (bench.order_events) on one core
    backtest_events_per_s: float  # the same events backtested (service.research) on one core
    e2e_layout: dict[str, int]  # stage -> CPU
    e2e_split_layout: dict[str, int]
    e2e_split: dict[str, E2ERun]  # by offered rate, msgs/s
    e2e: dict[str, E2ERun]
    scrape_interference: float | None
    dashboard_interference: float | None  # tick-to-order p99 with ten pages open / without
    scrape_interference_runs: ScrapeRuns
    metrics_under_load: HttpLoad
    metrics_render_cpu_us: float  # CPU per /metrics exposition, 8 instruments (e2e)
    stage_cost_ns: dict[str, float]  # per message, one core (capacity.measure_stage_costs)
    rate_sweep: dict[str, dict[str, E2ERun]]  # by source ("simulator", "replay"), then rate
    # by source: the highest offered rate with no drops and tick-to-order p99 <= P99_BOUND_NS
    max_sustained_rate_msgs_per_s: dict[str, int]
    alternating_runs: dict[str, list[float]]  # items/s of each turn (run.ALTERNATING)
    ratios: dict[str, float | None]  # name -> value (report.ratios)
    ratio_spread: dict[str, list[float]]  # a paired ratio's [lowest, highest] over the turns


def percentiles(summary: dict[str, float]) -> Percentiles:
    """p50 and p99 of a histogram summary (``contracts.buckets.summary``)."""
    return {"p50": float(summary["p50"]), "p99": float(summary["p99"])}


def tail(summary: dict[str, float]) -> Tail:
    """p50, p99, p99.9 and max of a histogram summary."""
    return {
        "p50": float(summary["p50"]),
        "p99": float(summary["p99"]),
        "p999": float(summary["p999"]),
        "max": float(summary["max"]),
    }
