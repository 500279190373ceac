"""What a run measured, as plain data (for ``--json``) and as tables (for people).

``run_figures`` is the document ``run --json`` writes and ``run --report`` draws
(``service.telemetry.local_report``): the counters, rates, latency summaries and the non-empty
buckets of each latency histogram, the per-second timeline (``service.telemetry.timeline``),
and a summary of the config the run used.
"""

from __future__ import annotations

import socket
import sys

from rich.console import Console
from rich.table import Table

from contracts import stats_layout as L
from contracts.buckets import HIST_MAX, HIST_SUM, N_BUCKETS, bucket_bounds
from contracts.documents import finite_or_none
from service.runtime.stats import describe, histogram

LATENCIES = ("tick_to_order", "md_to_engine", "order_wait", "feed_lag")
RUN_DOCUMENT = "trading-service run"  # the "document" key: what wrote it


def run_figures(result, config, timeline=None, started_at: str | None = None) -> dict:
    """The run's document; ``timeline``: the sampler's points (none when it did not run)."""
    d = describe(result.stats, result.n_instruments)
    elapsed = max(result.elapsed_s, 1e-9)
    figures = {
        "document": RUN_DOCUMENT,
        "host": socket.gethostname(),
        "started_at": started_at,
        "exit_code": result.exit_code,
        "problems": result.problems,
        "elapsed_s": round(result.elapsed_s, 3),
        "offered_rate_msgs_per_s": config.feed.rate,
        "feed_source": config.feed.source,
        # a replay at the recording's own pace (x speed) is not offered at a fixed rate
        "replay_speed": (
            config.feed.replay_speed
            if config.feed.source == "replay" and config.feed.replay_pace == "recorded"
            else None
        ),
        "processes": [
            {"cpu": core, "stages": list(stages)} for core, stages in config.process_groups()
        ],
        "rates_per_s": {
            "md_messages": d["md_messages_processed"] / elapsed,
            "orders": d["orders_sent"] / elapsed,
            "fills": d["fills"] / elapsed,
        },
        "counters": {m.name: d[m.name] for m in L.CATALOG if m.kind == "counter"},
        "positions": d["position"],
        "latency_ns": {name: d[name] for name in LATENCIES},
        "latency_histograms_ns": {
            m.name: sparse_histogram(histogram(result.stats, m.offset))
            for m in L.CATALOG
            if m.name in LATENCIES
        },
        "stages": d["stages"],
        "timeline": list(timeline or []),
        "config": config_summary(config),
    }
    return finite_or_none(figures)


def config_summary(config) -> dict:
    """The settings that shape a run's figures, as the report's config table shows them."""
    return {
        "config_file": config.source,
        "shm_prefix": config.service.shm_prefix,
        "stats_interval_us": config.service.stats_interval_us,
        "cores": dict(config.cores),
        "feed": {
            "source": config.feed.source,
            "rate": config.feed.rate,
            "instruments": config.feed.instruments,
            "replay_file": config.feed.replay_file if config.feed.source == "replay" else None,
            "burst_probability": config.feed.burst_probability,
        },
        "md_ring_capacity": config.rings.md_capacity,
        "engine": {
            "signal_threshold": config.engine.signal_threshold,
            "order_style": config.engine.order_style,
            "model_file": config.engine.model_file or None,
        },
        "gateway": {
            "exchange": config.gateway.exchange,
            "batch_size": config.gateway.batch_size,
            "batch_timeout_us": config.gateway.batch_timeout_us,
        },
        "risk_orders_per_second": config.risk.orders_per_second,
        "slo_us": {
            "tick_to_order_p50": config.slo.tick_to_order_p50_us,
            "tick_to_order_p99": config.slo.tick_to_order_p99_us,
            "tick_to_order_p999": config.slo.tick_to_order_p999_us,
        },
    }


def sparse_histogram(hist) -> dict:
    """A histogram's non-empty buckets as ``[index, lowest ns, highest ns, count]`` rows, with
    its sum and max: enough for a reader (``fab bench``'s report) to draw it and to recompute
    any percentile exactly as ``contracts.buckets.percentiles`` does."""
    lows, highs = bucket_bounds()
    counts = hist[:N_BUCKETS]
    rows = [[int(i), int(lows[i]), int(highs[i]), int(counts[i])] for i in counts.nonzero()[0]]
    return {"buckets": rows, "sum": int(hist[HIST_SUM]), "max": int(hist[HIST_MAX])}


def _ns(value) -> str:
    if value is None:
        return "-"
    if value >= 1e6:
        return f"{value / 1e6:.2f} ms"
    if value >= 1e3:
        return f"{value / 1e3:.2f} µs"
    return f"{value:.0f} ns"


def print_run_report(figures: dict, console: Console | None = None) -> None:
    # piped output is read by people too (logs, CI): do not squeeze it to 80 columns
    console = console or Console(width=None if sys.stdout.isatty() else 110)
    c = figures["counters"]
    pace = (
        f"at {figures['offered_rate_msgs_per_s'] or 'max'} msgs/s"
        if figures.get("replay_speed") is None
        else f"at the recording's pace x{figures['replay_speed']:g}"
    )
    head = Table(
        title=f"trading-service run: {figures['elapsed_s']} s, {figures['feed_source']} {pace}"
    )
    head.add_column("figure", no_wrap=True)
    head.add_column("value", justify="right")
    rows = [
        ("market data processed", f"{c['md_messages_processed']:,}"),
        ("  per second", f"{figures['rates_per_s']['md_messages']:,.0f}"),
        ("dropped (ring full)", f"{c['md_messages_dropped']:,}"),
        ("sequence gaps / lost", f"{c['sequence_gaps']:,} / {c['md_messages_lost']:,}"),
        ("orders sent", f"{c['orders_sent']:,}"),
        ("fills / cancels", f"{c['fills']:,} / {c['cancels']:,}"),
        ("batches", f"{c['order_batches']:,}"),
    ]
    rejects = c["orders_rejected"]
    rows += [(f"rejected: {reason}", f"{n:,}") for reason, n in rejects.items() if n]
    for label, value in rows:
        head.add_row(label, value)
    console.print(head)
    lat = Table(title="latency from intended send time (no coordinated omission)")
    lat.add_column("path", no_wrap=True, min_width=13)
    for col in ("count", "p50", "p90", "p99", "p99.9", "max"):
        lat.add_column(col, justify="right")
    for name, h in figures["latency_ns"].items():
        lat.add_row(
            name, f"{h['count']:,}", *(_ns(h[k]) for k in ("p50", "p90", "p99", "p999", "max"))
        )
    console.print(lat)
    positions = {k: v for k, v in figures["positions"].items() if v}
    if positions:
        console.print(
            "positions (lots): " + ", ".join(f"#{k} {v:+d}" for k, v in positions.items())
        )
