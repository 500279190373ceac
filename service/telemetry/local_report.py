"""The local report: a run's or a bench's document turned into ``charts.local_report``'s files.

``trading-service run --report DIR`` and ``trading-service report DOC.json --out DIR`` both come
here, so a report drawn later from ``run --json``'s document is the one the run drew. Three
documents are understood, told apart by their keys:

- ``trading-service run --json`` (``service.telemetry.report.run_figures``): the latency
  histograms, the per-second timeline, every counter and the config summary;
- ``trading-service bench --json`` (``service.bench.figures.Figures``): what it has, the
  end-to-end latency percentiles per offered rate and the rate sweep as throughput (it holds
  no histogram buckets and no timeline);
- ``fab bench``'s ``bench.json`` (``ops.bench_doc.BenchDoc``): each offered rate's histogram,
  timeline and percentiles.

Anything else, or one of these with a key missing or of the wrong kind, is a ``LowlatError``:
one line naming the file and what is wrong.
"""

from __future__ import annotations

import json
import statistics
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from charts.draw import (
    HistogramSeries,
    PercentileSeries,
    RateSeries,
    Throughput,
)
from charts.local_report import FILES, LocalReport, render_local_report
from charts.text import fmt_rate, fmt_us, table
from contracts.errors import LowlatError
from service.telemetry.report import LATENCIES

__all__ = ["FILES", "document_kind", "load_document", "local_report", "write_local_report"]

KINDS = {
    "run": "`trading-service run --json`",
    "bench": "`trading-service bench --json`",
    "fab-bench": "`fab bench`'s bench.json",
}
LATENCY_KEYS = (("p50", "p50"), ("p90", "p90"), ("p99", "p99"), ("p999", "p99.9"), ("max", "max"))
TIMELINE_TABLE_MAX = 300  # per-second rows statistics.txt lists in full; beyond, a summary only


class ReportError(LowlatError):
    """A document ``report`` cannot draw; one line."""


def load_document(path: Path) -> dict[str, Any]:
    """The JSON object in ``path``; ReportError when it cannot be read or is not one."""
    try:
        text = Path(path).read_text()
    except FileNotFoundError:
        raise ReportError(f"{path}: no such file; give a run or bench --json document") from None
    except IsADirectoryError:
        raise ReportError(f"{path}: is a directory; give a run or bench --json document") from None
    except OSError as exc:
        raise ReportError(f"{path}: cannot read it ({exc.strerror})") from None
    except UnicodeDecodeError:
        raise ReportError(f"{path}: not text, so not a JSON document") from None
    try:
        doc = json.loads(text)
    except ValueError as exc:
        raise ReportError(f"{path}: not JSON ({exc})") from None
    if not isinstance(doc, dict):
        raise ReportError(
            f"{path}: a JSON {type(doc).__name__}, not a run or bench document (an object)"
        )
    return doc


def document_kind(doc: dict[str, Any]) -> str | None:
    """``run``, ``bench`` or ``fab-bench`` by the keys only that document has; else None."""
    if {"latency_histograms_ns", "counters", "rates_per_s"} <= doc.keys():
        return "run"
    if {"e2e", "rate_sweep", "floor_rtt_ns"} <= doc.keys():
        return "bench"
    if {"runs", "host", "instance_id", "schema"} <= doc.keys():
        return "fab-bench"
    return None


def local_report(doc: dict[str, Any], source: str) -> LocalReport:
    """The report of ``doc`` (read from ``source``, named in errors)."""
    kind = document_kind(doc)
    if kind is None:
        if "rtt_ns" in doc and "tick_to_order_ns" in doc:
            raise ReportError(
                f"{source}: a `bench --transports` document, which has no run to draw; give "
                "a run --json, bench --json or fab bench document"
            )
        keys = ", ".join(sorted(doc)[:6]) or "none"
        raise ReportError(
            f"{source}: neither a run nor a bench document (its keys: {keys}); give what "
            "`trading-service run --json`, `trading-service bench --json` or `fab bench` wrote"
        )
    build: Callable[[dict[str, Any]], LocalReport] = {
        "run": _run_report,
        "bench": _bench_report,
        "fab-bench": _fab_bench_report,
    }[kind]
    try:
        return build(doc)
    except KeyError as exc:
        raise ReportError(f"{source}: a {KINDS[kind]} document without {exc}") from None
    except (TypeError, ValueError, AttributeError, IndexError) as exc:
        raise ReportError(f"{source}: a {KINDS[kind]} document with a bad value ({exc})") from None


def write_local_report(doc: dict[str, Any], out: Path, source: str) -> list[Path]:
    """Draw the report of ``doc`` into ``out``: the four files of ``charts.local_report``."""
    return render_local_report(local_report(doc, source), out)


# ------------------------------------------------------------------------------ a run


def _run_report(doc: dict[str, Any]) -> LocalReport:
    c = doc["counters"]
    cfg = doc.get("config") or {}
    rates = doc["rates_per_s"]
    points = doc.get("timeline") or []
    pace = (
        f"at {fmt_rate(doc['offered_rate_msgs_per_s'])} msgs/s offered"
        if doc.get("offered_rate_msgs_per_s")
        else "as fast as it goes"
    )
    if doc.get("replay_speed") is not None:
        pace = f"at the recording's pace x{doc['replay_speed']:g}"
    title = (
        f"trading-service run on {doc.get('host') or '?'}: {doc['elapsed_s']:g} s, "
        f"{doc['feed_source']} {pace}"
    )
    t2o = doc["latency_ns"]["tick_to_order"]
    offered = doc.get("offered_rate_msgs_per_s") if doc.get("replay_speed") is None else None
    ts = [p["t_s"] for p in points]
    series = [
        RateSeries(
            "market data processed / s",
            ts,
            [p["md_messages_per_s"] for p in points],
            offered=offered or None,
            offered_label="offered / s",
        ),
        RateSeries(
            "market data dropped / s",
            ts,
            [p.get("md_dropped_per_s") for p in points],
            color="tab:red",
        ),
    ]
    right = [
        RateSeries(
            "orders / s (right)",
            ts,
            [p.get("orders_per_s") for p in points],
            color="tab:green",
            linestyle="--",
        ),
        RateSeries(
            "fills / s (right)",
            ts,
            [p.get("fills_per_s") for p in points],
            color="tab:purple",
            linestyle=":",
        ),
    ]
    rejects = sum(c["orders_rejected"].values())
    key_figures = [
        ("elapsed", f"{doc['elapsed_s']:g} s ({len(points)} per-second samples)"),
        ("market data / s", fmt_rate(rates["md_messages"])),
        ("processed", fmt_rate(c["md_messages_processed"])),
        ("dropped (ring full)", fmt_rate(c["md_messages_dropped"])),
        ("gaps / lost", f"{c['sequence_gaps']:,} / {c['md_messages_lost']:,}"),
        ("orders sent", f"{c['orders_sent']:,} ({fmt_rate(rates['orders'])} / s)"),
        ("fills / cancels", f"{c['fills']:,} / {c['cancels']:,}"),
        ("rejected", f"{rejects:,}"),
        ("", ""),
        ("tick-to-order µs", ""),
        *((f"  {shown}", fmt_us(t2o.get(key))) for key, shown in LATENCY_KEYS),
        ("", ""),
        ("exit code", str(doc["exit_code"])),
        *((f"problem {i + 1}", text) for i, text in enumerate(doc.get("problems") or [])),
    ]
    return LocalReport(
        title=title,
        statistics=_run_statistics(doc, title, cfg, points),
        histograms=[
            HistogramSeries(name, doc["latency_histograms_ns"][name]["buckets"])
            for name in LATENCIES
            if name in doc["latency_histograms_ns"]
        ],
        percentiles=[
            PercentileSeries(name, doc["latency_ns"][name])
            for name in LATENCIES
            if name in doc["latency_ns"]
        ],
        percentile_keys=LATENCY_KEYS,
        throughput=Throughput(
            series,
            right=right,
            right_label="orders, fills / s",
            empty="no per-second samples (a run shorter than a second, or none taken)",
        ),
        key_figures=key_figures,
    )


def _run_statistics(
    doc: dict[str, Any], title: str, cfg: dict[str, Any], points: list[dict[str, Any]]
) -> str:
    c = doc["counters"]
    rates = doc["rates_per_s"]
    parts = [
        title,
        f"started {doc.get('started_at') or '-'}; exit code {doc['exit_code']}",
        *(f"problem: {p}" for p in doc.get("problems") or []),
        "",
        table(
            ("rate over the whole run", "value"),
            [
                ("market data processed / s", fmt_rate(rates["md_messages"])),
                ("orders sent / s", fmt_rate(rates["orders"])),
                ("fills / s", fmt_rate(rates["fills"])),
                ("offered / s", fmt_rate(doc.get("offered_rate_msgs_per_s") or None)),
            ],
        ),
        table(
            ("path", "count", *(f"{shown} µs" for _, shown in LATENCY_KEYS)),
            [
                (name, f"{h['count']:,}", *(fmt_us(h.get(key)) for key, _ in LATENCY_KEYS))
                for name, h in doc["latency_ns"].items()
            ],
            title="latency from each message's intended send time (no coordinated omission)",
        ),
        table(
            ("counter", "value"),
            [(name, f"{value:,}") for name, value in c.items() if not isinstance(value, dict)]
            + [
                (f"orders_rejected: {reason}", f"{n:,}")
                for reason, n in c["orders_rejected"].items()
            ],
        ),
        _timeline_statistics(points),
        table(
            ("process", "stages"),
            [(f"cpu{p['cpu']}", "+".join(p["stages"])) for p in doc.get("processes") or []],
        ),
    ]
    positions = {k: v for k, v in (doc.get("positions") or {}).items() if v}
    if positions:
        parts.append(
            "positions (lots): " + ", ".join(f"#{k} {v:+d}" for k, v in positions.items()) + "\n"
        )
    if cfg:
        parts.append(table(("config", "value"), list(_flatten(cfg))))
    return "\n".join(parts)


def _timeline_statistics(points: list[dict[str, Any]]) -> str:
    keys = (
        ("md_messages_per_s", "md processed/s"),
        ("md_dropped_per_s", "md dropped/s"),
        ("orders_per_s", "orders/s"),
        ("fills_per_s", "fills/s"),
        ("rejects_per_s", "rejects/s"),
    )
    if not points:
        return "per-second timeline: no samples\n"
    rows = []
    for key, shown in keys:
        values = [p[key] for p in points if p.get(key) is not None]
        if values:
            rows.append(
                (
                    shown,
                    fmt_rate(min(values)),
                    fmt_rate(statistics.median(values)),
                    fmt_rate(max(values)),
                )
            )
    text = table(
        ("per second", "min", "median", "max"),
        rows,
        title=f"per-second timeline: {len(points)} samples",
    )
    if len(points) <= TIMELINE_TABLE_MAX:
        text += "\n" + table(
            ("t s", *(shown for _, shown in keys)),
            [(f"{p['t_s']:.1f}", *(fmt_rate(p.get(key)) for key, _ in keys)) for p in points],
        )
    return text


def _flatten(value: dict[str, Any], prefix: str = "") -> Sequence[tuple[str, str]]:
    rows: list[tuple[str, str]] = []
    for key, item in value.items():
        name = f"{prefix}{key}"
        if isinstance(item, dict):
            rows += _flatten(item, f"{name}.")
        else:
            rows.append((name, "-" if item is None else str(item)))
    return rows


# ------------------------------------------------------------------------------ bench --json


def _bench_report(doc: dict[str, Any]) -> LocalReport:
    machine = doc.get("machine") or {}
    title = (
        f"trading-service bench{' --quick' if doc.get('quick') else ''} on "
        f"{machine.get('cpu_model') or '?'}, cpus {','.join(map(str, doc.get('cpus') or []))}"
    )
    fused = _rates(doc["e2e"])
    sweeps = _sweeps(doc["rate_sweep"])
    split = _rates(doc.get("e2e_split") or {})
    series = []
    for source, runs in {"fused": fused, **sweeps}.items():
        offered = [float(rate) for rate in runs]
        achieved = [run["achieved_msgs_per_s"] for run in runs.values()]
        series.append(RateSeries(f"achieved, {source}", offered, achieved))
    offered = sorted({float(rate) for runs in (fused, *sweeps.values()) for rate in runs})
    series.append(RateSeries("offered", offered, offered, linestyle="--", color="gray"))
    percentile_series = [
        PercentileSeries(f"{rate:,} msgs/s", run) for rate, run in fused.items()
    ] + [PercentileSeries(f"{rate:,} msgs/s, split", run) for rate, run in split.items()]
    floor = doc["floor_rtt_ns"]
    headline = [
        ("floor RTT, untimed mean", fmt_us(floor.get("untimed_mean")) + " µs"),
        ("floor RTT, timed p50", fmt_us(floor.get("p50")) + " µs"),
        ("clock read", f"{doc.get('clock_read_ns') or 0:,.1f} ns"),
        ("ring items / s", fmt_rate(doc.get("ring_items_per_s"))),
        ("ring batch items / s", fmt_rate(doc.get("ring_batch_items_per_s"))),
        ("C++ ring items / s", fmt_rate(doc.get("cpp_ring_items_per_s"))),
        ("mp.Queue items / s", fmt_rate(doc.get("mpqueue_items_per_s"))),
        ("max sustained msgs / s", _sustained(doc.get("max_sustained_rate_msgs_per_s"))),
        *(
            (f"cost per message, {step}", f"{ns:,.1f} ns")
            for step, ns in (doc.get("stage_cost_ns") or {}).items()
        ),
    ]
    stats = [title, "", table(("figure", "value"), headline)]
    for name, runs in (
        ("fused", fused),
        ("split", split),
        *((f"capacity sweep, {source}", runs) for source, runs in sweeps.items()),
    ):
        if runs:
            stats.append(_e2e_table(f"end to end, {name}: tick-to-order", runs))
    ratios = doc.get("ratios") or {}
    spread = doc.get("ratio_spread") or {}
    if ratios:
        stats.append(
            table(
                ("ratio", "value", "spread"),
                [
                    (
                        name,
                        "-" if value is None else f"{value:,.3f}",
                        "-"
                        if name not in spread
                        else f"{spread[name][0]:.3f}-{spread[name][1]:.3f}",
                    )
                    for name, value in ratios.items()
                ],
            )
        )
    return LocalReport(
        title=title,
        statistics="\n".join(stats),
        histogram_empty="a bench --json document holds percentiles,\nnot histogram buckets: "
        "`trading-service run --report DIR` draws one",
        percentiles=percentile_series,
        percentile_keys=LATENCY_KEYS,
        throughput=Throughput(
            series,
            xlabel="offered market-data messages / s (log scale)",
            ylabel="achieved market-data messages / s",
            empty="no end-to-end runs in this bench document",
            log_x=True,
        ),
        key_figures=headline,
    )


def _sustained(value: Any) -> str:
    if isinstance(value, dict):
        return ", ".join(f"{k} {fmt_rate(v)}" for k, v in value.items())
    return fmt_rate(value)


def _sweeps(sweep: dict[str, Any]) -> dict[str, dict[int, dict[str, Any]]]:
    """The capacity sweep by feed source; a document from before the sweep had sources (its
    keys are rates) was the simulator's."""
    if all(key.isdigit() for key in sweep):
        return {"simulator": _rates(sweep)} if sweep else {}
    return {source: _rates(runs) for source, runs in sweep.items()}


def _rates(runs: dict[str, Any]) -> dict[int, dict[str, Any]]:
    """Runs keyed by their offered rate (the document's keys are strings), in rate order."""
    return {int(rate): runs[rate] for rate in sorted(runs, key=int)}


def _e2e_table(title: str, runs: dict[int, dict[str, Any]]) -> str:
    return table(
        (
            "offered/s",
            "achieved/s",
            *(f"{shown} µs" for _, shown in LATENCY_KEYS),
            "drops",
            "orders",
        ),
        [
            (
                fmt_rate(rate),
                fmt_rate(run["achieved_msgs_per_s"]),
                *(fmt_us(run.get(key)) for key, _ in LATENCY_KEYS),
                fmt_rate(run["drops"]),
                fmt_rate(run["orders"]),
            )
            for rate, run in runs.items()
        ],
        title=title,
    )


# ------------------------------------------------------------------------------ fab bench


FAB_KEYS = (*LATENCY_KEYS[:4], ("p9999", "p99.99"), ("max", "max"))


def _fab_bench_report(doc: dict[str, Any]) -> LocalReport:
    title = f"fab bench on {doc['host']} ({doc['instance_id']}), {doc.get('started_at', '?')}"
    runs = doc["runs"]
    stats_rows = []
    key_figures = []
    for label, run in runs.items():
        lat = run["latency_ns"]
        verdict = "PASS" if (run.get("verdict") or {}).get("pass") else "MISS"
        c = run.get("counters") or {}
        stats_rows.append(
            (
                label,
                fmt_rate(run["offered_rate"]),
                fmt_rate(run.get("achieved_rate")),
                *(fmt_us(lat.get(key)) for key, _ in FAB_KEYS),
                fmt_rate(c.get("md_messages_dropped")),
                fmt_rate(c.get("orders_sent")),
                verdict,
            )
        )
        key_figures.append(
            (
                label,
                f"{fmt_rate(run.get('achieved_rate'))}/s, "
                f"p99 {fmt_us(lat.get('p99'))} µs, {verdict}",
            )
        )
    stats = [
        title,
        "",
        table(
            (
                "rate",
                "offered/s",
                "achieved/s",
                *(f"{s} µs" for _, s in FAB_KEYS),
                "drops",
                "orders",
                "SLO",
            ),
            stats_rows,
            title="tick-to-order per offered rate",
        ),
    ]
    errors = [f"{label}: {run['error']}" for label, run in runs.items() if run.get("error")]
    if errors:
        stats += ["runs that failed:", *errors, ""]
    return LocalReport(
        title=title,
        statistics="\n".join(stats),
        histograms=[
            HistogramSeries(f"{label} msgs/s offered", run["histogram_ns"]["buckets"])
            for label, run in runs.items()
        ],
        percentiles=[
            PercentileSeries(f"{label} msgs/s offered", run["latency_ns"])
            for label, run in runs.items()
        ],
        percentile_keys=FAB_KEYS,
        throughput=Throughput(
            [
                RateSeries.timeline(label, run["timeline"], run["offered_rate"])
                for label, run in runs.items()
            ],
            empty="no /latest samples while the stages ran",
        ),
        key_figures=key_figures,
    )
