"""The report of one ``fab bench`` run on one host, drawn from its figures (``bench.json``).

``render(doc, out)`` writes into ``out``:

- ``latency_percentiles.png``: tick-to-order latency at p50, p90, p99, p99.9, p99.99 and max,
  log-scale y, one line per offered rate;
- ``latency_histogram.png``: the tick-to-order histogram of each rate (log-log; the service's
  log-linear buckets, drawn as counts per bucket);
- ``throughput.png``: messages per second over the run, from the per-second ``/latest``
  samples, against each offered rate;
- ``jitter.png``: per isolated core, p50/p99/p99.9/max of the gaps the jitter probe saw;
- ``summary.md``: a table per offered rate against the SLOs of the host's [slo], the check-host
  verdict and the jitter per core;
- ``bench.json``: every figure, for scripts.

Every figure is ``FIGSIZE`` at ``DPI`` (1000 x 600 pixels) so scripts and tests can rely on it.
The charts are drawn by ``charts.draw``, the same code as the service's local report
(``trading-service run --report``); matplotlib (Agg, no display needed) is imported only when
``render`` draws: ``fab --list`` never pays for it.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from charts.draw import (
    DPI,
    FIGSIZE,
    PERCENTILES,
    PIXELS,
    HistogramSeries,
    PercentileSeries,
    RateSeries,
    Throughput,
    histograms,
    no_data,
    percentiles,
    save_chart,
    throughput,
)
from charts.staging import write_staged
from charts.text import fmt_rate, fmt_us
from ops.bench_doc import EMULATED_WARNING, BenchDoc, ObjectiveKey

if TYPE_CHECKING:
    from matplotlib.axes import Axes

__all__ = [
    "DPI",
    "FIGSIZE",
    "FILES",
    "PERCENTILES",
    "PIXELS",
    "fmt_rate",
    "fmt_us",
    "render",
    "summary_md",
]

PercentileKey = Literal["p50", "p90", "p99", "p999", "p9999", "max"]
PERCENTILE_KEYS: tuple[PercentileKey, ...] = ("p50", "p90", "p99", "p999", "p9999", "max")
SLO_KEYS: tuple[ObjectiveKey, ...] = ("p50", "p99", "p999")  # the objectives of [slo]
JitterKey = Literal["p50", "p99", "p999", "max"]
JITTER_BARS: tuple[tuple[JitterKey, str], ...] = (
    ("p50", "p50"),
    ("p99", "p99"),
    ("p999", "p99.9"),
    ("max", "max"),
)
FILES = (
    "latency_percentiles.png",
    "latency_histogram.png",
    "throughput.png",
    "jitter.png",
    "summary.md",
    "bench.json",
)


def render(doc: BenchDoc, out: Path) -> list[Path]:
    """Write every report file for ``doc`` into ``out`` (created); the paths written.

    The files are drawn in a hidden directory beside ``out`` and moved in when all are there
    (``charts.staging``): a report that cannot be finished (a full disk) leaves nothing
    half-written in ``out``."""
    return write_staged(Path(out), lambda staging: _draw(doc, staging))


def _draw(doc: BenchDoc, out: Path) -> list[str]:
    """Every report file for ``doc`` into the directory ``out``; their names."""
    charts: tuple[tuple[str, Callable[[Axes, BenchDoc], None]], ...] = (
        ("latency_percentiles.png", _percentiles),
        ("latency_histogram.png", _histogram),
        ("throughput.png", _throughput),
        ("jitter.png", _jitter),
    )
    for name, draw in charts:
        save_chart(out / name, _bound(draw, doc))
    (out / "summary.md").write_text(summary_md(doc))
    (out / "bench.json").write_text(json.dumps(doc, indent=2, allow_nan=False) + "\n")
    return [name for name, _ in charts] + ["summary.md", "bench.json"]


def _bound(draw: Callable[[Axes, BenchDoc], None], doc: BenchDoc) -> Callable[[Axes], None]:
    return lambda ax: draw(ax, doc)


def _title(ax: Axes, doc: BenchDoc, what: str) -> None:
    ax.set_title(f"{what} — {doc['host']} ({doc['instance_id']}), {doc['started_at']}")


def _percentiles(ax: Axes, doc: BenchDoc) -> None:
    _title(ax, doc, "tick-to-order latency")
    series = [
        PercentileSeries(
            f"{label} msgs/s offered", {key: run["latency_ns"].get(key) for key in PERCENTILE_KEYS}
        )
        for label, run in doc["runs"].items()
    ]
    percentiles(ax, series, "no latency recorded")


def _histogram(ax: Axes, doc: BenchDoc) -> None:
    _title(ax, doc, "tick-to-order latency histogram")
    series = [
        HistogramSeries(f"{label} msgs/s offered", run["histogram_ns"]["buckets"])
        for label, run in doc["runs"].items()
    ]
    histograms(ax, series, "no latency recorded")


def _throughput(ax: Axes, doc: BenchDoc) -> None:
    _title(ax, doc, "throughput (per-second /latest samples)")
    series = [
        RateSeries.timeline(label, run["timeline"], run["offered_rate"])
        for label, run in doc["runs"].items()
    ]
    throughput(ax, Throughput(series, empty="no /latest samples while the stages ran"))


def _jitter(ax: Axes, doc: BenchDoc) -> None:
    _title(ax, doc, "jitter per isolated core (gaps in a pinned busy loop)")
    cpus = (doc.get("jitter") or {}).get("cpus") or {}
    if not cpus:
        no_data(ax, f"no jitter figures: {(doc.get('jitter') or {}).get('error', 'not run')}")
        return
    width = 0.8 / len(JITTER_BARS)
    names = sorted(cpus, key=int)
    for i, (key, shown) in enumerate(JITTER_BARS):
        values = [(cpus[c].get(key) or 0) / 1000 for c in names]
        positions = [n + (i - len(JITTER_BARS) / 2 + 0.5) * width for n in range(len(names))]
        ax.bar(positions, values, width, label=shown)
    ax.set_xticks(range(len(names)), [f"cpu {c}" for c in names])
    ax.set_ylabel("gap, µs (log scale)")
    ax.set_yscale("log")
    ax.legend()


def summary_md(doc: BenchDoc) -> str:
    """The report's text: a table per offered rate against the SLOs, tuning, jitter."""
    slo = doc["slo_us"]
    objective = {
        "p50": slo["tick_to_order_p50_us"],
        "p99": slo["tick_to_order_p99_us"],
        "p999": slo["tick_to_order_p999_us"],
    }
    verdict = "SLO MISSED" if doc["slo_missed"] else "every SLO met"
    lines = [
        f"# lowlat bench: {doc['host']} ({doc['instance_id']})",
        "",
    ]
    if doc.get("emulated"):  # first, before any figure
        lines = [f"**{EMULATED_WARNING}** ({doc.get('virtualization')})", "", *lines]
    lines += [
        f"{doc['started_at']} to {doc['finished_at']}, {doc['duration_s']:g} s per offered rate; "
        f"**{verdict}**.",
        "",
        "Tick-to-order latency in µs, from each message's intended send time (no coordinated "
        "omission); SLOs from the host's `[slo]`.",
        "",
        "| offered msgs/s | achieved msgs/s | p50 µs | p99 µs | p99.9 µs | max µs | SLO |",
        "|---:|---:|---:|---:|---:|---:|:---|",
    ]
    for label, run in doc["runs"].items():
        lat = run["latency_ns"]
        checks = run["verdict"]["checks"]
        cells = []
        for key in SLO_KEYS:
            mark = "" if checks[key]["pass"] else " ✗"
            cells.append(f"{fmt_us(lat.get(key))}{mark}")
        missed = [k for k in SLO_KEYS if not checks[k]["pass"]]
        shown = "PASS" if run["verdict"]["pass"] else "MISS (" + ", ".join(missed) + ")"
        lines.append(
            f"| {fmt_rate(run['offered_rate'])} ({label}) | {fmt_rate(run['achieved_rate'])} | "
            f"{' | '.join(cells)} | {fmt_us(lat.get('max'))} | {shown} |"
        )
    lines.append(
        f"| **objective** | | ≤ {objective['p50']:g} | ≤ {objective['p99']:g} | "
        f"≤ {objective['p999']:g} | | |"
    )
    runs = doc["runs"].items()
    errors = [f"- {label}: {run['error']}" for label, run in runs if run.get("error")]
    if errors:
        lines += ["", "Runs that failed:", "", *errors]

    lines += ["", "## Host tuning (check-host)", ""]
    check = doc.get("check_host") or {}
    if "error" in check:
        lines.append(f"check-host did not run: {check['error']}")
    else:
        s = check.get("summary", {})
        lines.append(
            (
                "**OK**"
                if check.get("ok")
                else "**NOT TUNED**: the figures above are from an untuned host"
            )
            + f" — {s.get('passed', 0)} passed, {s.get('failed', 0)} failed, "
            f"{s.get('not_applicable', 0)} not applicable."
        )
        failed = [c for c in check.get("checks", []) if c.get("status") == "fail"]
        if failed:
            lines += ["", "| failed check | expected | observed |", "|:---|:---|:---|"]
            lines += [
                f"| {c['name']} | {_cell(c['expected'])} | {_cell(c['observed'])} |" for c in failed
            ]

    lines += ["", "## Jitter per isolated core", ""]
    jitter = doc.get("jitter") or {}
    if jitter.get("cpus"):
        lines += [
            f"A pinned clock-reading loop per core for {jitter['duration_s']:g} s; a gap over "
            f"{jitter['threshold_ns']} ns counts as an interruption.",
            "",
            "| cpu | p99 µs | p99.9 µs | max µs | interruptions / s | time lost % |",
            "|---:|---:|---:|---:|---:|---:|",
        ]
        for cpu in sorted(jitter["cpus"], key=int):
            f = jitter["cpus"][cpu]
            lines.append(
                f"| {cpu} | {fmt_us(f['p99'])} | {fmt_us(f['p999'])} | {fmt_us(f['max'])} | "
                f"{f['gaps_over_threshold_per_s']:,.1f} | {f['time_lost_pct']:.4f} |"
            )
    else:
        lines.append(f"no jitter figures: {jitter.get('error', 'not run')}")

    engine = doc.get("engine") or {}
    if engine.get("was_active"):
        lines += [
            "",
            f"{engine['unit']} was stopped for the bench and "
            + ("started again." if engine.get("restarted") else "**did NOT start again**."),
        ]
    return "\n".join(lines) + "\n"


def _cell(text: object) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")
