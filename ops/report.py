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
matplotlib (Agg, no display needed) is imported inside ``render``: ``fab --list`` never pays
for it.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from ops.bench_doc import EMULATED_WARNING, BenchDoc, ObjectiveKey

if TYPE_CHECKING:
    from matplotlib.axes import Axes

FIGSIZE = (10, 6)  # inches
DPI = 100
PIXELS = (FIGSIZE[0] * DPI, FIGSIZE[1] * DPI)  # (width, height)
PercentileKey = Literal["p50", "p90", "p99", "p999", "p9999", "max"]
PERCENTILES: tuple[tuple[PercentileKey, str], ...] = (
    ("p50", "p50"),
    ("p90", "p90"),
    ("p99", "p99"),
    ("p999", "p99.9"),
    ("p9999", "p99.99"),
    ("max", "max"),
)
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


def fmt_us(ns: float | None) -> str:
    """Nanoseconds as the summary shows them: microseconds, 2 decimals; "-" for no data."""
    return "-" if ns is None else f"{ns / 1000:,.2f}"


def fmt_rate(rate: float | None) -> str:
    return "-" if rate is None else f"{rate:,.0f}"


def render(doc: BenchDoc, out: Path) -> list[Path]:
    """Write every report file for ``doc`` into ``out`` (created); the paths written.

    The files are drawn in a hidden directory beside ``out`` and moved in when all are there:
    a report that cannot be finished (a full disk) leaves nothing half-written in ``out``."""
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out.name}.partial-", dir=out.parent))
    try:
        names = _draw(doc, staging)
        out.mkdir(exist_ok=True)
        for name in names:
            os.replace(staging / name, out / name)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return [out / name for name in names]


def _draw(doc: BenchDoc, out: Path) -> list[str]:
    """Every report file for ``doc`` into the directory ``out``; their names."""
    import matplotlib

    matplotlib.use("Agg")  # files only: no display, no GUI toolkit
    from matplotlib import pyplot as plt

    charts: tuple[tuple[str, Callable[[Axes, BenchDoc], None]], ...] = (
        ("latency_percentiles.png", _percentiles),
        ("latency_histogram.png", _histogram),
        ("throughput.png", _throughput),
        ("jitter.png", _jitter),
    )
    for name, draw in charts:
        fig, ax = plt.subplots(figsize=FIGSIZE, dpi=DPI)
        try:
            draw(ax, doc)
            ax.grid(True, which="both", alpha=0.3)
            fig.tight_layout()
            fig.savefig(out / name, dpi=DPI)  # no bbox_inches="tight": keep the pixel size
        finally:
            plt.close(fig)
    (out / "summary.md").write_text(summary_md(doc))
    (out / "bench.json").write_text(json.dumps(doc, indent=2, allow_nan=False) + "\n")
    return [name for name, _ in charts] + ["summary.md", "bench.json"]


def _title(ax: Axes, doc: BenchDoc, what: str) -> None:
    ax.set_title(f"{what} — {doc['host']} ({doc['instance_id']}), {doc['started_at']}")


def _no_data(ax: Axes, text: str) -> None:
    ax.text(0.5, 0.5, text, ha="center", va="center", transform=ax.transAxes)


def _percentiles(ax: Axes, doc: BenchDoc) -> None:
    _title(ax, doc, "tick-to-order latency")
    xs = list(range(len(PERCENTILES)))
    drawn = False
    for label, run in doc["runs"].items():
        ys = [run["latency_ns"].get(key) for key, _ in PERCENTILES]
        points = [(x, y / 1000) for x, y in zip(xs, ys, strict=True) if y]
        if points:
            ax.plot(*zip(*points, strict=True), marker="o", label=f"{label} msgs/s offered")
            drawn = True
    ax.set_xticks(xs, [name for _, name in PERCENTILES])
    ax.set_xlabel("percentile")
    ax.set_ylabel("latency, µs (log scale)")
    if drawn:
        ax.set_yscale("log")
        ax.legend()
    else:
        _no_data(ax, "no latency recorded")


def _histogram(ax: Axes, doc: BenchDoc) -> None:
    _title(ax, doc, "tick-to-order latency histogram")
    drawn = False
    for label, run in doc["runs"].items():
        rows = run["histogram_ns"]["buckets"]
        if not rows:
            continue
        # a bucket's middle value against its count; buckets widen with the value, so counts
        # are per bucket, as recorded (not a density)
        mids = [max((low + high) / 2, 1) / 1000 for _, low, high, _ in rows]
        counts = [count for *_, count in rows]
        ax.step(mids, counts, where="mid", label=f"{label} msgs/s offered")
        drawn = True
    ax.set_xlabel("latency, µs (log scale)")
    ax.set_ylabel("messages per bucket (log scale)")
    if drawn:
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.legend()
    else:
        _no_data(ax, "no latency recorded")


def _throughput(ax: Axes, doc: BenchDoc) -> None:
    _title(ax, doc, "throughput (per-second /latest samples)")
    drawn = False
    for label, run in doc["runs"].items():
        points = run["timeline"]
        if not points:
            continue
        line = ax.plot(
            [p["t_s"] for p in points],
            [p["md_messages_per_s"] for p in points],
            marker=".",
            label=f"{label}: achieved",
        )
        ax.axhline(
            run["offered_rate"],
            linestyle="--",
            color=line[0].get_color(),
            alpha=0.6,
            label=f"{label}: offered",
        )
        drawn = True
    ax.set_xlabel("seconds since all stages ran")
    ax.set_ylabel("market-data messages / s")
    if drawn:
        ax.legend()
    else:
        _no_data(ax, "no /latest samples while the stages ran")


def _jitter(ax: Axes, doc: BenchDoc) -> None:
    _title(ax, doc, "jitter per isolated core (gaps in a pinned busy loop)")
    cpus = (doc.get("jitter") or {}).get("cpus") or {}
    if not cpus:
        _no_data(ax, f"no jitter figures: {(doc.get('jitter') or {}).get('error', 'not run')}")
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
